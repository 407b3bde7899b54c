package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// Attacks on the bucketed index format (CBIDX003) and on the lookups that
// read one bucket of another host's file (lazy.go): damaged and stale
// heads and buckets, pack-size disputes, races around the whole read
// after wholeAfter answers, heads spilled to the scratch file.

// putPacks encodes packs into an index file of host, stores it and
// returns its key.
func putPacks(t *testing.T, st remote.Store, host string, packs ...PackRecord) string {
	t.Helper()
	b, sum := EncodeFile(packs)
	key := Key(host, sum)
	if err := st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return key
}

// putBytes stores b under key.
func putBytes(t *testing.T, st remote.Store, key string, b []byte) {
	t.Helper()
	if err := st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// checkPlaced fails t if a chunk of putIndexFile's file of host (n
// chunks) is offered anywhere but where that file puts it, and returns
// how many of them are known.
func checkPlaced(t *testing.T, x *Index, host string, n int) int {
	t.Helper()
	_, ids := putIndexFileIDs(host, n)
	known := 0
	for i, id := range ids {
		loc, ok := x.Lookup(id)
		if !ok {
			continue
		}
		known++
		if want := (Location{packOfHost(host), uint32(i * 100), 100}); loc != want {
			t.Fatalf("%s's chunk %d offered at %+v, not where its file puts it (%+v)", host, i, loc, want)
		}
	}
	return known
}

// gate holds the first Get (off >= 0) or Stat (off -1) that match selects
// until release is closed, after closing entered.
func newGate(st remote.Store, match func(string, int64) bool) *gate {
	return &gate{Store: st, match: match, entered: make(chan struct{}), release: make(chan struct{})}
}

type gate struct {
	remote.Store
	match   func(key string, off int64) bool
	hit     atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gate) wait(key string, off int64) {
	if g.match(key, off) && g.hit.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.release
	}
}

func (g *gate) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	g.wait(key, off)
	return g.Store.Get(ctx, key, off, n)
}

func (g *gate) Stat(ctx context.Context, key string) (remote.Info, error) {
	g.wait(key, -1)
	return g.Store.Stat(ctx, key)
}

// A bucket table damaged in the store (or forged and renamed by its sum):
// ends out of order, past the last entry, short of it, sums swapped, a
// bucket whose end and sum are made to cover its neighbour's entries.
// Load goes on, and no chunk is offered where b's file does not put it.
func TestBucketAttackDamagedBucketTable(t *testing.T) {
	const n = 600 // 4 buckets
	tab := idxHeader + filterLen(n)
	end := func(b []byte, bk int) []byte { return b[tab+bk*idxBucketSize:][:4] }
	sum := func(b []byte, bk int) []byte { return b[tab+bk*idxBucketSize+4:][:8] }
	swap := func(p, q []byte) { c := bytes.Clone(p); copy(p, q); copy(q, c) }
	cases := map[string]func(b []byte){
		"ends swapped": func(b []byte) { swap(end(b, 0), end(b, 1)) },
		"end past n":   func(b []byte) { binary.LittleEndian.PutUint32(end(b, 3), n+5) },
		"end short":    func(b []byte) { binary.LittleEndian.PutUint32(end(b, 3), n-1) },
		"ends huge": func(b []byte) {
			for bk := range 4 {
				binary.LittleEndian.PutUint32(end(b, bk), 0xffffffff)
			}
		},
		"sums swapped": func(b []byte) { swap(sum(b, 0), sum(b, 1)) },
		"bucket 0 grabs bucket 1": func(b []byte) {
			e1 := binary.LittleEndian.Uint32(end(b, 1))
			copy(end(b, 0), end(b, 1))
			s := bucketSum(b[headLen(n):][:int(e1)*idxEntrySize])
			copy(sum(b, 0), s[:])
		},
	}
	stranger := chunk.Sum([]byte("stranger"))
	for name, damage := range cases {
		for _, renamed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s renamed=%v", name, renamed), func(t *testing.T) {
				st := remotetest.NewMemory()
				key, _ := putIndexFile(t, st, "b", n)
				raw, _ := readAll(t, st, key)
				damage(raw)
				if renamed {
					st.Delete(t.Context(), key)
					raw, key = resum("b", raw)
				}
				putBytes(t, st, key, raw)
				x := lazyIndex(t, st, t.TempDir())
				checkPlaced(t, x, "b", n)
				if loc, ok := x.Lookup(stranger); ok {
					t.Fatalf("a chunk in no file is known at %+v", loc)
				}
			})
		}
	}
}

// Another file's bytes under b's key: c's head or whole file in the cache
// (b's size), or c's or d's bytes (the same size, another) replacing b in
// the store after its head was read. No chunk of c or d is made known,
// and b's are offered only where b puts them.
func TestBucketAttackWrongBytesUnderKey(t *testing.T) {
	other := remotetest.NewMemory()
	cKey, _ := putIndexFile(t, other, "c", 500)
	c, _ := readAll(t, other, cKey)
	dKey, _ := putIndexFile(t, other, "d", 700)
	d, _ := readAll(t, other, dKey)
	for _, where := range []string{"cache head", "cache whole", "store same size", "store other size", "store empty"} {
		t.Run(where, func(t *testing.T) {
			st := remotetest.NewMemory()
			key, _ := putIndexFile(t, st, "b", 500)
			cache := t.TempDir()
			p := filepath.Join(cache, filepath.FromSlash(key))
			os.MkdirAll(filepath.Dir(p), 0o755)
			switch where {
			case "cache head":
				os.WriteFile(p+".head", c[:headLen(500)], 0o644)
			case "cache whole":
				os.WriteFile(p, c, 0o644)
			}
			x := lazyIndex(t, st, cache)
			switch where {
			case "store same size":
				putBytes(t, st, key, c)
			case "store other size":
				putBytes(t, st, key, d)
			case "store empty":
				putBytes(t, st, key, nil)
			}
			checkPlaced(t, x, "b", 500)
			if k := checkPlaced(t, x, "c", 500) + checkPlaced(t, x, "d", 700); k > 0 {
				t.Fatalf("%d chunks of files that are not in the store are known", k)
			}
		})
	}
}

// A damaged cached head heals. One flipped bit in the cached bucket table
// makes that bucket fail its sum; the file used to be marked damaged for
// the run and the next run read the same head from the cache again, so
// every backup of the node uploaded again every chunk it shares with host
// b although b's file in the store was intact. Now the cached head is
// removed and the file read whole from the store.
func TestBucketAttackDamagedCachedHeadHeals(t *testing.T) {
	st := remotetest.NewMemory()
	key, ids := putIndexFile(t, st, "b", 500)
	cache := t.TempDir()
	lazyIndex(t, st, cache) // caches b's head
	p := filepath.Join(cache, filepath.FromSlash(key)+".head")
	h, _ := os.ReadFile(p)
	bk := bucketOf(ids[0], bucketsFor(500))
	h[idxHeader+filterLen(500)+bk*idxBucketSize+4] ^= 1 // a bit of the sum of ids[0]'s bucket
	os.WriteFile(p, h, 0o644)
	checkPlaced(t, lazyIndex(t, st, cache), "b", 500) // finds the damage: may cost this run
	if k := checkPlaced(t, lazyIndex(t, st, cache), "b", 500); k != 500 {
		t.Errorf("the run after a damaged cached head was found knows %d of b's 500 chunks: the damaged head is used again", k)
	}
}

// Copies of one chunk in two packs of one bucket and in a third file:
// an excluded pack is never offered, whether excluded before the bucket
// was read or after, and every copy that is not excluded is.
func TestBucketAttackCopiesInBuckets(t *testing.T) {
	id, only := chunk.Sum([]byte("x")), chunk.Sum([]byte("y"))
	p1, p2, p3 := chunk.Sum([]byte("p1")), chunk.Sum([]byte("p2")), chunk.Sum([]byte("p3"))
	st := remotetest.NewMemory()
	putPacks(t, st, "b", PackRecord{ID: p1, Size: 1000, Entries: []pack.Entry{{ID: id, Len: 100}, {ID: only, Off: 100, Len: 100}}},
		PackRecord{ID: p2, Size: 1000, Entries: []pack.Entry{{ID: id, Off: 500, Len: 100}}})
	putPacks(t, st, "c", PackRecord{ID: p3, Size: 1000, Entries: []pack.Entry{{ID: id, Off: 700, Len: 100}}})
	x := lazyIndex(t, st, "")
	x.Exclude([]chunk.ID{p1})
	want := []Location{{p2, 500, 100}, {p3, 700, 100}}
	if loc, ok := x.Lookup(id); !ok || !slices.Contains(want, loc) {
		t.Fatalf("Lookup = %+v, %v; want one of %+v", loc, ok, want)
	} else if loc, ok := x.Lookup(only); ok {
		t.Fatalf("a chunk only in an excluded pack is offered at %+v", loc)
	}
	byOff := func(a, b Location) int { return int(a.Off) - int(b.Off) }
	if got := slices.SortedFunc(slices.Values(x.Copies(id)), byOff); !slices.Equal(got, want) {
		t.Fatalf("Copies = %+v, want %+v", got, want)
	}
	x.Exclude([]chunk.ID{p2, p3})
	if loc, ok := x.Lookup(id); ok {
		t.Fatalf("a chunk whose every copy is excluded is offered at %+v", loc)
	}
	if err := x.faultAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := x.Copies(id); len(got) > 0 {
		t.Fatalf("Copies offers excluded packs after the files were read whole: %+v", got)
	}
}

// checkRanges fails t if a copy of id is offered past its pack's recorded
// size, or in a pack whose recorded size is not its size in the store.
func checkRanges(t *testing.T, x *Index, st remote.Store, id chunk.ID) {
	t.Helper()
	for _, l := range x.Copies(id) {
		size := x.PackSize(l.Pack)
		if int64(l.Off)+int64(l.Len) > size {
			t.Errorf("chunk offered at [%d, %d) of pack %.8s, whose recorded size is %d: a range larger than its pack", l.Off, l.Off+l.Len, l.Pack, size)
		}
		if info, err := st.Stat(t.Context(), pack.Key(l.Pack)); err == nil && info.Size != size {
			t.Errorf("pack %.8s recorded at %d bytes, stored at %d", l.Pack, size, info.Size)
		}
	}
}

// A bucket and a loaded file that give one pack two sizes: the store
// decides. A lying bucket's chunk is not offered past the true end; a
// loaded file that lied is corrected and the bucket's chunk offered.
func TestBucketAttackPackSizeDispute(t *testing.T) {
	p := chunk.Sum([]byte("disputed pack"))
	z, y := chunk.Sum([]byte("z")), chunk.Sum([]byte("y"))
	for _, c := range []struct {
		name      string
		own, lazy int64
		yOff      uint32
	}{{"bucket lies", 1000, 2000, 1500}, {"loaded file lies", 500, 1000, 900}} {
		t.Run(c.name, func(t *testing.T) {
			st := remotetest.NewMemory()
			putBytes(t, st, pack.Key(p), make([]byte, 1000))
			putPacks(t, st, "a", PackRecord{ID: p, Size: c.own, Entries: []pack.Entry{{ID: z, Len: 100}}})
			putPacks(t, st, "c", PackRecord{ID: p, Size: c.lazy, Entries: []pack.Entry{{ID: y, Off: c.yOff, Len: 100}}})
			x := lazyIndex(t, st, "")
			ok := x.Has(y)
			checkRanges(t, x, st, y)
			checkRanges(t, x, st, z)
			if c.lazy == 1000 && !ok {
				t.Error("the chunk of the bucket that gave the pack's true size is unknown")
			}
		})
	}
}

// checkSizes compares a bucket's pack sizes with the recorded ones under
// the read lock, and the merge used to keep whatever size was recorded
// meanwhile. Here b's bucket lists x in pack p (1000 bytes, at 900) and
// in pack d, disputed, so its check waits on the store; meanwhile c's
// bucket records p at 500; b's entry at [900, 1000) was then admitted into
// a pack recorded at 500 bytes, never checked. Now the merge finds the
// dispute under its lock and the check runs again. (The gate only widens
// a window that any two lookups, or a lookup and a Load, race through.)
func TestBucketAttackPackSizeRace(t *testing.T) {
	p, d := chunk.Sum([]byte("raced pack")), chunk.Sum([]byte("disputed pack"))
	x1, y, z := chunk.Sum([]byte("x")), chunk.Sum([]byte("y")), chunk.Sum([]byte("z"))
	mem := remotetest.NewMemory()
	putBytes(t, mem, pack.Key(p), make([]byte, 1000))
	putBytes(t, mem, pack.Key(d), make([]byte, 800))
	putPacks(t, mem, "a", PackRecord{ID: d, Size: 700, Entries: []pack.Entry{{ID: z, Len: 100}}})
	putPacks(t, mem, "b", PackRecord{ID: p, Size: 1000, Entries: []pack.Entry{{ID: x1, Off: 900, Len: 100}}},
		PackRecord{ID: d, Size: 800, Entries: []pack.Entry{{ID: x1, Len: 100}}})
	putPacks(t, mem, "c", PackRecord{ID: p, Size: 500, Entries: []pack.Entry{{ID: y, Len: 100}}})
	g := newGate(mem, func(key string, off int64) bool { return key == pack.Key(d) && off == -1 })
	x := lazyIndex(t, g, "")
	done := make(chan struct{})
	go func() { defer close(done); x.Has(x1) }()
	select {
	case <-g.entered: // b's bucket is read; its check of d waits
	case <-done:
		t.Fatal("b's bucket was not checked against the store")
	}
	x.Has(y) // c's bucket records p at 500 bytes
	close(g.release)
	<-done
	checkRanges(t, x, mem, x1)
	checkRanges(t, x, mem, y)
}

// A bucket read that ends after its file was read whole used to add its
// chunk to found after settleLocked had cleaned found, so Len counted the
// chunk twice (in sorted and in found) until the next merge.
func TestBucketAttackBucketAfterWholeRead(t *testing.T) {
	mem := remotetest.NewMemory()
	key, ids := putIndexFile(t, mem, "b", 2000)
	raw, _ := readAll(t, mem, key)
	h, _ := decodeHead(raw, int64(len(raw)))
	late := ids[0]
	lo, _ := h.bucketRange(bucketOf(late, h.buckets()))
	at := headLen(2000) + int64(lo)*idxEntrySize
	g := newGate(mem, func(k string, off int64) bool { return k == key && off == at })
	x := lazyIndex(t, g, "")
	found := make(chan bool)
	go func() { found <- x.Has(late) }()
	<-g.entered
	n := 0
	for _, id := range ids {
		if n < wholeAfter && bucketOf(id, h.buckets()) != bucketOf(late, h.buckets()) {
			n++
			if !x.Has(id) {
				t.Fatal("a chunk of b unknown")
			}
		}
	}
	if files, _ := x.filtered(); files != 0 {
		t.Fatal("b not read whole after wholeAfter answers")
	}
	close(g.release)
	if !<-found {
		t.Fatal("the chunk whose bucket read raced the whole read is unknown")
	}
	if got := x.Len(); got != 2000 {
		t.Errorf("Len = %d after b's 2000 chunks were read whole, want 2000", got)
	}
	if c := x.Copies(late); len(c) != 1 {
		t.Errorf("Copies = %+v, want one", c)
	}
}

// Many goroutines look up the chunks of one bucket of each of three files,
// crossing wholeAfter together while the whole reads are slow: every chunk
// is found where its file puts it, and each file is read whole once.
func TestBucketAttackConcurrentWholeAfter(t *testing.T) {
	st := &countGets{Store: remotetest.NewMemory(), whole: map[string]int{}, delay: 2 * time.Millisecond}
	type want struct {
		id  chunk.ID
		loc Location
	}
	var wants []want
	keys := map[string]bool{}
	for _, host := range []string{"b", "c", "d"} {
		key, ids := putIndexFile(t, st, host, 2000)
		keys[key] = true
		for i, id := range ids {
			if bucketOf(id, bucketsFor(2000)) == 0 {
				wants = append(wants, want{id, Location{packOfHost(host), uint32(i * 100), 100}})
			}
		}
	}
	x := lazyIndex(t, st, "")
	var bad atomic.Int32
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Go(func() {
			for i := range wants {
				w := wants[(i+g*7)%len(wants)]
				if loc, ok := x.Lookup(w.id); !ok || loc != w.loc {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d lookups missed or misplaced a chunk", n)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for k := range keys {
		if st.whole[k] != 1 {
			t.Errorf("%s read whole %d times, want 1", k, st.whole[k])
		}
	}
}

// bigFiles caches large index files across tests and -count runs.
var bigFiles sync.Map // host -> []byte

// putBigFile stores putIndexFile's file of host with n chunks, built once.
func putBigFile(t *testing.T, st remote.Store, host string, n int) string {
	t.Helper()
	b, ok := bigFiles.Load(host)
	if !ok {
		mem := remotetest.NewMemory()
		key, _ := putIndexFile(t, mem, host, n)
		raw, _ := readAll(t, mem, key)
		b, _ = bigFiles.LoadOrStore(host, raw)
	}
	raw := b.([]byte)
	key := Key(host, chunk.ID(raw[len(raw)-32:]))
	putBytes(t, st, key, raw)
	return key
}

// Heads of large files (256 KB each) fill the 1 MiB kept in memory; a
// Load that adds two more moves them to the scratch file while lookups
// probe them. Every chunk looked up is found where its file puts it.
func TestBucketAttackSpilledHeadsRaceLoad(t *testing.T) {
	const n = 100_000
	mem := remotetest.NewMemory()
	first, later := []string{"b", "c", "d", "e"}, []string{"f", "g"}
	for _, h := range first {
		putBigFile(t, mem, h, n)
	}
	x := lazyIndex(t, mem, t.TempDir())
	if x.lazy.heads.file != nil {
		t.Fatal("heads of four files already in a scratch file")
	}
	var bad atomic.Int32
	look := func(hosts []string, g int) {
		for _, h := range hosts {
			for i := g * 131; i < n; i += n / 2 { // 16 answers a file in all: one whole read
				if loc, ok := x.Lookup(chunk.Sum([]byte(fmt.Sprint(h, i)))); !ok || loc != (Location{packOfHost(h), uint32(i * 100), 100}) {
					bad.Add(1)
				}
			}
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() { look(first, g) })
	}
	wg.Go(func() {
		for _, h := range later {
			putBigFile(t, mem, h, n)
		}
		if _, err := x.Load(t.Context(), mem, ""); err != nil {
			t.Error(err)
		}
		look(later, 0)
	})
	wg.Wait()
	if x.lazy.heads.file == nil {
		t.Error("six heads of 256 KB still in memory")
	}
	look(later, 1)
	if k := bad.Load(); k > 0 {
		t.Errorf("%d lookups missed or misplaced a chunk", k)
	}
}

// When the heads outgrow memory and no scratch file can be made (the
// cache folder cannot be created, the temporary folder is missing or
// full), Load used to fail, blaming an index file, so the backup did not
// run at all; now the heads stay in memory.
func TestBucketAttackScratchUnavailable(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o644)
	t.Setenv("TMPDIR", filepath.Join(blocker, "tmp"))
	mem := remotetest.NewMemory()
	for _, h := range []string{"b", "c", "d", "e", "f"} {
		putBigFile(t, mem, h, 100_000)
	}
	x := New()
	x.LoadOthersLazily("a")
	if _, err := x.Load(t.Context(), mem, filepath.Join(blocker, "cache")); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !x.Has(chunk.Sum([]byte("f7"))) {
		t.Error("a chunk of f unknown")
	}
}

// Continuous backup: b's file is replaced by one naming its chunks in
// another pack, and Load runs again. Chunks found before stay where b put
// them, others are found in the replacement, none elsewhere; the same
// operations give the same answers twice (the simulator relies on it).
func TestBucketAttackReloadAfterReplace(t *testing.T) {
	p2 := chunk.Sum([]byte("b2 pack"))
	run := func() []string {
		mem := remotetest.NewMemory()
		key, ids := putIndexFile(t, mem, "b", 300)
		x := lazyIndex(t, mem, "")
		var out []string
		look := func(from, to int) {
			for i := from; i < to; i++ {
				loc, ok := x.Lookup(ids[i])
				if ok && (loc.Off != uint32(i*100) || loc.Pack != packOfHost("b") && loc.Pack != p2) {
					t.Fatalf("chunk %d at %+v", i, loc)
				}
				out = append(out, fmt.Sprint(i, loc, ok, len(x.Copies(ids[i])), x.Len()))
			}
		}
		look(0, 5)
		mem.Delete(t.Context(), key)
		rec := PackRecord{ID: p2, Size: 30000}
		for i, id := range ids {
			rec.Entries = append(rec.Entries, pack.Entry{ID: id, Off: uint32(i * 100), Len: 100})
		}
		putPacks(t, mem, "b", rec)
		if _, err := x.Load(t.Context(), mem, ""); err != nil {
			t.Fatal(err)
		}
		look(0, 40)
		for i := 5; i < 40; i++ {
			if loc, _ := x.Lookup(ids[i]); loc.Pack != p2 {
				t.Fatalf("chunk %d of the replacement at %+v", i, loc)
			}
		}
		return out
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Errorf("the same operations gave other answers:\n%v\n%v", a, b)
	}
}

// Files of no entry and of one (a single bucket), and a file whose chunks
// all fall in bucket 0 with every filter bit set: a chunk of an empty
// bucket reads nothing, and every chunk is found where its file puts it.
func TestBucketAttackTinyFilesAndEmptyBuckets(t *testing.T) {
	st := &rangeLog{Store: remotetest.NewMemory()}
	putPacks(t, st, "b")
	one := chunk.Sum([]byte("one"))
	putPacks(t, st, "c", PackRecord{ID: chunk.Sum([]byte("c pack")), Size: 100, Entries: []pack.Entry{{ID: one, Len: 100}}})
	dp := PackRecord{ID: chunk.Sum([]byte("d pack")), Size: 60000}
	for i := 0; len(dp.Entries) < 600; i++ {
		if id := chunk.Sum([]byte(fmt.Sprint("d", i))); bucketOf(id, 4) == 0 {
			dp.Entries = append(dp.Entries, pack.Entry{ID: id, Off: uint32(len(dp.Entries) * 100), Len: 100})
		}
	}
	raw, _ := EncodeFile([]PackRecord{dp})
	for i := idxHeader; i < idxHeader+filterLen(600); i++ {
		raw[i] = 0xff
	}
	raw, key := resum("d", raw)
	putBytes(t, st, key, raw)
	x := lazyIndex(t, st, "")
	if loc, ok := x.Lookup(one); !ok || loc != (Location{chunk.Sum([]byte("c pack")), 0, 100}) {
		t.Fatalf("the chunk of a file of one = %+v, %v", loc, ok)
	}
	st.take()
	var empty chunk.ID
	for i := 0; bucketOf(empty, 4) != 3; i++ {
		empty = chunk.Sum([]byte(fmt.Sprint("empty", i)))
	}
	if loc, ok := x.Lookup(empty); ok {
		t.Fatalf("a chunk of an empty bucket is known at %+v", loc)
	}
	for _, r := range st.take() {
		if strings.HasPrefix(r, key) {
			t.Errorf("a lookup in an empty bucket read %s", r)
		}
	}
	for _, e := range dp.Entries[:40] {
		if loc, ok := x.Lookup(e.ID); !ok || loc != (Location{dp.ID, e.Off, e.Len}) {
			t.Fatalf("d's chunk = %+v, %v; want at %d", loc, ok, e.Off)
		}
	}
}

// Lookup and Copies used to consult other hosts' files only when memory
// held no usable copy (older than buckets): a chunk whose only loaded copy
// is in an avoided pack was returned from it although b's file names a
// copy elsewhere (avoided only as the last resort), and Copies listed the
// loaded copy only, so a reader whose copy fails its check
// (index/reader.go fetcher.pick; a backup reads its previous manifests
// through this index) never tried b's.
func TestBucketAttackCopiesOfLazyFiles(t *testing.T) {
	id := chunk.Sum([]byte("shared"))
	own, other := chunk.Sum([]byte("own pack")), chunk.Sum([]byte("other pack"))
	st := remotetest.NewMemory()
	putPacks(t, st, "a", PackRecord{ID: own, Size: 1000, Entries: []pack.Entry{{ID: id, Len: 100}}})
	putPacks(t, st, "b", PackRecord{ID: other, Size: 1000, Entries: []pack.Entry{{ID: id, Off: 200, Len: 100}}})
	x := lazyIndex(t, st, "")
	if got, want := x.Copies(id), []Location{{own, 0, 100}, {other, 200, 100}}; !slices.Equal(got, want) {
		t.Errorf("Copies = %+v, want %+v", got, want)
	}
	y := lazyIndex(t, st, "")
	y.Avoid([]chunk.ID{own})
	if loc, ok := y.Lookup(id); !ok || loc.Pack != other {
		t.Errorf("Lookup = %+v, %v; want the copy in b's pack, not the avoided one", loc, ok)
	}
}
