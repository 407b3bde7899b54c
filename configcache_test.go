package cassback

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// ccOpen opens the store in dir (a counting local store with conditional
// writes) as a backup does, with the config cache of location.
func ccOpen(t *testing.T, dir, cacheRoot string) (*Repo, *reqCount) {
	t.Helper()
	ls, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := &reqCount{Store: ls, n: map[string]int{}}
	r, err := Open(t.Context(), withCond{Store: st, c: ls}, Options{CacheRoot: cacheRoot, Create: true, Location: "local\x00" + dir, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = writerOpts
	return r, st
}

// A warm backup reads the store's config from its cache once a run has
// read it from the store after its session's listing, until a sweep
// advances the generation; a store created again at the location stops
// one backup with ErrConfigChanged, and the next uses the new config.
func TestBackupConfigFromCache(t *testing.T) {
	dir, cache := t.TempDir(), filepath.Join(t.TempDir(), "cache")
	data := smallNode(t, 41)
	backup := func() (map[string]int, error) {
		t.Helper()
		r, st := ccOpen(t, dir, cache) // a new count: Open's requests too
		_, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h1"})
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.n, err
	}
	// The first creates the store (its reads of the config are not counted).
	for i, want := range []int{-1, 1, 0, 0} {
		n, err := backup()
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		if want >= 0 && n["get config"] != want {
			t.Errorf("backup %d: %d reads of the config (%v), want %d", i, n["get config"], n, want)
		}
	}

	// A copy saying the store has no conditional writes is not taken (a
	// session renewed by plain writes would outlive its revocation).
	files, _ := filepath.Glob(filepath.Join(cache, "configs", "*"))
	if len(files) != 1 {
		t.Fatalf("cached configs: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	os.WriteFile(files[0], bytes.Replace(b, []byte(`"conditional":true`), []byte(`"conditional":false`), 1), 0o644)
	if n, err := backup(); err != nil || n["get config"] != 1 {
		t.Errorf("with a cached config saying no conditional writes: %v, %d reads of the config, want 1", err, n["get config"])
	}

	// A sweep: the next backup reads the config again, the one after not.
	r, _ := ccOpen(t, dir, cache)
	laBackup(t, r, smallNode(t, 42), "h2", nil)
	if res := taPurge(t, r.Store, "h2"); res.GC.Deleted == 0 {
		t.Fatalf("the purge deleted no pack: %+v", res.GC)
	}
	for i, want := range []int{1, 0} {
		if n, err := backup(); err != nil || n["get config"] != want {
			t.Errorf("after a sweep, backup %d: %v, %d reads of the config, want %d", i, err, n["get config"], want)
		}
	}

	// The store created again in the same folder.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o755)
	fresh, err := Open(t.Context(), localStore2(t, dir), Options{Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup(); !errors.Is(err, ErrConfigChanged) {
		t.Fatalf("a backup with the old store's cached config: %v, want ErrConfigChanged", err)
	}
	r, _ = ccOpen(t, dir, cache)
	if r.Config.ID != fresh.Config.ID {
		t.Fatalf("after ErrConfigChanged the cache still holds store %s, want %s", r.Config.ID, fresh.Config.ID)
	}
	if _, err := backup(); err != nil {
		t.Fatalf("the backup after ErrConfigChanged: %v", err)
	}

	// The store removed: one backup stops, the next creates a store.
	os.RemoveAll(dir)
	os.Mkdir(dir, 0o755)
	if _, err := backup(); !errors.Is(err, ErrConfigChanged) {
		t.Fatalf("a backup into an emptied folder with a cached config: %v, want ErrConfigChanged", err)
	}
	if _, err := backup(); err != nil {
		t.Fatalf("the backup after ErrConfigChanged: %v", err)
	}
}

func localStore2(t *testing.T, dir string) remote.Store {
	t.Helper()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
