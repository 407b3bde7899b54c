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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// Attacks on lazy loading (lazy.go, filter.go). A reader must never treat
// a chunk as stored in a pack that is not offered (condemned), nor at a
// location no verified index file gives.

// lazyIndex returns an index of host "a" in lazy mode, loaded from st.
func lazyIndex(t *testing.T, st remote.Store, cache string) *Index {
	t.Helper()
	x := New()
	x.LoadOthersLazily("a")
	if _, err := x.Load(t.Context(), st, cache); err != nil {
		t.Fatal(err)
	}
	// The first lookup that misses host a's own files lists the others and
	// reads their heads: here, as a backup's first new chunk would.
	x.Lookup(chunk.Sum([]byte("no such chunk")))
	return x
}

// packOfHost is the pack putIndexFile names for host.
func packOfHost(host string) chunk.ID { return chunk.Sum([]byte(host + "pack")) }

// Condemned packs named by a file read lazily are never offered, whether
// the set was learned before Load or between Load and the lookup that
// reads the file; a copy in another lazily read file is offered instead.
func TestLazyAttackCondemnedPackOfLazyFile(t *testing.T) {
	for _, when := range []string{"before load", "after load"} {
		t.Run(when, func(t *testing.T) {
			st := remotetest.NewMemory()
			_, b := putIndexFile(t, st, "b", 300)
			// c holds b's chunk 7 in another pack.
			other := PackRecord{ID: chunk.Sum([]byte("c-pack")), Size: 1000,
				Entries: []pack.Entry{{ID: b[7], Off: 10, Len: 100}}}
			cb, csum := EncodeFile([]PackRecord{other})
			st.Put(t.Context(), Key("c", csum), bytes.NewReader(cb), int64(len(cb)))
			x := New()
			x.LoadOthersLazily("a")
			if when == "before load" {
				x.Exclude([]chunk.ID{packOfHost("b")})
			}
			if _, err := x.Load(t.Context(), st, ""); err != nil {
				t.Fatal(err)
			}
			if when == "after load" {
				x.Exclude([]chunk.ID{packOfHost("b")})
			}
			if loc, ok := x.Lookup(b[3]); ok {
				t.Errorf("Lookup of a chunk only in a condemned pack = %+v, want unknown", loc)
			}
			if loc, ok := x.Lookup(b[7]); !ok || loc.Pack != other.ID || loc.Off != 10 {
				t.Errorf("Lookup of a chunk in a condemned pack and in c's = %+v, %v; want c's pack", loc, ok)
			}
			for _, l := range x.Copies(b[3]) {
				t.Errorf("Copies offers %+v in a condemned pack", l)
			}
		})
	}
}

// resum rewrites an index file's checksum after a forgery (a hostile
// writer can name its file by its own sum) and returns it with its key.
func resum(host string, b []byte) ([]byte, string) {
	sum := chunk.Sum(b[:len(b)-32])
	copy(b[len(b)-32:], sum[:])
	return b, Key(host, sum)
}

// A forged filter never makes a chunk known that its file does not hold,
// nor at another place; a header that lies about the filter's length
// makes the file damaged, and Load goes on.
func TestLazyAttackForgedFilter(t *testing.T) {
	_, ids := putIndexFile(t, remotetest.NewMemory(), "b", 400)
	stranger := chunk.Sum([]byte("not in b"))
	good := func(t *testing.T) []byte {
		st := remotetest.NewMemory()
		k, _ := putIndexFile(t, st, "b", 400)
		raw, err := readAll(t, st, k)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	nf := filterLen(400)
	cases := []struct {
		name  string
		forge func([]byte) []byte
		known bool // b's own chunks still found
	}{
		{"all ones", func(b []byte) []byte {
			for i := idxHeader; i < idxHeader+nf; i++ {
				b[i] = 0xff
			}
			return b
		}, true},
		{"all zeros", func(b []byte) []byte {
			clear(b[idxHeader : idxHeader+nf])
			return b
		}, false},
		{"nFilter 0", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[16:], 0)
			return b
		}, false},
		{"nFilter huge", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[16:], 0xffffffff)
			return b
		}, false},
		{"nEntries huge", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[12:], 0xffffffff)
			return b
		}, false},
		{"nEntries 1 nFilter 64", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[12:], 1)
			binary.LittleEndian.PutUint32(b[16:], 64)
			return b
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := remotetest.NewMemory()
			raw, key := resum("b", c.forge(good(t)))
			st.Put(t.Context(), key, bytes.NewReader(raw), int64(len(raw)))
			x := New()
			x.LoadOthersLazily("a")
			if _, err := x.Load(t.Context(), st, t.TempDir()); err != nil {
				t.Fatalf("Load: %v", err)
			}
			if loc, ok := x.Lookup(stranger); ok {
				t.Errorf("a chunk in no file is known: %+v", loc)
			}
			for i, id := range ids {
				loc, ok := x.Lookup(id)
				if ok && (loc.Pack != packOfHost("b") || loc.Off != uint32(i*100) || loc.Len != 100) {
					t.Fatalf("chunk %d at %+v, not where b's file puts it", i, loc)
				}
				if c.known && !ok {
					t.Fatalf("chunk %d of b unknown", i)
				}
			}
		})
	}
}

// listLiar reports listed sizes of index files changed by f.
type listLiar struct {
	remote.Store
	f func(int64) int64
}

func (l listLiar) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	return l.Store.List(ctx, prefix, func(i remote.Info) error {
		i.Size = l.f(i.Size)
		return fn(i)
	})
}

// A listing that lies about an index file's size makes Load neither fail
// nor allocate the lie, and no chunk is placed where the file does not put
// it.
func TestLazyAttackListingLies(t *testing.T) {
	for name, f := range map[string]func(int64) int64{
		"zero": func(int64) int64 { return 0 }, "unknown": func(int64) int64 { return -1 },
		"short": func(s int64) int64 { return s / 3 }, "header": func(int64) int64 { return int64(idxHeader) },
		"long": func(s int64) int64 { return s + 4096 }, "huge": func(int64) int64 { return 1 << 40 },
		"max": func(int64) int64 { return MaxFileSize },
	} {
		t.Run(name, func(t *testing.T) {
			mem := remotetest.NewMemory()
			_, ids := putIndexFile(t, mem, "b", 2000)
			st := listLiar{mem, f}
			x := New()
			x.LoadOthersLazily("a")
			var err error
			n := allocated(func() { _, err = x.Load(t.Context(), st, "") })
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkAlloc(t, "Load", n)
			for i, id := range ids {
				if loc, ok := x.Lookup(id); ok && (loc.Pack != packOfHost("b") || loc.Off != uint32(i*100)) {
					t.Fatalf("chunk %d at %+v", i, loc)
				}
			}
		})
	}
}

// What a cache may hold under <key>.head: a symbolic link, a FIFO, a
// truncated or forged head, a folder. Load never hangs nor fails on it,
// and no chunk is placed where b's file does not put it.
func TestLazyAttackCacheFilterFile(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, bytes.Repeat([]byte{0xff}, 4096), 0o644)
	for _, c := range []struct {
		name  string
		plant func(t *testing.T, path string, real []byte)
	}{
		{"symlink", func(t *testing.T, p string, _ []byte) { os.Symlink(outside, p) }},
		{"symlink to dev zero", func(t *testing.T, p string, _ []byte) { os.Symlink("/dev/zero", p) }},
		{"fifo", func(t *testing.T, p string, _ []byte) { syscall.Mkfifo(p, 0o644) }},
		{"folder", func(t *testing.T, p string, _ []byte) { os.Mkdir(p, 0o755) }},
		{"truncated", func(t *testing.T, p string, r []byte) { os.WriteFile(p, r[:len(r)/2], 0o644) }},
		{"all ones", func(t *testing.T, p string, r []byte) {
			b := bytes.Clone(r)
			for i := idxHeader; i < len(b); i++ {
				b[i] = 0xff
			}
			os.WriteFile(p, b, 0o644)
		}},
		{"all zeros", func(t *testing.T, p string, r []byte) {
			b := bytes.Clone(r)
			clear(b[idxHeader:])
			os.WriteFile(p, b, 0o644)
		}},
		{"whole file instead", func(t *testing.T, p string, r []byte) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := remotetest.NewMemory()
			key, ids := putIndexFile(t, st, "b", 500)
			cache := t.TempDir()
			lazyIndex(t, st, cache) // caches b's head
			p := filepath.Join(cache, filepath.FromSlash(key)+".head")
			real, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(p)
			c.plant(t, p, real)
			done := make(chan *Index, 1)
			go func() {
				x := New()
				x.LoadOthersLazily("a")
				if _, err := x.Load(t.Context(), st, cache); err != nil {
					t.Errorf("Load: %v", err)
				}
				done <- x
			}()
			var x *Index
			select {
			case x = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Load hangs on the cache's head file")
			}
			if x == nil {
				return
			}
			for i, id := range ids {
				if loc, ok := x.Lookup(id); ok && (loc.Pack != packOfHost("b") || loc.Off != uint32(i*100)) {
					t.Fatalf("chunk %d at %+v", i, loc)
				}
			}
			if _, ok := x.Lookup(chunk.Sum([]byte("stranger"))); ok {
				t.Fatal("a chunk in no file is known")
			}
		})
	}
}

// A host whose name extends the backup's own ("a" and "ab", "a.b", "a-")
// is another host: its files are read by filter.
func TestLazyAttackHostNamePrefix(t *testing.T) {
	st := remotetest.NewMemory()
	_, own := putIndexFile(t, st, "a", 100)
	var others []chunk.ID
	for _, h := range []string{"ab", "a.b", "a-", "a_", "A"} {
		_, ids := putIndexFile(t, st, h, 100)
		others = append(others, ids...)
	}
	x := lazyIndex(t, st, "")
	if files, _ := x.filtered(); files != 5 || x.Len() != len(own) {
		t.Errorf("Filtered files = %d, Len = %d; want 5 and %d", files, x.Len(), len(own))
	}
	for _, id := range others {
		if !x.Has(id) {
			t.Fatal("a chunk of another host's file is unknown")
		}
	}
}

// countGets counts whole reads of each key.
type countGets struct {
	remote.Store
	mu    sync.Mutex
	whole map[string]int
	delay time.Duration
}

func (c *countGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if n < 0 {
		c.mu.Lock()
		c.whole[key]++
		c.mu.Unlock()
		time.Sleep(c.delay)
	}
	return c.Store.Get(ctx, key, off, n)
}

// Many goroutines look up chunks of the same lazily read files while
// others exclude packs, add packs and load again (continuous backup's
// refresh): each file is read whole once, every chunk is found where its
// file puts it, and the race detector finds nothing (go test -race).
func TestLazyAttackConcurrentLookups(t *testing.T) {
	st := &countGets{Store: remotetest.NewMemory(), whole: map[string]int{}, delay: 5 * time.Millisecond}
	hosts := []string{"b", "c", "d", "e"}
	files := map[string][]chunk.ID{}
	for _, h := range hosts {
		k, ids := putIndexFile(t, st, h, 3000)
		files[k] = ids
	}
	x := lazyIndex(t, st, t.TempDir())
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, h := range hosts {
				_, ids := putIndexFileIDs(h, 3000)
				for i := g; i < len(ids); i += 7 {
					loc, ok := x.Lookup(ids[i])
					if !ok || loc.Pack != packOfHost(h) || loc.Off != uint32(i*100) {
						bad.Add(1)
					}
				}
			}
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := range 200 {
			x.Exclude([]chunk.ID{chunk.Sum([]byte(fmt.Sprint("gone", i)))})
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 200 {
			id := chunk.Sum([]byte(fmt.Sprint("mine", i)))
			x.Add(PackRecord{ID: chunk.Sum(id[:]), Size: 100, Entries: []pack.Entry{{ID: id, Len: 100}}})
			x.Copies(id)
			x.Len()
		}
	}()
	go func() {
		defer wg.Done()
		putIndexFile(t, st, "f", 500)
		putIndexFile(t, st, "a", 500)
		if _, err := x.Load(t.Context(), st, ""); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d lookups missed or misplaced a chunk", n)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for k := range files {
		if st.whole[k] != 1 {
			t.Errorf("%s read whole %d times, want 1", k, st.whole[k])
		}
	}
}

// putIndexFileIDs returns the chunk IDs putIndexFile gives host's file.
func putIndexFileIDs(host string, n int) (string, []chunk.ID) {
	var ids []chunk.ID
	for i := range n {
		ids = append(ids, chunk.Sum([]byte(fmt.Sprint(host, i))))
	}
	return host, ids
}

// A file replaced by a purge after its head was read, or damaged in
// place, never places a chunk where the file did not: a deleted file's
// chunks are unknown, and so are those of a damaged bucket; the other
// buckets of a file changed in place are each checked by their sum.
func TestLazyAttackFileGoneOrDamagedAfterFilter(t *testing.T) {
	for _, what := range []string{"deleted", "damaged", "truncated", "longer"} {
		t.Run(what, func(t *testing.T) {
			st := remotetest.NewMemory()
			key, ids := putIndexFile(t, st, "b", 600)
			x := lazyIndex(t, st, "")
			raw, _ := readAll(t, st, key)
			h, err := decodeHead(raw, int64(len(raw)))
			if err != nil || h.buckets() < 2 {
				t.Fatalf("head: %v, %d buckets; want 2 or more", err, h.buckets())
			}
			last := h.buckets() - 1
			switch what {
			case "deleted":
				st.Delete(t.Context(), key)
			case "damaged":
				raw[len(raw)-100] ^= 1 // in the last bucket
				st.Put(t.Context(), key, bytes.NewReader(raw), int64(len(raw)))
			case "truncated":
				st.Put(t.Context(), key, bytes.NewReader(raw[:len(raw)-1]), int64(len(raw)-1))
			case "longer":
				raw = append(raw, 0)
				st.Put(t.Context(), key, bytes.NewReader(raw), int64(len(raw)))
			}
			// Chunks of the damaged bucket first: after them the file
			// is not read again.
			slices.SortFunc(ids, func(a, b chunk.ID) int { return bucketOf(b, h.buckets()) - bucketOf(a, h.buckets()) })
			for _, id := range ids {
				loc, ok := x.Lookup(id)
				switch {
				case !ok:
				case what == "deleted" || what == "damaged" && bucketOf(id, h.buckets()) == last:
					t.Fatalf("a chunk of a %s file is known at %+v", what, loc)
				case loc.Pack != packOfHost("b") || loc.Off != uint32(100*slices.Index(putIndexFileIDs600, id)):
					t.Fatalf("a chunk of a %s file is known at %+v, not where the file put it", what, loc)
				}
			}
		})
	}
}

// putIndexFileIDs600 are the IDs putIndexFile gives host b's file of 600.
var putIndexFileIDs600 = func() []chunk.ID { _, ids := putIndexFileIDs("b", 600); return ids }()

// failOnce fails the first read of key after its head (a bucket) with an
// error that is neither not-found nor damage: a timeout, a 503 a retry
// layer gave up on.
type failOnce struct {
	remote.Store
	key    string
	failed atomic.Bool
}

func (f *failOnce) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if key == f.key && off > 0 && f.failed.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("get %s: %w", key, remotetest.ErrInjected)
	}
	return f.Store.Get(ctx, key, off, n)
}

// A transient failure of a read of another host's file costs that
// lookup, not the run: had the file been given up on, every chunk the
// backup shares with that host would be uploaded again for the rest of
// the run (a continuous backup: for days).
func TestLazyAttackTransientFaultReadNeverRetried(t *testing.T) {
	mem := remotetest.NewMemory()
	key, ids := putIndexFile(t, mem, "b", 300)
	st := &failOnce{Store: mem, key: key}
	x := lazyIndex(t, st, "")
	if x.Has(ids[0]) {
		t.Fatal("known while its file cannot be read")
	}
	unknown := 0
	for _, id := range ids[1:] {
		if !x.Has(id) {
			unknown++
		}
	}
	if unknown > 0 {
		t.Errorf("after one failed read of %s, %d of %d chunks of it stay unknown for the run; want it read again at a later lookup", key, unknown, len(ids)-1)
	}
}
