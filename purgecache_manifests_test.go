package cassback

import (
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// pmcGets is a store that records the keys of the manifest objects read
// from it (GET manifests/…), and counts every other GET and LIST by the
// first segment of its key, as reqCount does.
type pmcGets struct {
	remote.Store
	mu        sync.Mutex
	manifests map[string]int
	n         map[string]int
}

func (s *pmcGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.mu.Lock()
	if strings.HasPrefix(key, "manifests/") {
		s.manifests[key]++
	}
	s.n["get "+strings.SplitN(key, "/", 2)[0]]++
	s.mu.Unlock()
	return s.Store.Get(ctx, key, off, n)
}

func (s *pmcGets) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	s.mu.Lock()
	s.n["list "+strings.SplitN(prefix, "/", 2)[0]]++
	s.mu.Unlock()
	return s.Store.List(ctx, prefix, fn)
}

// reset forgets what was counted, and returns it.
func (s *pmcGets) reset() (manifests, n map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	manifests, n = s.manifests, s.n
	s.manifests, s.n = map[string]int{}, map[string]int{}
	return manifests, n
}

// pmcKeys returns the manifest keys of backup names.
func pmcKeys(t *testing.T, names []string) []string {
	t.Helper()
	var keys []string
	for _, n := range names {
		k, err := manifest.Key(n)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// A purge run again with the same cache folder reads no committed
// manifest object from the store whose copy it cached, checked against the
// hash its commit marker names: the mark reads from the store only the
// manifests written since, and those no marker names. (The retention step
// still reads the purged host's newest manifests from the store: purging
// a host with no backup leaves the mark's reads alone to count.) Its plan
// is the plan of a purge with an empty cache.
func TestPurgeReadsNewManifestsOnly(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	data, other := filepath.Join(root, "data"), filepath.Join(root, "other")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 7, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodegen.Generate(other, nodegen.Config{Seed: 8, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	ls, err := local.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &pmcGets{Store: ls}
	rec.reset()
	st := withCond{rec, ls}
	writer := laRepo(t, ls, filepath.Join(root, "node-cache"), writerOpts)
	var all []string
	backup := func(dir, host string) []string {
		t.Helper()
		s := laBackup(t, writer, dir, host, nil)
		all = append(all, s.Manifests...)
		return s.Manifests
	}
	backup(other, "n2")
	backup(data, "n1")
	laMutate(t, data, 0x5a) // the first backup's Index.db chunks: what the purge of n1 sweeps
	backup(data, "n1")

	admin := laRepo(t, st, filepath.Join(root, "admin-cache"), noWait)
	purge := func(r *Repo, host string, dry bool) (map[string]int, PurgeResult) {
		t.Helper()
		rec.reset()
		res, err := r.Purge(ctx, PurgeOptions{Host: host, Before: time.Now().Add(time.Hour), DryRun: dry, Holder: "t"})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := rec.reset()
		return got, res
	}
	sum := func(m map[string]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}

	cold, coldRes := purge(admin, "n9", true)
	if want := pmcKeys(t, all); !slices.Equal(slices.Sorted(maps.Keys(cold)), want) {
		t.Fatalf("a purge with an empty cache read manifests %v; want every one, %v", cold, want)
	}
	warm, warmRes := purge(admin, "n9", true)
	t.Logf("manifest GETs: empty cache %d, warm cache %d (of %d manifests)", sum(cold), sum(warm), len(all))
	if len(warm) != 0 {
		t.Errorf("the same purge again read manifests %v: want none, nothing changed", warm)
	}
	if !samePlan(coldRes, warmRes) {
		t.Errorf("plans differ: cold %+v, warm %+v", coldRes.Plan, warmRes.Plan)
	}

	// A new backup: the next purge reads its manifests, once each, and no
	// other.
	appendTo(t, other, "another row")
	added := backup(other, "n2")
	changed, changedRes := purge(admin, "n9", true)
	t.Logf("manifest GETs after a backup of %d keyspaces: %d", len(added), sum(changed))
	if want := pmcKeys(t, added); !slices.Equal(slices.Sorted(maps.Keys(changed)), want) || sum(changed) != len(want) {
		t.Errorf("after one backup a purge read manifests %v; want its own, once each: %v", changed, want)
	}
	fresh := laRepo(t, st, filepath.Join(root, "fresh-cache"), noWait)
	_, freshRes := purge(fresh, "n9", true)
	if !samePlan(changedRes, freshRes) {
		t.Errorf("plans differ: warm cache %+v, empty cache %+v", changedRes.Plan, freshRes.Plan)
	}

	// Purging n1 reads its newest backups' manifests from the store in
	// the retention step, once each, and nothing more.
	n1, n1Res := purge(admin, "n1", true)
	if len(n1Res.Manifests) == 0 || len(n1Res.Kept) == 0 {
		t.Fatalf("a purge of n1 removes %v and keeps %v: the test proves nothing", n1Res.Manifests, n1Res.Kept)
	}
	if want := pmcKeys(t, n1Res.Kept); !slices.Equal(slices.Sorted(maps.Keys(n1)), want) || sum(n1) != len(want) {
		t.Errorf("a purge of n1 read manifests %v; want only the newest it keeps, once each: %v", n1, want)
	}
	// A real purge, its sweep's fresh mark included, then another: each
	// mark reads nothing but the retention's manifests, and the cache
	// keeps no manifest the store no longer lists.
	if _, res := purge(admin, "n1", false); res.GC.Deleted == 0 {
		t.Errorf("the real purge swept no pack (%+v): its fresh mark went untested", res.GC)
	}
	again, _ := purge(admin, "n9", true)
	if len(again) != 0 {
		t.Errorf("a purge after a purge read manifests %v: want none", again)
	}
	cached := 0
	filepath.WalkDir(filepath.Join(admin.CacheDir, "gc", "manifests"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		cached++
		for _, n := range n1Res.Manifests {
			if d.Name() == n {
				t.Errorf("the cache keeps removed backup %s", n)
			}
		}
		return nil
	})
	if want := len(all) - len(n1Res.Manifests); cached != want {
		t.Errorf("%d manifests cached; want the %d stored", cached, want)
	}
}
