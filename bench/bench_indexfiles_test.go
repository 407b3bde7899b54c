package bench

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/watch"
)

// BenchmarkContinuousIndexFiles runs a continuous backup beside 200
// flushes of 16 KiB, each given time to commit alone, and reports the
// host's index files left at the end and the store requests a commit made
// (index compaction included), by kind: with the local store (calls of
// remote.Store) and with S3 (versitygw on loopback; HTTP requests by S3
// operation, DeleteObjects included).
func BenchmarkContinuousIndexFiles(b *testing.B) {
	b.Run("store=local", func(b *testing.B) {
		for b.Loop() {
			dir := filepath.Join(tmpRoot, "idxfiles-store")
			os.RemoveAll(dir)
			os.MkdirAll(dir, 0o755)
			ls, err := local.Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			st := remote.NewCounting(ls)
			r, err := cassback.Open(context.Background(), st, cassback.Options{Create: true, Log: quiet()})
			if err != nil {
				b.Fatal(err)
			}
			indexFilesRun(b, r, st.Counts)
		}
	})
	b.Run("store=s3", func(b *testing.B) {
		sb := newS3Bench(b)
		for b.Loop() {
			sb.fresh(b)
			indexFilesRun(b, sb.repo(b, b.TempDir(), true), sb.st.Requests)
		}
	})
}

// indexFilesRun is one run of BenchmarkContinuousIndexFiles against r,
// whose requests counts returns.
func indexFilesRun(b *testing.B, r *cassback.Repo, counts func() map[string]int64) {
	dir := filepath.Join(tmpRoot, "idxfiles")
	os.RemoveAll(dir)
	node, err := nodegen.Generate(filepath.Join(dir, "data"), nodegen.Config{Seed: 6, TotalBytes: 1 << 20,
		Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}}}})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	var cs cassback.ContinuousStats
	go func() {
		var err error
		cs, err = r.Continuous(context.Background(), stop, cassback.ContinuousOptions{
			BackupOptions:    cassback.BackupOptions{DataDirs: []string{node.Dir}, Host: "n"},
			ManifestInterval: 20 * time.Millisecond, ReportInterval: -1,
			Watch: watch.Options{Debounce: 10 * time.Millisecond},
		})
		done <- err
	}()
	time.Sleep(time.Second) // the start-up scan and first commit
	before := counts()
	for range 200 {
		if _, err := node.Flush("ks", "t", 16<<10); err != nil {
			b.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	after := counts()
	files := 0
	if err := r.Store.List(context.Background(), "index/n/", func(remote.Info) error { files++; return nil }); err != nil {
		b.Fatal(err)
	}
	commits := float64(max(cs.Manifests-1, 1))
	var total int64
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if n := after[k] - before[k]; n > 0 {
			total += n
			b.ReportMetric(float64(n)/commits, k+"/commit")
		}
	}
	b.ReportMetric(float64(total)/commits, "requests/commit")
	b.ReportMetric(float64(files), "index-files")
	b.ReportMetric(float64(cs.Manifests), "manifests")
}
