package index

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// putPack stores a pack of the given chunks and returns its record.
func putPack(t *testing.T, st remote.Store, chunks ...[]byte) PackRecord {
	t.Helper()
	b := pack.NewBuilder(nil)
	for _, c := range chunks {
		b.Add(chunk.Sum(c), c)
	}
	entries := b.Entries()
	data, id := b.Finish()
	if err := st.Put(t.Context(), pack.Key(id), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return PackRecord{ID: id, Size: int64(len(data)), Entries: entries}
}

// fetchAll fetches ids and returns what came back, by chunk.
func fetchAll(t *testing.T, st remote.Store, idx *Index, ids []chunk.ID) (map[chunk.ID][]byte, map[chunk.ID]error) {
	t.Helper()
	got, failed := map[chunk.ID][]byte{}, map[chunk.ID]error{}
	var mu sync.Mutex
	err := Fetch(t.Context(), st, idx, ids, FetchOptions{}, func(id chunk.ID, data []byte, err error) error {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed[id] = err
		} else {
			got[id] = bytes.Clone(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, failed
}

// A planted index entry whose range is wrong (bytes that fail their check,
// or a range past the end of the pack) fails only that copy: the chunk is
// read from the other copy the index knows, and the chunks that shared a
// GET with the bad range are read on their own.
func TestFetchFallsBackToAnotherCopy(t *testing.T) {
	st := remotetest.NewMemory()
	x := bytes.Repeat([]byte("x"), 5000)
	y := bytes.Repeat([]byte("y"), 7000)
	z := bytes.Repeat([]byte("z"), 3000)
	good := putPack(t, st, x)
	bad := putPack(t, st, y, z, bytes.Repeat([]byte("w"), 4000))
	for _, c := range []struct {
		name string
		loc  pack.Entry
	}{
		{"bytes that fail their check", pack.Entry{ID: chunk.Sum(x), Off: bad.Entries[2].Off, Len: 4000}},
		{"a range past the pack's end", pack.Entry{ID: chunk.Sum(x), Off: bad.Entries[2].Off, Len: 1 << 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			idx := New()
			planted := bad
			planted.Entries = append([]pack.Entry{c.loc}, bad.Entries...)
			// Two index files; the planted copy, merged first, is preferred.
			idx.merge("index/h/planted", []PackRecord{planted})
			idx.merge("index/h/good", []PackRecord{good})
			idx.settle()
			if l, _ := idx.Lookup(chunk.Sum(x)); l.Pack != bad.ID {
				t.Fatal("setup: the planted copy is not preferred")
			}
			want := map[chunk.ID][]byte{chunk.Sum(x): x, chunk.Sum(y): y, chunk.Sum(z): z}
			got, failed := fetchAll(t, st, idx, []chunk.ID{chunk.Sum(x), chunk.Sum(y), chunk.Sum(z)})
			for id, err := range failed {
				t.Errorf("chunk %s failed: %v", id, err)
			}
			for id, b := range want {
				if !bytes.Equal(got[id], b) {
					t.Errorf("chunk %s: got %d bytes, want %d", id, len(got[id]), len(b))
				}
			}
		})
	}
}

// With no other copy, the chunk fails with its last error, and only it.
func TestFetchNoOtherCopy(t *testing.T) {
	st := remotetest.NewMemory()
	y := bytes.Repeat([]byte("y"), 7000)
	x := bytes.Repeat([]byte("x"), 5000)
	bad := putPack(t, st, y, bytes.Repeat([]byte("w"), 4000))
	idx := New()
	planted := bad
	planted.Entries = append([]pack.Entry{{ID: chunk.Sum(x), Off: bad.Entries[1].Off, Len: 4000}}, bad.Entries...)
	idx.Add(planted)
	got, failed := fetchAll(t, st, idx, []chunk.ID{chunk.Sum(x), chunk.Sum(y)})
	if !errors.Is(failed[chunk.Sum(x)], ErrCorrupt) || len(failed) != 1 {
		t.Errorf("failed %v, want only x, corrupt", failed)
	}
	if !bytes.Equal(got[chunk.Sum(y)], y) {
		t.Error("a neighbour of the bad copy was not read")
	}
}

// A pack indexed from its header (its index file damaged) adds its copy of
// a chunk even when a loaded index file names another copy, which may be
// in a pack that is gone (a stale index file): the chunk is read from the
// rebuilt copy (seed 15081 of the simulator's long mode).
func TestRebuildOrphansKeepsEveryCopy(t *testing.T) {
	st := remotetest.NewMemory()
	x := bytes.Repeat([]byte("x"), 5000)
	gone := putPack(t, st, x, bytes.Repeat([]byte("g"), 100))
	if err := st.Delete(t.Context(), pack.Key(gone.ID)); err != nil {
		t.Fatal(err)
	}
	putPack(t, st, x) // its index file damaged: an orphan
	idx := New()
	idx.merge("index/h/stale", []PackRecord{gone})
	idx.settle()
	if n, err := idx.RebuildOrphans(t.Context(), st); err != nil || n != 1 {
		t.Fatalf("RebuildOrphans: %d, %v; want the orphan pack", n, err)
	}
	got, failed := fetchAll(t, st, idx, []chunk.ID{chunk.Sum(x)})
	if !bytes.Equal(got[chunk.Sum(x)], x) {
		t.Fatalf("chunk not read from the rebuilt copy: %v", failed)
	}
}
