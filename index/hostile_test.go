package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
)

// Attacks by someone who can write the store but not the node (issue 11).
// The planted objects are sparse files: free on disk, 4 GiB to a reader
// that trusts them.
const hugeSize = 4 << 30

// allocBudget is what reading one hostile object may allocate in all.
const allocBudget = 64 << 20

// localStore returns a local store in a fresh folder, and the folder.
func localStore(t *testing.T) (*local.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st, dir
}

// plantSparse makes name a sparse file of size bytes, creating its folder.
func plantSparse(t *testing.T, name string, size int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// allocated returns how many bytes fn allocates, counting what it frees.
// Tests that use it do not run in parallel.
func allocated(fn func()) uint64 {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func checkAlloc(t *testing.T, what string, n uint64) {
	t.Helper()
	t.Logf("%s allocated %d KiB", what, n>>10)
	if n > allocBudget {
		t.Errorf("%s allocated %d MiB, want at most %d MiB", what, n>>20, allocBudget>>20)
	}
}

var hugeIndexKey = "index/h/" + strings.Repeat("ab", 32)

func TestLoadRefusesHugeIndexFile(t *testing.T) {
	st, dir := localStore(t)
	plantSparse(t, filepath.Join(dir, filepath.FromSlash(hugeIndexKey)), hugeSize)
	var ls LoadStats
	var err error
	n := allocated(func() { ls, err = New().Load(t.Context(), st, t.TempDir()) })
	checkAlloc(t, "Load", n)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	derr := ls.Damaged[hugeIndexKey]
	if derr == nil || !errors.Is(derr, ErrDamaged) || !strings.Contains(derr.Error(), "more than") {
		t.Errorf("Damaged[%s] = %v, want an ErrDamaged saying it is too large", hugeIndexKey, derr)
	}
}

func TestReadFileRefusesHugeIndexFile(t *testing.T) {
	st, dir := localStore(t)
	plantSparse(t, filepath.Join(dir, filepath.FromSlash(hugeIndexKey)), hugeSize)
	var err error
	n := allocated(func() { _, err = ReadFile(t.Context(), st, hugeIndexKey) })
	checkAlloc(t, "ReadFile", n)
	if err == nil || !strings.Contains(err.Error(), hugeIndexKey) || !strings.Contains(err.Error(), "more than") {
		t.Errorf("ReadFile = %v, want an error naming %s as too large", err, hugeIndexKey)
	}
}

// storeOnePack writes one small pack and its index file with a Writer and
// returns the index file's key.
func storeOnePack(t *testing.T, st remote.Store) string {
	t.Helper()
	w, err := NewWriter(t.Context(), st, New(), testConfig(t), WriterOptions{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	d := randBytes(9, 1000)
	if _, err := w.NewPacker().Add(t.Context(), chunk.Sum(d), d); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	var key string
	st.List(t.Context(), "index/", func(i remote.Info) error { key = i.Key; return nil })
	return key
}

func TestLoadRefusesHugeCachedIndexFile(t *testing.T) {
	st, _ := localStore(t)
	key := storeOnePack(t, st)
	cache := t.TempDir()
	plantSparse(t, filepath.Join(cache, filepath.FromSlash(key)), hugeSize)
	idx := New()
	var err error
	n := allocated(func() { _, err = idx.Load(t.Context(), st, cache) })
	checkAlloc(t, "Load with a huge cached file", n)
	if err != nil || idx.Len() != 1 {
		t.Errorf("Load = %v with %d chunks, want the file fetched again from the store (1 chunk)", err, idx.Len())
	}
}

func TestLoadConfigRefusesHuge(t *testing.T) {
	st, dir := localStore(t)
	plantSparse(t, filepath.Join(dir, ConfigKey), hugeSize)
	var err error
	n := allocated(func() { _, err = LoadConfig(t.Context(), st) })
	checkAlloc(t, "LoadConfig", n)
	if err == nil || !strings.Contains(err.Error(), "config") || !strings.Contains(err.Error(), "more than") {
		t.Errorf("LoadConfig = %v, want an error naming the config as too large", err)
	}
}

func TestRecoverSparseJournal(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal-h")
	plantSparse(t, journal, hugeSize)
	var err error
	n := allocated(func() {
		_, err = NewWriter(t.Context(), remotetest.NewMemory(), New(), testConfig(t), WriterOptions{Host: "h", Journal: journal})
	})
	checkAlloc(t, "NewWriter with a huge journal", n)
	if err != nil {
		t.Errorf("NewWriter: %v, want the garbage journal ignored", err)
	}
}

func TestConfigValidateRejects(t *testing.T) {
	with := func(f func(c *Config)) Config {
		c := testConfig(t)
		f(&c)
		return c
	}
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"id climbs out of the cache", with(func(c *Config) { c.ID = strings.Repeat("../", 8) + "escaped1" }), "id"},
		{"id with a slash", with(func(c *Config) { c.ID = "0123456789abcdef/123456789abcdef" }), "id"},
		{"id upper case", with(func(c *Config) { c.ID = "0123456789ABCDEF0123456789ABCDEF" }), "id"},
		{"pack size 1 GiB", with(func(c *Config) { c.PackSize = 1 << 30 }), "pack size"},
		{"pack size above the default", with(func(c *Config) { c.PackSize = DefaultPackSize + 1 }), "pack size"},
		{"chunks of 1 GiB", with(func(c *Config) { c.Chunker.MaxSize = 1 << 30; c.Chunker.Segment = 1 << 30 }), "max_size"},
		{"tiny chunks", with(func(c *Config) { c.Chunker.MinSize = 64; c.Chunker.AvgBits = 10 }), "min_size"},
		{"tiny mean", with(func(c *Config) { c.Chunker.AvgBits = 10 }), "avg_bits"},
		{"tiny segments", with(func(c *Config) {
			c.Chunker.MinSize = 1 << 20
			c.Chunker.MaxSize = 4 << 20
			c.Chunker.AvgBits = 20
			c.Chunker.Segment = 4 << 20
		}), "segment"},
		{"huge segments", with(func(c *Config) { c.Chunker.Segment = 1 << 40 }), "segment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := testConfig(t).Validate(); err != nil {
		t.Errorf("Validate(testConfig) = %v", err)
	}
	fresh, err := NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Validate(); err != nil {
		t.Errorf("Validate(NewConfig()) = %v", err)
	}
}

// forgeIndexFile encodes packs into an index file of host, as an attacker
// would: consistent in itself, with a valid checksum.
func forgeIndexFile(host string, packs []PackRecord) ([]byte, string) {
	b, sum := EncodeFile(packs)
	return b, Key(host, sum)
}

// An index file that claims a pack is larger than it is, to hold a range
// past its end, is damaged, whether it is merged before or after a file
// that gives the true size; the bogus range is never offered.
func TestMergeRejectsRangeBeyondPack(t *testing.T) {
	for _, host := range []string{"a-first", "z-last"} {
		t.Run(host, func(t *testing.T) {
			ctx := t.Context()
			st := remotetest.NewMemory()
			key := storeOnePack(t, st)
			recs, err := ReadFile(ctx, st, key)
			if err != nil {
				t.Fatal(err)
			}
			real := recs[0]
			bogus := chunk.Sum([]byte("bogus"))
			lie := PackRecord{ID: real.ID, Size: 2 * real.Size, Entries: []pack.Entry{{ID: bogus, Off: uint32(real.Size), Len: uint32(real.Size - 1)}}}
			b, evil := forgeIndexFile(host, []PackRecord{lie})
			if err := st.Put(ctx, evil, bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			idx := New()
			ls, err := idx.Load(ctx, st, "")
			if err != nil {
				t.Fatal(err)
			}
			if loc, ok := idx.Lookup(bogus); ok {
				t.Errorf("Lookup(bogus) = %+v in a pack of %d bytes, want not found", loc, idx.PackSize(real.ID))
			}
			if got := idx.PackSize(real.ID); got != real.Size {
				t.Errorf("PackSize = %d, want %d", got, real.Size)
			}
			if ls.Damaged[evil] == nil || ls.Damaged[key] != nil {
				t.Errorf("Damaged = %v, want only %s", ls.Damaged, evil)
			}
			if _, ok := idx.Lookup(real.Entries[0].ID); !ok {
				t.Errorf("the real chunk is no longer found")
			}
		})
	}
}

// TestAddSkipsRangeBeyondPack: records from pack headers and journals pass
// through Add; an entry past the size recorded for its pack is never offered.
func TestAddSkipsRangeBeyondPack(t *testing.T) {
	idx := New()
	p := chunk.Sum([]byte("p"))
	in, out := chunk.Sum([]byte("in")), chunk.Sum([]byte("out"))
	idx.Add(PackRecord{ID: p, Size: 100, Entries: []pack.Entry{{ID: in, Off: 0, Len: 100}}})
	idx.Add(PackRecord{ID: p, Size: 1000, Entries: []pack.Entry{{ID: out, Off: 100, Len: 900}}})
	if _, ok := idx.Lookup(in); !ok {
		t.Errorf("Lookup(in) not found")
	}
	if loc, ok := idx.Lookup(out); ok {
		t.Errorf("Lookup(out) = %+v beyond the pack's 100 bytes, want not found", loc)
	}
}

func TestDecodeFileBounds(t *testing.T) {
	id := chunk.Sum([]byte("p"))
	c := chunk.Sum([]byte("c"))
	tests := []struct {
		name string
		rec  PackRecord
		want string
	}{
		{"pack larger than any pack", PackRecord{ID: id, Size: MaxPackSize + 1, Entries: []pack.Entry{{ID: c, Off: 0, Len: 1}}}, "pack size"},
		{"chunk larger than any chunk", PackRecord{ID: id, Size: MaxPackSize, Entries: []pack.Entry{{ID: c, Off: 0, Len: chunk.StoreMaxMaxSize + 1}}}, "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := EncodeFile([]PackRecord{tt.rec})
			_, err := DecodeFile(b)
			if err == nil || !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeFile = %v, want ErrDamaged containing %q", err, tt.want)
			}
		})
	}
}

// A Writer splits its index files so that none comes near MaxFileSize; a
// pack is never split.
func TestWriteIndexSplits(t *testing.T) {
	st := remotetest.NewMemory()
	w, err := NewWriter(t.Context(), st, New(), testConfig(t), WriterOptions{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	mkpack := func(seed byte, n int) PackRecord {
		p := PackRecord{ID: chunk.Sum([]byte{seed}), Size: int64(n)}
		for i := range n {
			p.Entries = append(p.Entries, pack.Entry{ID: chunk.Sum([]byte{seed, byte(i), byte(i >> 8), byte(i >> 16)}), Off: uint32(i), Len: 1})
		}
		return p
	}
	packs := []PackRecord{mkpack(1, splitEntries/2), mkpack(2, splitEntries/2), mkpack(3, 1), mkpack(4, splitEntries+1), mkpack(5, 1)}
	if _, err := w.writeIndex(t.Context(), packs); err != nil {
		t.Fatal(err)
	}
	var files []int
	st.List(t.Context(), "index/", func(i remote.Info) error {
		recs, err := ReadFile(t.Context(), st, i.Key)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, len(recs))
		return nil
	})
	slices.Sort(files)
	if want := []int{1, 1, 1, 2}; !slices.Equal(files, want) {
		t.Errorf("index files hold %v packs, want %v", files, want)
	}
}

// A FIFO in place of the journal does not block the Writer.
func TestRecoverFIFOJournal(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal-h")
	if err := syscall.Mkfifo(journal, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := NewWriter(t.Context(), remotetest.NewMemory(), New(), testConfig(t), WriterOptions{Host: "h", Journal: journal})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "journal") {
			t.Errorf("NewWriter = %v, want an error naming the journal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("NewWriter blocked on a FIFO journal")
	}
}

// Reading an index file allocates what it decodes to once: each pack's
// entries, then the sorted entries of the index, at their number, not
// array after array as appends grow them (4.1 times the file, entries and
// index in all, and a valid index file of MaxFileSize took validate to 390
// MiB that way; 1.0 times and 268 MiB since, 1.3 times under -race).
func TestLoadLargeIndexFileAllocatesOnce(t *testing.T) {
	const n = 100_000
	p := PackRecord{ID: chunk.Sum([]byte("big")), Size: n}
	for i := range n {
		var id chunk.ID
		binary.BigEndian.PutUint32(id[:], uint32(i))
		p.Entries = append(p.Entries, pack.Entry{ID: id, Off: uint32(i), Len: 1})
	}
	b, sum := EncodeFile([]PackRecord{p})
	st := remotetest.NewMemory()
	if err := st.Put(t.Context(), Key("h", sum), bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	idx := New()
	var err error
	total := allocated(func() { _, err = idx.Load(t.Context(), st, "") })
	if err != nil || idx.Len() != n {
		t.Fatalf("Load = %v with %d chunks, want %d", err, idx.Len(), n)
	}
	// The file, its entries (40 bytes each), the index's (44 bytes each).
	want := uint64(len(b)) + n*40 + n*44
	t.Logf("a %d KiB index file of %d entries: Load allocated %d KiB, %.2f× the file, entries and index", len(b)>>10, n, total>>10, float64(total)/float64(want))
	if total > 2*want {
		t.Errorf("Load allocated %d KiB, want at most %d KiB", total>>10, 2*want>>10)
	}
}
