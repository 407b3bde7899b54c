package cassback

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// packReads counts the reads of packs of a store.
type packReads struct {
	remote.Store
	n atomic.Int64
}

func (p *packReads) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, "packs/") {
		p.n.Add(1)
	}
	return p.Store.Get(ctx, key, off, n)
}

// An unchanged backup with a warm cache reads its previous manifests'
// trees from the node cache: no pack is read. Without the cache's nodes
// (deleted or damaged) they are read from the store again, and cached.
func TestUnchangedBackupReadsNoNode(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 3, TotalBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	ls, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &packReads{Store: ls}
	cache := filepath.Join(t.TempDir(), "cache")
	r, err := Open(ctx, st, Options{CacheRoot: cache, Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	backup := func() int64 {
		t.Helper()
		st.n.Store(0)
		s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		if s.BytesRead != 0 {
			t.Fatalf("an unchanged backup read %d bytes of files", s.BytesRead)
		}
		return st.n.Load()
	}
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"}); err != nil {
		t.Fatal(err)
	}
	if n := backup(); n != 0 {
		t.Errorf("an unchanged backup with a warm cache read packs %d times, want none", n)
	}
	nodes := filepath.Join(r.CacheDir, "nodes", "n1")
	cached, err := os.ReadDir(nodes)
	if err != nil || len(cached) == 0 {
		t.Fatalf("node cache %s: %d files, %v", nodes, len(cached), err)
	}
	// Damaged nodes are read again; so are deleted ones.
	for i, e := range cached {
		p := filepath.Join(nodes, e.Name())
		if i%2 == 0 {
			os.WriteFile(p, []byte("damaged"), 0o644)
		} else {
			os.Remove(p)
		}
	}
	if n := backup(); n == 0 {
		t.Error("with the node cache damaged and emptied, no pack was read: the nodes came from elsewhere")
	}
	if n := backup(); n != 0 {
		t.Errorf("the cache was not refilled: %d pack reads", n)
	}
	// The cache holds the latest trees only: a backup's nodes replace
	// the previous ones, not pile up.
	after, _ := os.ReadDir(nodes)
	if len(after) != len(cached) {
		t.Errorf("node cache holds %d files after three more backups, %d after the second", len(after), len(cached))
	}
}

// putCount counts the writes of a store by the first segment of the key.
type putCount struct {
	remote.Store
	mu   sync.Mutex
	puts map[string]int
}

func (p *putCount) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p.mu.Lock()
	p.puts[strings.SplitN(key, "/", 2)[0]]++
	p.mu.Unlock()
	return p.Store.Put(ctx, key, r, size)
}

// A backup's commit writes one index file, naming the packs of its files'
// chunks and of its manifests' trees (two before).
func TestCommitWritesOneIndexFile(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 5, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	ls, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &putCount{Store: ls, puts: map[string]int{}}
	r, err := Open(ctx, st, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	st.puts = map[string]int{}
	s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if st.puts["index"] != 1 || st.puts["packs"] < 2 {
		t.Errorf("a backup of %d keyspaces wrote %d index files and %d packs; want one index file for its packs of data and of trees", len(s.Manifests), st.puts["index"], st.puts["packs"])
	}
	t.Logf("writes by prefix: %v", st.puts)
}

// reqCount counts a store's reads and listings by the first segment of
// the key or prefix.
type reqCount struct {
	remote.Store
	mu sync.Mutex
	n  map[string]int
}

func (c *reqCount) note(op, key string) {
	c.mu.Lock()
	c.n[op+" "+strings.SplitN(key, "/", 2)[0]]++
	c.mu.Unlock()
}

func (c *reqCount) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.note("get", key)
	return c.Store.Get(ctx, key, off, n)
}

func (c *reqCount) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	c.note("list", prefix)
	return c.Store.List(ctx, prefix, fn)
}

// A warm backup knows its previous manifests' names from the cache: it
// lists no commit markers, reads each of them once and no index file it
// wrote itself. The store here has no conditional writes, so there is no
// sweep generation to rely on and the manifests are read from the store
// (only a manifest still there says the collector keeps its chunks;
// generation_test.go has the store with them). A damaged or foreign cached
// name is passed over for the store's listing.
func TestUnchangedBackupReadsNoManifest(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 4, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	ls, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &reqCount{Store: ls, n: map[string]int{}}
	r, err := Open(ctx, st, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	backup := func() (map[string]int, BackupSummary) {
		t.Helper()
		st.mu.Lock()
		st.n = map[string]int{}
		st.mu.Unlock()
		s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		return st.n, s
	}
	backup()
	all, _ := filepath.Glob(filepath.Join(r.CacheDir, "nodes", "n1", "latest.*"))
	var latest []string // of keyspaces with a backup (the others' files are empty)
	for _, p := range all {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			latest = append(latest, p)
		}
	}
	k := len(latest)
	n, s := backup()
	if n["list commits"] != 0 || n["get manifests"] != k || n["get index"] != 0 || s.BytesRead != 0 {
		t.Errorf("a warm unchanged backup: %v, %d bytes of files read; want no listing of commits, %d reads of manifests, none of index files, no file read", n, s.BytesRead, k)
	}
	// Damaged, and of another keyspace: both passed over, files not read again.
	if len(latest) < 3 {
		t.Fatalf("cached latest manifests: %v", latest)
	}
	os.WriteFile(latest[0], []byte("damaged"), 0o644)
	// The name of another keyspace's backup.
	other, _ := os.ReadFile(latest[2])
	os.WriteFile(latest[1], other, 0o644)
	n, s = backup()
	if n["list commits"] != 2 || n["get manifests"] != k || s.BytesRead != 0 {
		t.Errorf("with two cached manifests bad: %v, %d bytes of files read; want those two keyspaces listed and read from the store, no file read", n, s.BytesRead)
	}
	if n, _ = backup(); n["list commits"] != 0 || n["get manifests"] != k {
		t.Errorf("the cache was not mended: %v", n)
	}
}

// requestLog records the Stats and Lists of a store.
type requestLog struct {
	remote.Store
	mu    sync.Mutex
	stats []string
	lists []string
}

func (r *requestLog) Stat(ctx context.Context, key string) (remote.Info, error) {
	r.mu.Lock()
	r.stats = append(r.stats, key)
	r.mu.Unlock()
	return r.Store.Stat(ctx, key)
}

func (r *requestLog) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	r.mu.Lock()
	r.lists = append(r.lists, prefix)
	r.mu.Unlock()
	return r.Store.List(ctx, prefix, fn)
}

func (r *requestLog) take() (stats, lists []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stats, lists, r.stats, r.lists = r.stats, r.lists, nil, nil
	return stats, lists
}

// An unchanged one-shot backup of a warm node costs what changed, not
// what the store holds: it lists no other host's index files (they are
// listed when a lookup first misses the host's own, and its previous
// manifests' chunks, some stored by the other host, are relied on unless
// the index refutes them), and checks no pack of file chunks. A changed
// file brings the listing back: its new chunks are looked up across
// hosts.
func TestUnchangedBackupListsNoOtherHost(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	data, other := filepath.Join(root, "data"), filepath.Join(root, "other")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 3, TotalBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodegen.Generate(other, nodegen.Config{Seed: 4, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	ls, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &requestLog{Store: ls}
	r, err := Open(ctx, st, Options{CacheRoot: filepath.Join(root, "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []BackupOptions{{DataDirs: []string{other}, Host: "n2"}, {DataDirs: []string{data}, Host: "n1"}} {
		if _, err := r.Backup(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	st.take()
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"}); err != nil {
		t.Fatal(err)
	}
	stats, lists := st.take()
	for _, k := range stats {
		if !strings.HasPrefix(k, "packs/") {
			continue
		}
		info, err := ls.Stat(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := ls.Get(ctx, k, info.Size-pack.TrailerSize, -1)
		if err != nil {
			t.Fatal(err)
		}
		tail, _ := io.ReadAll(rc)
		rc.Close()
		if !pack.IsTreePack(tail) {
			t.Errorf("an unchanged backup checked pack %s of file chunks", k)
		}
	}
	for _, p := range lists {
		if p == "index/" || strings.HasPrefix(p, "index/n2") {
			t.Errorf("an unchanged backup listed %q: other hosts' index files", p)
		}
	}

	// A changed file: its chunks are looked up in every host's files.
	appendTo(t, data, "a new row")
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, lists = st.take(); !slices.Contains(lists, "index/") {
		t.Errorf("a backup with a changed file listed %q, not every host's index files", lists)
	}
}
