package cassback

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openLocal(t *testing.T, dir string, create bool) *Repo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.Context(), st, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: create, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// storeBytes is the total size of every object in the store.
func storeBytes(t *testing.T, st remote.Store) int64 {
	t.Helper()
	var n int64
	if err := st.List(t.Context(), "", func(i remote.Info) error { n += i.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// manifestPaths returns every file path in the given backups.
func manifestPaths(t *testing.T, st remote.Store, names []string) []string {
	t.Helper()
	return manifestPathsFrom(t, st, ChunksOf(st), names)
}

// manifestPathsFrom is manifestPaths reading the trees from src (a Repo's
// Chunks, which checks an encrypted store's keyed IDs).
func manifestPathsFrom(t *testing.T, st remote.Store, src manifest.Chunks, names []string) []string {
	t.Helper()
	var paths []string
	for _, n := range names {
		m, err := manifest.Get(t.Context(), st, n, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range m.Tables {
			for _, f := range tb.Files {
				paths = append(paths, f.Path)
			}
		}
	}
	slices.Sort(paths)
	return paths
}

// sameFiles checks that dst holds exactly want (relative paths), each
// byte-identical to the same path below src.
func sameFiles(t *testing.T, src, dst string, want []string) {
	t.Helper()
	var got []string
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		got = append(got, filepath.ToSlash(rel))
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			t.Errorf("restored %s differs from the source", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("restored files:\n got %d %v\nwant %d %v", len(got), head(got), len(want), head(want))
	}
}

// readWhole reads in full the manifests Select returned as headers, for tests
// that look at their files.
func readWhole(t testing.TB, st remote.Store, ms []*manifest.Manifest) []*manifest.Manifest {
	t.Helper()
	out := make([]*manifest.Manifest, len(ms))
	for i, m := range ms {
		var err error
		if out[i], err = manifest.Get(t.Context(), st, m.Name, ChunksOf(st)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func head(s []string) []string { return s[:min(len(s), 5)] }

func notSystem(files []string) []string {
	var out []string
	for _, f := range files {
		if !strings.HasPrefix(f, "system/") {
			out = append(out, f)
		}
	}
	return out
}

// TestGeneratedNodeRoundTrip is the foundation's main acceptance test: a
// generated node (200 MB; 24 MB with -short) with snapshots, incremental
// backups and in-flight flushes backs up and restores byte-identical.
func TestGeneratedNodeRoundTrip(t *testing.T) {
	size := int64(200 << 20)
	switch {
	case testing.Short():
		size = 24 << 20
	case raceOn:
		size = 64 << 20 // CI, under -race: the same checks in a third of the time
	}
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 7, TotalBytes: size, Snapshots: true, Backups: true, InFlight: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(node.InFlight) == 0 || len(node.Snapshots) == 0 || len(node.BackupFiles) == 0 {
		t.Fatalf("generated node lacks in-flight (%d), snapshot (%d) or backups/ (%d) files", len(node.InFlight), len(node.Snapshots), len(node.BackupFiles))
	}
	storeDir := filepath.Join(t.TempDir(), "store")
	r := openLocal(t, storeDir, true)

	t0 := time.Now()
	s1, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	d1 := time.Since(t0)
	want := notSystem(node.LiveFiles)
	if got := manifestPaths(t, r.Store, s1.Manifests); !slices.Equal(got, want) {
		t.Fatalf("manifests list %d files, want the %d live files outside system: got %v… want %v…", len(got), len(want), head(got), head(want))
	}
	for _, n := range s1.Manifests {
		if strings.Contains(n, "-system-") {
			t.Errorf("manifest %s: system is backed up without --include-system-keyspace", n)
		}
	}
	size1 := storeBytes(t, r.Store)
	t.Logf("first backup: %d files, %d bytes read, %d new, %d packs, store %d bytes, %v", s1.Files, s1.BytesRead, s1.BytesNew, s1.Packs, size1, d1)

	// A second backup of unchanged data reads and uploads nothing.
	t0 = time.Now()
	s2, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	d2 := time.Since(t0)
	t.Logf("second backup: %d bytes read, %d new chunks, %v (%.1f%% of the first)", s2.BytesRead, s2.ChunksNew, d2, 100*d2.Seconds()/d1.Seconds())
	if s2.BytesNew != 0 || s2.ChunksNew != 0 || s2.BytesRead != 0 {
		t.Errorf("second backup: read %d bytes, uploaded %d bytes in %d chunks; want 0, 0, 0", s2.BytesRead, s2.BytesNew, s2.ChunksNew)
	}

	// A second host with identical files adds under 1% to the store.
	r2 := openLocal(t, storeDir, false)
	s3, err := r2.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "node2"})
	if err != nil {
		t.Fatal(err)
	}
	// Growth since the first backup, which includes the manifests of
	// node1's second backup too.
	grow := storeBytes(t, r.Store) - size1
	t.Logf("second host: %d new chunk bytes, store grew %d bytes (%.3f%%)", s3.BytesNew, grow, 100*float64(grow)/float64(size1))
	if s3.BytesNew != 0 || float64(grow) >= 0.01*float64(size1) {
		t.Errorf("second host uploaded %d chunk bytes and grew the store by %d of %d bytes; want 0 and under 1%%", s3.BytesNew, grow, size1)
	}

	// Restore everything of node1 into an empty folder.
	dst := filepath.Join(t.TempDir(), "restored")
	ms, err := Select(ctx, r.Store, "node1", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, data, dst, want)
	if len(res.Restored) != len(want) {
		t.Errorf("restored %d files, want %d", len(res.Restored), len(want))
	}

	// Restoring again skips every file; a changed file is moved aside and restored.
	victim := filepath.Join(dst, filepath.FromSlash(want[0]))
	if err := os.WriteFile(victim, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Restored) != 1 || len(res.Moved) != 1 || len(res.Skipped) != len(want)-1 {
		t.Errorf("re-restore: restored %d, moved %d, skipped %d; want 1, 1, %d", len(res.Restored), len(res.Moved), len(res.Skipped), len(want)-1)
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(dst), "cassback-corrupt", filepath.FromSlash(want[0]))); err != nil || string(b) != "damaged" {
		t.Errorf("damaged file not moved aside to cassback-corrupt: %v", err)
	}
	sameFiles(t, data, dst, want)
}

func TestIncludeSystemAndExclude(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 3, TotalBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r := openLocal(t, filepath.Join(t.TempDir(), "store"), true)
	s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n", IncludeSystem: true, ExcludeKeyspaces: []string{"metrics", "inventory"}})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range node.LiveFiles {
		if !strings.HasPrefix(f, "metrics/") && !strings.HasPrefix(f, "inventory/") {
			want = append(want, f)
		}
	}
	if got := manifestPaths(t, r.Store, s.Manifests); !slices.Equal(got, want) {
		t.Errorf("with system included and two keyspaces excluded: got %d files, want %d", len(got), len(want))
	}
	if !slices.ContainsFunc(s.Manifests, func(n string) bool { return strings.Contains(n, "-system-n") }) {
		t.Errorf("no system manifest with IncludeSystem: %v", s.Manifests)
	}
}

func TestRestoreTableAndTime(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 5, TotalBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	r := openLocal(t, filepath.Join(t.TempDir(), "store"), true)
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n", Now: func() time.Time { return t1 }}); err != nil {
		t.Fatal(err)
	}
	if _, err := Select(ctx, r.Store, "n", "", []string{"ks_app"}, t1.Add(-time.Second)); err == nil {
		t.Errorf("Select before the first backup succeeded, want an error")
	}
	ms, err := Select(ctx, r.Store, "n", "", []string{"ks_app"}, t1.Add(24*time.Hour*40))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || !ms[0].Time.Equal(t1) {
		t.Fatalf("Select = %d manifests, want the one at %v", len(ms), t1)
	}
	table := ms[0].Tables[0].Name
	dst := filepath.Join(t.TempDir(), "r")
	res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true, Tables: []string{table}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Restored {
		p, err := sstable.ParsePath(f.Path)
		if err != nil || p.Table != table {
			t.Errorf("restored %s, not of table %s", f.Path, table)
		}
	}
	if len(res.Restored) != ms[0].Tables[0].Count || ms[0].Tables[0].Count == 0 {
		t.Errorf("restored %d files of table %s, want %d", len(res.Restored), table, ms[0].Tables[0].Count)
	}
}

func TestRestoreRefusesEscapes(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 9, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	r := openLocal(t, filepath.Join(t.TempDir(), "store"), true)
	s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Get(ctx, r.Store, s.Manifests[0], ChunksOf(r.Store))
	if err != nil {
		t.Fatal(err)
	}
	// A forged manifest entry (Decode would refuse it) is refused before
	// anything is written.
	forged := *m
	forged.Tables = append([]manifest.Table(nil), m.Tables...)
	evil := m.Tables[0].Files[0]
	evil.Path = "../escaped"
	forged.Tables[0].Files = append(append([]manifest.File(nil), m.Tables[0].Files...), evil)
	dst := filepath.Join(t.TempDir(), "r")
	if _, err := r.Restore(ctx, []*manifest.Manifest{&forged}, RestoreOptions{DataDir: dst, NoChown: true}); err == nil {
		t.Fatal("restore of a manifest with an escaping path succeeded")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "escaped")); err == nil {
		t.Error("a file was written outside the data directory")
	}
	// A symlink planted in the target must not be followed out of it.
	outside := t.TempDir()
	os.MkdirAll(dst, 0o755)
	if err := os.Symlink(outside, filepath.Join(dst, m.Keyspace)); err != nil {
		t.Fatal(err)
	}
	res, err := r.Restore(ctx, []*manifest.Manifest{m}, RestoreOptions{DataDir: dst, NoChown: true})
	if err == nil {
		t.Fatal("restore through a planted symlink succeeded")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("restore followed a symlink out of the data directory: %d entries written", len(ents))
	}
	if len(res.Failed) == 0 {
		t.Error("no failed files reported")
	}
}
