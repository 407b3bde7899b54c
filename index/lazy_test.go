package index

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// A filter holds every chunk it was given, and answers "maybe" for about
// 2 in 10,000 others.
func TestFilterFalsePositives(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randID := func() (id chunk.ID) {
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		return id
	}
	for _, n := range []int{1, 100, 100_000} {
		f := make([]byte, filterLen(n))
		var in []chunk.ID
		for range n {
			id := randID()
			in = append(in, id)
			filterAdd(f, id)
		}
		for _, id := range in {
			if !filterHas(f, id) {
				t.Fatalf("n=%d: a chunk added is not in the filter", n)
			}
		}
		const probes = 2_000_000
		fp := 0
		for range probes {
			if filterHas(f, randID()) {
				fp++
			}
		}
		if rate := float64(fp) / probes; n >= 100 && rate > 3e-4 {
			t.Errorf("n=%d: %.4f%% false positives, want about 0.02%%", n, 100*rate)
		}
		t.Logf("n=%d: %d bytes (%.2f a chunk), %.3f%% false positives", n, len(f), float64(len(f))/float64(n), 100*float64(fp)/probes)
	}
	if filterHas(nil, randID()) {
		t.Error("an empty filter holds a chunk")
	}
}

// rangeLog records the ranged reads of a store.
type rangeLog struct {
	remote.Store
	mu     sync.Mutex
	reads  []string
	listed []string // prefixes listed
}

func (r *rangeLog) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	r.mu.Lock()
	r.listed = append(r.listed, prefix)
	r.mu.Unlock()
	return r.Store.List(ctx, prefix, fn)
}

// lists returns the prefixes listed since the last call.
func (r *rangeLog) lists() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.listed
	r.listed = nil
	return out
}

func (r *rangeLog) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	r.mu.Lock()
	r.reads = append(r.reads, fmt.Sprintf("%s %d %d", key, off, n))
	r.mu.Unlock()
	return r.Store.Get(ctx, key, off, n)
}

func (r *rangeLog) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reads
	r.reads = nil
	return out
}

// putIndexFile writes an index file for host naming one pack of n chunks
// (no pack data), and returns its key and the chunk IDs.
func putIndexFile(t *testing.T, st remote.Store, host string, n int) (string, []chunk.ID) {
	t.Helper()
	var ids []chunk.ID
	for i := range n {
		ids = append(ids, chunk.Sum([]byte(fmt.Sprint(host, i))))
	}
	return putIDs(t, st, host, ids), ids
}

// putIDs writes an index file for host naming one pack (of its name) that
// holds ids, 100 bytes each in their order, and returns its key.
func putIDs(t *testing.T, st remote.Store, host string, ids []chunk.ID) string {
	t.Helper()
	rec := PackRecord{ID: chunk.Sum([]byte(host + "pack")), Size: int64(len(ids)) * 100}
	for i, id := range ids {
		rec.Entries = append(rec.Entries, pack.Entry{ID: id, Off: uint32(i * 100), Len: 100})
	}
	return putPacks(t, st, host, rec)
}

// In lazy mode Load lists and reads the host's own index files whole and
// nothing of the others'; the first lookup that misses the host's own
// lists the others and reads only their heads; a lookup of another host's
// chunk reads one bucket of its file, and after wholeAfter such lookups
// the whole file, once; a chunk in no file reads none (mostly: 2 in
// 10,000 probes read a bucket for nothing).
func TestLazyLoad(t *testing.T) {
	mem := remotetest.NewMemory()
	st := &rangeLog{Store: mem}
	ownKey, own := putIndexFile(t, st, "a", 1000)
	bKey, b := putIndexFile(t, st, "b", 20_000)
	cKey, c := putIndexFile(t, st, "c", 3000)
	st.take()
	st.lists()

	x := New()
	x.LoadOthersLazily("a")
	if _, err := x.Load(t.Context(), st, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if got := st.take(); len(got) != 1 || got[0] != ownKey+" 0 -1" {
		t.Fatalf("Load read %v; want %s whole and nothing else", got, ownKey)
	}
	if got := st.lists(); len(got) != 1 || got[0] != "index/a/" {
		t.Fatalf("Load listed %v; want only the host's own files (index/a/)", got)
	}
	if files, _ := x.filtered(); files != 0 {
		t.Errorf("Filtered = %d files before any lookup, want 0", files)
	}
	if x.Len() != len(own) {
		t.Fatalf("Len = %d before any lookup, want the own host's %d", x.Len(), len(own))
	}
	if !x.Has(own[5]) {
		t.Fatal("own chunk unknown")
	}
	if len(st.take()) != 0 || len(st.lists()) != 0 {
		t.Fatal("a lookup of an own chunk read or listed the store")
	}
	x.Has(chunk.Sum([]byte("nowhere at all")))
	reads := map[string]bool{}
	for _, r := range st.take() {
		reads[r] = true
	}
	if !reads[fmt.Sprintf("%s 0 %d", bKey, headLen(20_000))] || !reads[fmt.Sprintf("%s 0 %d", cKey, headLen(3000))] || len(reads) > 3 {
		t.Fatalf("the first lookup that missed read %v; want the heads of the others (and a bucket at most)", reads)
	}
	if got := st.lists(); len(got) != 1 || got[0] != "index/" {
		t.Fatalf("the first lookup that missed listed %v; want index/ once", got)
	}
	if files, n := x.filtered(); files != 2 || n != headLen(20_000)+headLen(3000)-2*int64(idxHeader) {
		t.Errorf("Filtered = %d files, %d bytes", files, n)
	}
	x.Has(chunk.Sum([]byte("nowhere either")))
	st.take()
	if got := st.lists(); len(got) != 0 {
		t.Fatalf("a second lookup that missed listed %v; want nothing", got)
	}
	for i := range wholeAfter {
		id := b[17+i]
		if loc, ok := x.Lookup(id); !ok || loc.Off != uint32(100*(17+i)) || loc.Len != 100 {
			t.Fatalf("Lookup of b's chunk = %+v, %v", loc, ok)
		}
		got := st.take()
		var off, n int64
		if len(got) == 0 {
			t.Fatalf("looking up b's chunk %d read nothing", i)
		}
		if _, err := fmt.Sscanf(got[0], bKey+" %d %d", &off, &n); err != nil || off < headLen(20_000) || n > 3*bucketTarget*idxEntrySize || n%idxEntrySize != 0 {
			t.Fatalf("looking up b's chunk %d read %v, want one bucket of %s", i, got, bKey)
		}
		if i < wholeAfter-1 && len(got) != 1 || i == wholeAfter-1 && (len(got) != 2 || got[1] != bKey+" 0 -1") {
			t.Fatalf("lookup %d of b's chunks read %v; want one bucket, and the file whole at the %dth", i, got, wholeAfter)
		}
	}
	for _, id := range b {
		if !x.Has(id) {
			t.Fatal("a chunk of b unknown after b was read")
		}
	}
	if got := st.take(); len(got) > 0 {
		t.Fatalf("b read again: %v", got)
	}
	// c's file is gone (a purge replaced it): its chunks are unknown, so a
	// writer uploads them again.
	if err := mem.Delete(t.Context(), cKey); err != nil {
		t.Fatal(err)
	}
	if x.Has(c[0]) {
		t.Fatal("a chunk of a deleted index file is known")
	}
	st.take()
	miss := 0
	for i := range 1000 {
		if x.Has(chunk.Sum([]byte(fmt.Sprint("nowhere", i)))) {
			t.Fatal("a chunk in no file is known")
		}
		miss += len(st.take())
	}
	if miss > 0 {
		t.Errorf("1000 lookups of unknown chunks read %d files, want none: every file was read or tried once", miss)
	}
	if x.Len() != len(own)+len(b) {
		t.Errorf("Len = %d, want %d", x.Len(), len(own)+len(b))
	}

	// A warm node reads no filter again: they are in its cache.
	cache := t.TempDir()
	y := New()
	y.LoadOthersLazily("a")
	if _, err := y.Load(t.Context(), st, cache); err != nil {
		t.Fatal(err)
	}
	st.take()
	z := New()
	z.LoadOthersLazily("a")
	if _, err := z.Load(t.Context(), st, cache); err != nil {
		t.Fatal(err)
	}
	if got := st.take(); len(got) != 0 {
		t.Errorf("a warm load read %v", got)
	}
}

// A damaged filter or bucket never makes a chunk known that is not: a
// filter is only a hint, and the bucket it leads to is checked by its sum.
func TestLazyDamagedFilter(t *testing.T) {
	mem := remotetest.NewMemory()
	bKey, b := putIndexFile(t, mem, "b", 500)
	raw, err := readAll(t, mem, bKey)
	if err != nil {
		t.Fatal(err)
	}
	// Every filter bit set: every lookup hits, the buckets decide.
	for i := idxHeader; i < idxHeader+filterLen(500); i++ {
		raw[i] = 0xff
	}
	if err := mem.Put(t.Context(), bKey, bytes.NewReader(raw), int64(len(raw))); err != nil {
		t.Fatal(err)
	}
	x := New()
	x.LoadOthersLazily("a")
	if _, err := x.Load(t.Context(), mem, ""); err != nil {
		t.Fatal(err)
	}
	if x.Has(chunk.Sum([]byte("other"))) {
		t.Fatal("a chunk in no bucket is known")
	}
	if loc, ok := x.Lookup(b[3]); !ok || loc.Off != 300 {
		t.Fatalf("Lookup of a chunk of an intact bucket = %+v, %v", loc, ok)
	}
	// A flipped bit in b[4]'s entry: its bucket fails its sum.
	i := bytes.Index(raw, b[4][:])
	raw[i+40] ^= 1
	if err := mem.Put(t.Context(), bKey, bytes.NewReader(raw), int64(len(raw))); err != nil {
		t.Fatal(err)
	}
	if x.Has(b[4]) {
		t.Fatal("a chunk of a bucket that fails its sum is known")
	}
}

func readAll(t *testing.T, st remote.Store, key string) ([]byte, error) {
	t.Helper()
	rc, err := st.Get(t.Context(), key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Lookups of chunks of one file that race its read all find their chunk,
// including one that missed just before the read ended.
func TestLazyConcurrentLookups(t *testing.T) {
	for range 20 {
		mem := remotetest.NewMemory()
		_, b := putIndexFile(t, mem, "b", 2000)
		x := New()
		x.LoadOthersLazily("a")
		if _, err := x.Load(t.Context(), mem, ""); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		missed := make(chan chunk.ID, len(b))
		for i := range 16 {
			wg.Go(func() {
				for j := i; j < len(b); j += 16 {
					if !x.Has(b[j]) {
						missed <- b[j]
					}
				}
			})
		}
		wg.Wait()
		close(missed)
		if n := len(missed); n > 0 {
			t.Fatalf("%d chunks of b unknown to lookups that raced its read", n)
		}
	}
}

// A continuous backup loads again and again: a file a purge replaced is
// probed no more, and one listed again is read again.
func TestLazyLoadForgetsUnlisted(t *testing.T) {
	mem := remotetest.NewMemory()
	st := &rangeLog{Store: mem}
	bKey, b := putIndexFile(t, st, "b", 2000)
	raw, err := readAll(t, mem, bKey)
	if err != nil {
		t.Fatal(err)
	}
	x := lazyIndex(t, st, "")
	if err := mem.Delete(t.Context(), bKey); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Load(t.Context(), st, ""); err != nil {
		t.Fatal(err)
	}
	st.take()
	if files, _ := x.filtered(); files != 0 || x.Has(b[0]) {
		t.Fatalf("after b's file was deleted: %d files probed, b's chunk known %v", files, x.Has(b[0]))
	}
	if got := st.take(); len(got) > 0 {
		t.Fatalf("a lookup read %v of a file no longer listed", got)
	}
	if err := mem.Put(t.Context(), bKey, bytes.NewReader(raw), int64(len(raw))); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Load(t.Context(), st, ""); err != nil {
		t.Fatal(err)
	}
	if !x.Has(b[1]) {
		t.Fatal("a chunk of a file listed again is unknown")
	}
}
