package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/watch"
)

// BenchmarkContinuousIndexFiles runs a continuous backup (local store)
// beside 200 flushes of 16 KiB, each given time to commit alone, and
// reports the host's index files left at the end and the store requests a
// commit made (index compaction included).
func BenchmarkContinuousIndexFiles(b *testing.B) {
	for b.Loop() {
		dir := filepath.Join(tmpRoot, "idxfiles")
		os.RemoveAll(dir)
		node, err := nodegen.Generate(filepath.Join(dir, "data"), nodegen.Config{Seed: 6, TotalBytes: 1 << 20,
			Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}}}})
		if err != nil {
			b.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, "store"), 0o755)
		ls, err := local.Open(filepath.Join(dir, "store"))
		if err != nil {
			b.Fatal(err)
		}
		st := remote.NewCounting(ls)
		r, err := cassback.Open(context.Background(), st, cassback.Options{Create: true, Log: quiet()})
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
		before, kinds := st.Total(), st.Counts()
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
		after := st.Total()
		files := 0
		if err := ls.List(context.Background(), "index/n/", func(remote.Info) error { files++; return nil }); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(files), "index-files")
		b.ReportMetric(float64(cs.Manifests), "manifests")
		commits := float64(max(cs.Manifests-1, 1))
		b.ReportMetric(float64(after-before)/commits, "requests/commit")
		now := st.Counts()
		for _, k := range []string{remote.KindPut, remote.KindHead, remote.KindDelete, remote.KindDeleteMany} {
			b.ReportMetric(float64(now[k]-kinds[k])/commits, k+"/commit")
		}
	}
}
