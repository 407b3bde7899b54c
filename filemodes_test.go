package cassback

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/local"
)

// TestCacheFileModes: after backups, a purge (its spill and mark caches)
// and a reopen, every folder of the cache root is 0700 and every file
// 0600, whatever the umask lets through. A store cache folder and a
// configs/ folder an older version made 0755 are made 0700 on open, with
// one warning each; the cache root itself keeps its mode (it may be
// shared).
func TestCacheFileModes(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 9, TotalBytes: 2 << 20, Snapshots: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	r, err := Open(ctx, st, Options{CacheRoot: cache, Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"}); err != nil {
			t.Fatal(err)
		}
		appendTo(t, data, "a row")
	}
	// A backup's config comes from the configs/ cache of its location.
	r, err = Open(ctx, st, Options{CacheRoot: cache, Location: "local\x00" + dir, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"}); err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	// Memory 1: the purge spills its shards below the cache folder.
	if _, err := r.Purge(ctx, PurgeOptions{Host: "n1", Before: time.Now().Add(time.Hour), Holder: "t", Memory: 1}); err != nil {
		t.Fatal(err)
	}
	walkModes(t, cache)
	if _, err := os.Stat(filepath.Join(cache, "configs")); err != nil {
		t.Errorf("no configs/ cache: %v", err)
	}

	// Folders an older version made 0755: tightened on open, one warning
	// each.
	storeDir := filepath.Join(cache, r.Config.ID)
	for _, d := range []string{cache, storeDir, filepath.Join(cache, "configs")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	if _, err := Open(ctx, st, Options{CacheRoot: cache, Location: "local\x00" + dir, Log: log}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logb.String(), "cache folder was open to other users; made private (0700)"); n != 2 {
		t.Errorf("%d warnings, want 2 (the store's folder and configs/):\n%s", n, logb.String())
	}
	for _, d := range []string{storeDir, filepath.Join(cache, "configs")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v (%v), want 0700", d, fi.Mode().Perm(), err)
		}
	}
	if fi, _ := os.Stat(cache); fi.Mode().Perm() != 0o755 {
		t.Errorf("cache root: mode %v, want its own 0755 kept", fi.Mode().Perm())
	}
	logb.Reset()
	if _, err := Open(ctx, st, Options{CacheRoot: cache, Log: log}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logb.String(), "made private") {
		t.Errorf("warned again on the next open:\n%s", logb.String())
	}
}

// walkModes checks that every folder below root, root included, is 0700
// and every file 0600, and that it holds some of each.
func walkModes(t *testing.T, root string) {
	t.Helper()
	var dirs, files int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.IsDir():
			dirs++
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("folder %s: mode %v, want 0700", rel, fi.Mode().Perm())
			}
		default:
			files++
			if fi.Mode() != 0o600 {
				t.Errorf("file %s: mode %v, want -rw------- (a regular file, 0600)", rel, fi.Mode())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dirs < 3 || files < 3 {
		t.Errorf("%d folders and %d files below %s: not a cache that was used", dirs, files, root)
	}
	t.Logf("%d folders, %d files checked", dirs, files)
}
