package cassback

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
)

// bigManifest returns m with manifest.MaxDecodedMemory and a sixth more
// of files added to its first table: n files of 3,000 references each to
// chunk ref, beside the real ones. A reader that held all of it would
// refuse it.
func bigManifest(t *testing.T, m *manifest.Manifest, at time.Time, ref chunk.Ref) *manifest.Manifest {
	t.Helper()
	big := *m
	big.Time = at.UTC().Truncate(time.Microsecond)
	big.Name = manifest.BackupName(big.Time, m.Keyspace, m.Host)
	big.Tables = slices.Clone(m.Tables)
	tb := &big.Tables[0]
	tb.Files = slices.Clone(tb.Files)
	dir := path.Dir(tb.Files[0].Path)
	refs := slices.Repeat([]chunk.Ref{ref}, 3000)
	for i := 0; big.MemCost() <= manifest.MaxDecodedMemory*7/6; i++ {
		p := fmt.Sprintf("%s/nb-%d-big-Data.db", dir, 100000+i)
		tb.Files = append(tb.Files, manifest.File{Path: p, Size: int64(len(refs)) * int64(ref.Len), Mode: 0o644,
			MTime: big.Time, Sum: chunk.Sum([]byte(p)), Chunks: refs})
	}
	big.Sort()
	return &big
}

// TestPreviousValidateAndPurgeReadManifestPastMaxDecodedMemory stores a
// manifest of a keyspace whose files take more memory than
// manifest.MaxDecodedMemory, which manifest.Get refuses, and checks that
// validate reads it whole and finds it sound, that purge counts it as the
// keyspace's newest backup, and that a backup takes it as the previous
// one: every file reused, nothing read. (cassback show is tested on such a
// manifest in cmd/cassback.)
func TestPreviousValidateAndPurgeReadManifestPastMaxDecodedMemory(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 7, TotalBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(t.TempDir(), "store")
	r := openLocal(t, storeDir, true)
	t1 := time.Now().Add(-time.Hour).UTC()
	s1, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n", Now: func() time.Time { return t1 }})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(s1.Manifests, func(n string) bool { return strings.Contains(n, "-ks_app-") })
	if i < 0 {
		t.Fatalf("no ks_app backup among %v", s1.Manifests)
	}
	m, err := manifest.Get(ctx, r.Store, s1.Manifests[i], ChunksOf(r.Store))
	if err != nil {
		t.Fatal(err)
	}
	// The references: to the shortest chunk of the keyspace's files.
	var ref chunk.Ref
	for _, tb := range m.Tables {
		for _, f := range tb.Files {
			for _, c := range f.Chunks {
				if ref.Len == 0 || c.Len < ref.Len {
					ref = c
				}
			}
		}
	}
	big := bigManifest(t, m, t1.Add(30*time.Minute), ref)
	if err := CommitManifest(ctx, r.Store, big, ""); err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, tb := range big.Tables {
		files += len(tb.Files)
	}
	if _, err := manifest.Get(ctx, r.Store, big.Name, ChunksOf(r.Store)); !errors.Is(err, manifest.ErrTooLarge) {
		t.Fatalf("manifest.Get of %d files costing %d MiB: %v, want %v", files, big.MemCost()>>20, err, manifest.ErrTooLarge)
	}

	rep, err := r.Validate(ctx, ValidateOptions{Host: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !slices.Contains(rep.Backups, big.Name) || rep.Files < files {
		t.Errorf("validate: ok %v, problems %v, backups %v, %d files; want ok, %s among them, at least %d files",
			rep.OK(), rep.Problems[:min(3, len(rep.Problems))], rep.Backups, rep.Files, big.Name, files)
	}

	res, err := r.Purge(ctx, PurgeOptions{Host: "n", Keyspaces: []string{"ks_app"}, Before: time.Now().Add(time.Hour), DryRun: true, Holder: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Kept, []string{big.Name}) || len(res.Skipped) != 0 || !slices.Equal(res.Manifests, []string{m.Name}) {
		t.Errorf("purge dry run: kept %v, skipped %v, would remove %v; want %s kept, nothing skipped, %s removed", res.Kept, res.Skipped, res.Manifests, big.Name, m.Name)
	}

	// A new process (an empty cache: the previous backup found by listing
	// the store) reuses the big manifest's records of the real files.
	r2 := openLocal(t, storeDir, false)
	s2, err := r2.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if s2.BytesRead != 0 || s2.FilesReused != s2.Files || s2.Files != s1.Files {
		t.Errorf("backup after the big manifest: %d of %d files reused, %d bytes read; want all %d, 0", s2.FilesReused, s2.Files, s2.BytesRead, s1.Files)
	}
}
