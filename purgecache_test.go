package cassback

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// A purge run again on the same machine reads from the store only the
// index files and tree nodes written since the last one (issue 12: purge
// requests proportional to what changed): they are kept in the store's
// cache folder (manifest objects too: TestPurgeReadsNewManifestsOnly).
// The trees of the newest backups of the purged host are read each time
// (retention keeps only one that reads from the store). Its plan is the
// plan a purge with an empty cache makes.
func TestPurgeReadsWhatChanged(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	data, other := filepath.Join(root, "data"), filepath.Join(root, "other")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 5, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodegen.Generate(other, nodegen.Config{Seed: 6, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	ls, err := local.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	rc := &reqCount{Store: ls, n: map[string]int{}}
	st := withCond{rc, ls}
	nodeRepo, err := Open(ctx, ls, Options{CacheRoot: filepath.Join(root, "node-cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	backup := func(dir, host string) {
		t.Helper()
		if _, err := nodeRepo.Backup(ctx, BackupOptions{DataDirs: []string{dir}, Host: host}); err != nil {
			t.Fatal(err)
		}
	}
	backup(other, "n2")
	backup(data, "n1")
	appendTo(t, data, "a row")
	backup(data, "n1")

	admin, err := Open(ctx, st, Options{CacheRoot: filepath.Join(root, "admin-cache"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	admin.GC = noWait
	purge := func(r *Repo, dry bool) (map[string]int, PurgeResult) {
		t.Helper()
		rc.mu.Lock()
		rc.n = map[string]int{}
		rc.mu.Unlock()
		// n1's first backup is older than the cut-off: its packs of the
		// old file are what the plan condemns.
		res, err := r.Purge(ctx, PurgeOptions{Host: "n1", Before: time.Now().Add(time.Hour), DryRun: dry, Holder: "t"})
		if err != nil {
			t.Fatal(err)
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return maps.Clone(rc.n), res
	}
	reads := func(n map[string]int) int { return n["get index"] + n["get packs"] }

	cold, coldRes := purge(admin, true)
	if cold["get index"] == 0 || cold["get manifests"] == 0 || cold["get packs"] == 0 {
		t.Fatalf("a purge with an empty cache read %v: want index files, manifests and packs (tree nodes) read", cold)
	}
	warm, warmRes := purge(admin, true)
	if warmRes.CacheMisses != 0 || warmRes.CacheHits == 0 || warm["get index"] != 0 || warm["get packs"] >= cold["get packs"] || warm["get manifests"] > cold["get manifests"] {
		t.Errorf("the same purge again: cache hits %d, misses %d; read %v; want no miss, no index file read, fewer packs and at most the manifests of %v: nothing changed",
			warmRes.CacheHits, warmRes.CacheMisses, warm, cold)
	}
	if !samePlan(coldRes, warmRes) {
		t.Errorf("plans differ: cold %+v, warm %+v", coldRes.Plan, warmRes.Plan)
	}

	// A new backup of n1: the next purge reads its manifests and new
	// nodes and index file, not the others.
	appendTo(t, data, "another row")
	backup(data, "n1")
	changed, changedRes := purge(admin, true)
	if changed["get index"] == 0 || changedRes.CacheMisses == 0 || reads(changed) >= reads(cold) {
		t.Errorf("after one backup a purge read %v (cache misses %d); want its index file and nodes, fewer reads than %v", changed, changedRes.CacheMisses, cold)
	}
	fresh, err := Open(ctx, st, Options{CacheRoot: filepath.Join(root, "fresh-cache"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	fresh.GC = noWait
	_, freshRes := purge(fresh, true)
	if !samePlan(changedRes, freshRes) {
		t.Errorf("plans differ: warm cache %+v, empty cache %+v", changedRes.Plan, freshRes.Plan)
	}
	if len(freshRes.Plan.Condemn) == 0 {
		t.Fatalf("the plan condemns nothing: the test proves nothing")
	}

	// Every cached node and index file damaged: each is read from the
	// store again, and the plan is the same.
	damaged := 0
	filepath.WalkDir(admin.CacheDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !(strings.Contains(p, "/gc/nodes/") || strings.Contains(p, "/index/")) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			return nil
		}
		b[len(b)/2] ^= 0x40
		damaged++
		return os.WriteFile(p, b, 0o644)
	})
	reread, rereadRes := purge(admin, true)
	if damaged == 0 || reads(reread) < damaged/2 {
		t.Errorf("%d cached files damaged; the purge read %v", damaged, reread)
	}
	if !samePlan(rereadRes, freshRes) {
		t.Errorf("plans differ: damaged cache %+v, empty cache %+v", rereadRes.Plan, freshRes.Plan)
	}

	// A real purge, then one more: nothing read again, and the cache
	// keeps no node the later purge did not use.
	purge(admin, false)
	ageFiles(t, filepath.Join(admin.CacheDir, "gc"), time.Hour) // a later purge
	again, againRes := purge(admin, true)
	// At most the index file the purge wrote (its listing stamp is known
	// once listed) is read again.
	if againRes.CacheMisses > 1 || again["get index"] > 1 {
		t.Errorf("a purge after a purge: cache misses %d, read %v; want at most the index file the purge wrote", againRes.CacheMisses, again)
	}
	nodes := filepath.Join(admin.CacheDir, "gc", "nodes")
	if n := countFiles(t, nodes, time.Now().Add(-time.Minute)); n != 0 {
		t.Errorf("%d cached nodes no purge used since are kept", n)
	}
	if n := countFiles(t, nodes, time.Now().Add(time.Minute)); n == 0 {
		t.Errorf("no node cached")
	}
}

// withCond is a recording store (its List, Get... record) that keeps the
// conditional writes of the store below it.
type withCond struct {
	remote.Store
	c remote.Conditional
}

func (w withCond) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	return w.c.PutIf(ctx, key, data, ifMatch)
}

// samePlan reports whether two dry runs plan the same removals and
// collection.
func samePlan(a, b PurgeResult) bool {
	return slices.Equal(a.Manifests, b.Manifests) && slices.Equal(a.Plan.Condemn, b.Plan.Condemn) &&
		a.Plan.CondemnBytes == b.Plan.CondemnBytes && len(a.Plan.Repack) == len(b.Plan.Repack) &&
		slices.Equal(a.Plan.Blocked, b.Plan.Blocked)
}

// appendTo appends a row to the first Data.db file below dir.
func appendTo(t *testing.T, dir, row string) {
	t.Helper()
	var changed string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && changed == "" && strings.HasSuffix(p, "-Data.db") {
			changed = p
		}
		return err
	})
	f, err := os.OpenFile(changed, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(row); err != nil {
		t.Fatal(err)
	}
}

// ageFiles sets the times of the files below dir back by d.
func ageFiles(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				os.Chtimes(p, fi.ModTime().Add(-d), fi.ModTime().Add(-d))
			}
		}
		return nil
	})
}

// countFiles counts the regular files below dir last written before t.
func countFiles(t *testing.T, dir string, before time.Time) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.ModTime().Before(before) {
				n++
			}
		}
		return nil
	})
	return n
}
