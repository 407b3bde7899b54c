package index

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// keysUnder lists the keys under prefix.
func keysUnder(t *testing.T, st remote.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(t.Context(), prefix, func(i remote.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// commitOne adds one chunk and syncs (one index file, as a continuous
// commit writes), then compacts.
func commitOne(t *testing.T, w *Writer, seed uint64) (chunk.ID, []byte, CompactStats) {
	t.Helper()
	d := randBytes(seed, 300+int(seed))
	id := chunk.Sum(d)
	if _, err := w.NewPacker().Add(t.Context(), id, d); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	cs, err := w.Compact(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return id, d, cs
}

// A writer that syncs 200 times keeps its host's index files at most
// CompactAt or fewer than compactFanIn a tier (every file here is small),
// and a new reader of the store finds every chunk in the pack it was
// written to.
func TestCompactBoundsFilesAndKeepsEveryChunk(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	cfg := testConfig(t)
	w, err := NewWriter(ctx, st, New(), cfg, WriterOptions{Host: "h", CompactAt: 6, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// An index file of another host is never touched.
	other, err := NewWriter(ctx, st, New(), cfg, WriterOptions{Host: "other"})
	if err != nil {
		t.Fatal(err)
	}
	oid, _, _ := commitOne(t, other, 9999)
	otherKeys := keysUnder(t, st, "index/other/")

	all := map[chunk.ID][]byte{}
	merged, most := 0, 0
	for i := range 200 {
		id, d, cs := commitOne(t, w, uint64(i))
		all[id] = d
		merged += cs.Merged
		tiers := map[int]int{}
		n := 0
		if err := st.List(ctx, "index/h/", func(i remote.Info) error {
			tiers[compactFile{n: entriesIn(i.Size)}.tier()]++
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		most = max(most, n)
		for tier, k := range tiers {
			if n > 6 && k >= compactFanIn {
				t.Fatalf("after commit %d the host has %d index files, more than CompactAt 6, %d of them in tier %d", i, n, k, tier)
			}
		}
	}
	if merged == 0 {
		t.Fatal("200 commits compacted no index file")
	}
	if got := keysUnder(t, st, "index/other/"); !slices.Equal(got, otherKeys) {
		t.Fatalf("another host's index files changed: %v, were %v", got, otherKeys)
	}
	x := New()
	if _, err := x.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	all[oid] = nil
	for id, d := range all {
		loc, ok := x.Lookup(id)
		if !ok {
			t.Fatalf("chunk %s is in no index file after compaction", id)
		}
		if d == nil {
			continue
		}
		got, err := readChunkAt(ctx, st, loc)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("chunk %s reads back wrong (%v)", id, err)
		}
	}
	t.Logf("%d index files merged away over 200 commits; at most %d at once", merged, most)
}

// A file a purge merged away under the writer (gone from the store)
// stops the compaction with nothing deleted; the next one goes on.
func TestCompactStopsOnAFileGoneUnderIt(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", CompactAt: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		commitOne(t, w, uint64(i))
	}
	keys := keysUnder(t, st, "index/h/")
	if len(keys) != 4 {
		t.Fatalf("%d index files, want 4", len(keys))
	}
	if err := st.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	_, _, cs := commitOne(t, w, 4)
	if cs.Merged != 0 || cs.Written != 0 {
		t.Fatalf("compacted %+v with a file gone", cs)
	}
	if got := len(keysUnder(t, st, "index/h/")); got != 4 {
		t.Fatalf("%d index files after a stopped compaction, want the 4 left", got)
	}
	_, _, cs = commitOne(t, w, 5)
	if cs.Merged == 0 {
		t.Fatal("the next compaction merged nothing")
	}
}

// readChunkAt reads one chunk at loc.
func readChunkAt(ctx context.Context, st remote.Store, loc Location) ([]byte, error) {
	rc, err := st.Get(ctx, pack.Key(loc.Pack), int64(loc.Off), int64(loc.Len))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(rc)
	return b.Bytes(), err
}
