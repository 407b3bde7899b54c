package index

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testConfig(t *testing.T) Config {
	t.Helper()
	c := Config{Format: StoreFormat, ID: "0123456789abcdef0123456789abcdef", Hash: "blake3-256",
		Chunker: chunk.DefaultParams(chunk.TestPol), PackSize: 1 << 20}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: encoding changed (got %d bytes, want %d); the on-disk format must not drift", name, len(got), len(want))
	}
}

// goldenPack is the golden pack of package pack, which pins its format.
func goldenPack(t *testing.T) ([]byte, chunk.ID, []pack.Entry) {
	t.Helper()
	data, err := os.ReadFile("pack/testdata/pack-v2.golden")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := pack.Parse(data, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	return data, chunk.Sum(data), entries
}

func TestIndexFileGolden(t *testing.T) {
	data, id, entries := goldenPack(t)
	b, sum := EncodeFile([]PackRecord{{ID: id, Size: int64(len(data)), Entries: entries}})
	golden(t, "index-v3.golden", b)
	if sum != chunk.Sum(b[:len(b)-32]) {
		t.Errorf("index sum mismatch")
	}
	packs, err := DecodeFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(packs) != 1 || packs[0].ID != id || fmt.Sprint(packs[0].Entries) != fmt.Sprint(entries) {
		t.Errorf("decode = %+v, want pack %s with %v", packs, id, entries)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		if _, err := DecodeFile(bad); err == nil {
			t.Fatalf("flip at byte %d not detected", i)
		}
	}
}

func FuzzDecodeIndexFile(f *testing.F) {
	if b, err := os.ReadFile("testdata/index-v3.golden"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(idxMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodeFile(b)
		// A body with a valid checksum must also decode safely.
		if len(b) > 0 {
			s := chunk.Sum(b)
			DecodeFile(append(bytes.Clone(b), s[:]...))
		}
	})
}

// writeChunks adds n random chunks of size sz through one packer per worker.
func writeChunks(t *testing.T, w *Writer, workers, n, sz int, seed uint64) map[chunk.ID][]byte {
	t.Helper()
	var mu sync.Mutex
	all := map[chunk.ID][]byte{}
	var wg sync.WaitGroup
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := w.NewPacker()
			for i := range n {
				d := randBytes(seed+uint64(i%(n/2+1)), sz) // half the chunks repeat
				id := chunk.Sum(d)
				if _, err := p.Add(t.Context(), id, d); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all[id] = d
				mu.Unlock()
			}
			_ = k
		}()
	}
	wg.Wait()
	return all
}

func TestWriterDedupAndFetch(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	cfg := testConfig(t)
	idx := New()
	w, err := NewWriter(ctx, st, idx, cfg, WriterOptions{Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	all := writeChunks(t, w, 3, 40, 100_000, 1)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Stats().ChunksNew.Load(), int64(len(all)); got != want {
		t.Errorf("chunks uploaded = %d, want %d (each distinct chunk once)", got, want)
	}
	// A fresh index sees everything, via the index files alone.
	idx2 := New()
	if _, err := idx2.Load(ctx, st, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if idx2.Len() != len(all) {
		t.Fatalf("loaded %d chunks, want %d", idx2.Len(), len(all))
	}
	var ids []chunk.ID
	for id := range all {
		ids = append(ids, id)
	}
	var mu sync.Mutex
	got := map[chunk.ID]bool{}
	err = Fetch(ctx, st, idx2, ids, FetchOptions{Parallel: 4}, func(id chunk.ID, data []byte, err error) error {
		if err != nil {
			return err
		}
		if !bytes.Equal(data, all[id]) {
			return fmt.Errorf("chunk %s: wrong bytes", id)
		}
		mu.Lock()
		got[id] = true
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Errorf("fetched %d chunks, want %d", len(got), len(all))
	}
	// A second writer adds nothing for the same chunks.
	w2, err := NewWriter(ctx, st, idx2, cfg, WriterOptions{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w2, 1, 40, 100_000, 1)
	if err := w2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := w2.Stats().ChunksNew.Load(); n != 0 {
		t.Errorf("second writer uploaded %d chunks, want 0", n)
	}
}

func TestFetchReportsCorruptAndMissing(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	idx := New()
	w, err := NewWriter(ctx, st, idx, testConfig(t), WriterOptions{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	all := writeChunks(t, w, 1, 10, 50_000, 7)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Flip one byte of the first chunk of the only pack.
	var packKey string
	st.List(ctx, "packs/", func(i remote.Info) error { packKey = i.Key; return nil })
	rc, _ := st.Get(ctx, packKey, 0, -1)
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	b := buf.Bytes()
	b[10] ^= 0xff
	if err := st.Put(ctx, packKey, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	missing := chunk.Sum([]byte("never stored"))
	ids := []chunk.ID{missing}
	for id := range all {
		ids = append(ids, id)
	}
	var corrupt, miss, ok int
	var mu sync.Mutex
	err = Fetch(ctx, st, idx, ids, FetchOptions{}, func(id chunk.ID, data []byte, err error) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, ErrCorrupt):
			corrupt++
		case errors.Is(err, ErrMissing):
			miss++
		case err == nil && bytes.Equal(data, all[id]):
			ok++
		default:
			t.Errorf("chunk %s: unexpected %v", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if corrupt != 1 || miss != 1 || ok != len(all)-1 {
		t.Errorf("corrupt=%d missing=%d ok=%d, want 1, 1, %d", corrupt, miss, ok, len(all)-1)
	}
}

func TestJournalRecoversUnindexedPacks(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	journal := filepath.Join(t.TempDir(), "journal")
	// An empty journal an older version created 0644: appending makes it
	// private.
	if err := os.WriteFile(journal, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	w, err := NewWriter(ctx, st, New(), cfg, WriterOptions{Host: "h", Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	var ids []chunk.ID
	for i := range 30 { // about 3 MiB: packs of 1 MiB seal and upload
		d := randBytes(uint64(100+i), 100_000)
		ids = append(ids, chunk.Sum(d))
		if _, err := p.Add(ctx, ids[i], d); err != nil {
			t.Fatal(err)
		}
	}
	// The sealed packs are durable; the open one dies with the "crash".
	uploaded := w.Stats().Packs.Load()
	if uploaded == 0 {
		t.Fatal("no pack sealed; test is not exercising recovery")
	}
	if fi, err := os.Stat(journal); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	// No Sync: the process "crashes" here. The next writer recovers.
	idx := New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	if idx.Len() != 0 {
		t.Fatalf("index files exist before recovery")
	}
	w2, err := NewWriter(ctx, st, idx, cfg, WriterOptions{Host: "h", Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	p2 := w2.NewPacker()
	for i, id := range ids {
		if _, err := p2.Add(ctx, id, randBytes(uint64(100+i), 100_000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var packs int
	st.List(ctx, "packs/", func(remote.Info) error { packs++; return nil })
	if int64(packs) != uploaded+w2.Stats().Packs.Load() {
		t.Errorf("store has %d packs, want %d recovered + %d new", packs, uploaded, w2.Stats().Packs.Load())
	}
	if w2.Stats().Packs.Load() > 1 {
		t.Errorf("after recovery %d packs were uploaded again, want at most the 1 that was open", w2.Stats().Packs.Load())
	}
	if _, err := os.Stat(journal); !os.IsNotExist(err) {
		t.Errorf("journal still present after Sync: %v", err)
	}
}

func TestUploadFailureFailsSync(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewFaulty(remotetest.NewMemory())
	boom := errors.New("boom")
	st.FailMatching(remotetest.OpPut, "packs/", boom)
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, 1, 4, 1000, 3)
	if err := w.Sync(ctx); !errors.Is(err, boom) {
		t.Fatalf("Sync = %v, want an error wrapping boom", err)
	}
	n := 0
	st.List(ctx, "index/", func(remote.Info) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d index files written after a failed upload, want 0", n)
	}
}

// phantomStore acknowledges every Put of a pack and keeps nothing, as a
// server or proxy that loses objects it answered 200 for would. It does
// not claim to verify its writes (remote.Verifying).
type phantomStore struct{ remote.Store }

func (p phantomStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if strings.HasPrefix(key, "packs/") {
		_, err := io.Copy(io.Discard, data)
		return err
	}
	return p.Store.Put(ctx, key, data, size)
}

// TestPhantomPackNeverIndexed checks the rule of design §2 that a pack is
// named by an index file only once seen stored whole: a store that loses
// an acknowledged pack fails the Sync (by the Stat the Writer makes when
// the store cannot verify its writes), and no index file is written. A
// store that verifies its writes gets no Stat.
func TestPhantomPackNeverIndexed(t *testing.T) {
	ctx := t.Context()
	st := phantomStore{remotetest.NewMemory()}
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, 1, 4, 1000, 3)
	if err := w.Sync(ctx); err == nil || !strings.Contains(err.Error(), "not seen stored") {
		t.Fatalf("Sync = %v, want the pack reported not stored", err)
	}
	n := 0
	st.List(ctx, "index/", func(remote.Info) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d index files name a pack the store lost, want 0", n)
	}

	counted := remote.NewCounting(remotetest.NewMemory())
	w, err = NewWriter(ctx, counted, New(), testConfig(t), WriterOptions{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, 1, 4, 1000, 3)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if c := counted.Counts(); c[remote.KindHead] != 0 || c[remote.KindPut] == 0 {
		t.Errorf("requests of a Sync to a verifying store: %v, want PUTs and no HEAD", c)
	}
}

// TestAddTreeJoinsOpenPack checks where AddTree puts a commit's tree
// nodes: asked to, after the file chunks of a Packer's open pack when both
// fit in pack.MaxTreePack, so that a small commit uploads one pack, else
// in packs of their own, none past pack.MaxTreePack; each pack holding
// nodes is marked with the offset of its first node (what the survey store
// keeps from), a pack of file chunks alone is not, and every node and
// chunk is indexed and readable.
func TestAddTreeJoinsOpenPack(t *testing.T) {
	blobs := func(seed uint64, n, sz int) ([]chunk.ID, [][]byte) {
		var ids []chunk.ID
		var data [][]byte
		for i := range n {
			d := randBytes(seed+uint64(i), sz)
			ids, data = append(ids, chunk.Sum(d)), append(data, d)
		}
		return ids, data
	}
	for _, tt := range []struct {
		name             string
		chunks, chunkLen int // in the open pack
		nodes, nodeLen   int
		beside           bool
		packs            int // uploaded
	}{
		{"beside a small pack", 3, 1000, 5, 2000, true, 1},
		{"apart", 3, 1000, 5, 2000, false, 2},
		{"no open pack", 0, 0, 5, 2000, true, 1},
		{"beside a large pack", 1, 4 << 20, 5, 2000, true, 2},
		{"nodes past the bound", 1, 1000, 40, 256 << 10, true, 3},
	} {
		for _, spread := range []bool{false, true} { // and padded: an encrypted store's writer
			t.Run(fmt.Sprint(tt.name, " spread=", spread), func(t *testing.T) {
				ctx := t.Context()
				st := remotetest.NewMemory()
				cfg := testConfig(t)
				cfg.PackSize = 16 << 20
				idx := New()
				w, err := NewWriter(ctx, st, idx, cfg, WriterOptions{Host: "h", Spread: spread, Pad: spread})
				if err != nil {
					t.Fatal(err)
				}
				p := w.NewPacker()
				want := map[chunk.ID][]byte{}
				isNode := map[chunk.ID]bool{}
				cids, cdata := blobs(1000, tt.chunks, tt.chunkLen)
				for i, id := range cids {
					if _, err := p.Add(ctx, id, cdata[i]); err != nil {
						t.Fatal(err)
					}
					want[id] = cdata[i]
				}
				ids, data := blobs(1, tt.nodes, tt.nodeLen)
				if err := w.AddTree(ctx, ids, data, tt.beside); err != nil {
					t.Fatal(err)
				}
				for i, id := range ids {
					want[id], isNode[id] = data[i], true
				}
				if err := w.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				n := 0
				st.List(ctx, "packs/", func(remote.Info) error { n++; return nil })
				if n != tt.packs {
					t.Errorf("%d packs uploaded, want %d", n, tt.packs)
				}
				checkMarkedPacks(t, st, isNode)
				err = Fetch(ctx, st, idx, slices.Collect(maps.Keys(want)), FetchOptions{}, func(id chunk.ID, d []byte, err error) error {
					if err != nil || !bytes.Equal(d, want[id]) {
						t.Errorf("chunk %s: read %d bytes (%v), want its %d", id, len(d), err, len(want[id]))
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestConfigInit(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	if _, err := LoadConfig(ctx, st); !errors.Is(err, ErrNotStore) {
		t.Fatalf("LoadConfig on empty store = %v, want ErrNotStore", err)
	}
	a, b := testConfig(t), testConfig(t)
	b.ID = "fedcba9876543210fedcba9876543210"
	var wg sync.WaitGroup
	got := make([]Config, 2)
	for i, c := range []Config{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if got[i], err = Init(context.Background(), st, c); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got[0].ID != got[1].ID {
		t.Errorf("racing Init gave two configs: %s and %s", got[0].ID, got[1].ID)
	}
}

// Index files loaded in several passes, with copies of a chunk in several
// packs and the same entry named by two files, settle into the order one
// sort of everything gives: by chunk, then pack, each entry once.
func TestSettleMergesPasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var ids []chunk.ID
	for i := range 300 {
		ids = append(ids, chunk.Sum([]byte(fmt.Sprint(i))))
	}
	var files [][]PackRecord
	for f := range 12 {
		var recs []PackRecord
		for p := range 3 {
			rec := PackRecord{ID: chunk.Sum([]byte(fmt.Sprint("pack", f%5, p))), Size: 1 << 20}
			for range 1 + rng.IntN(40) {
				rec.Entries = append(rec.Entries, pack.Entry{ID: ids[rng.IntN(len(ids))], Off: uint32(rng.IntN(1000)), Len: 10})
			}
			recs = append(recs, rec)
		}
		files = append(files, recs)
	}
	files[11] = files[2] // the same entries, named by a file of another pass
	x := New()
	for f, recs := range files {
		x.merge(fmt.Sprint("index/h/", f), recs)
		if f%4 == 3 || f == 5 {
			x.settle()
		}
	}
	x.settle()
	var want []entry
	for _, recs := range files {
		for _, r := range recs {
			o := x.packOrd[r.ID]
			for _, e := range r.Entries {
				want = append(want, entry{e.ID, o, e.Off, e.Len})
			}
		}
	}
	slices.SortFunc(want, compareEntries)
	want = slices.Compact(want)
	if !slices.Equal(x.sorted, want) {
		t.Fatalf("settled %d entries, want %d in one sort's order", len(x.sorted), len(want))
	}
	if len(x.pending) != 0 {
		t.Fatalf("%d entries still pending", len(x.pending))
	}
}
