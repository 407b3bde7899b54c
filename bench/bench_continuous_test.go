package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
)

// BenchmarkContinuousLatency measures, with the local store, the time from
// an SSTable becoming complete (its flush committed) to a durable manifest
// that contains it: 40 flushes of 1 MiB, 250 ms apart, beside a running
// continuous backup, for two coalescing intervals.
func BenchmarkContinuousLatency(b *testing.B) {
	for _, interval := range []time.Duration{time.Second, 5 * time.Second} {
		b.Run(fmt.Sprint("interval=", interval), func(b *testing.B) {
			for b.Loop() {
				dir := filepath.Join(tmpRoot, "cont")
				os.RemoveAll(dir)
				node, err := nodegen.Generate(filepath.Join(dir, "data"), nodegen.Config{Seed: 5, TotalBytes: 16 << 20,
					Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}}}})
				if err != nil {
					b.Fatal(err)
				}
				r := newRepo(b, filepath.Join(dir, "store"), true)
				stop := make(chan struct{})
				done := make(chan error, 1)
				var st cassback.ContinuousStats
				go func() {
					var err error
					st, err = r.Continuous(context.Background(), stop, cassback.ContinuousOptions{
						BackupOptions:    cassback.BackupOptions{DataDirs: []string{node.Dir}, Host: "n"},
						ManifestInterval: interval, ReportInterval: -1,
					})
					done <- err
				}()
				time.Sleep(interval + time.Second) // the start-up scan
				flushed := map[string]time.Time{}  // Data.db path -> when its flush committed
				for range 40 {
					s, err := node.Flush("ks", "t", 1<<20)
					if err != nil {
						b.Fatal(err)
					}
					flushed[s.Prefix+"-Data.db"] = time.Now() // Prefix is the path below the data directory
					time.Sleep(250 * time.Millisecond)
				}
				time.Sleep(interval + time.Second)
				close(stop)
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				// Measured from outside: the first manifest naming each
				// flushed SSTable, by the manifest's time.
				first := map[string]time.Time{}
				var names []string
				manifest.List(context.Background(), r.Store, "n", "ks", "", func(n string) error { names = append(names, n); return nil })
				for _, n := range names {
					m, err := manifest.Get(context.Background(), r.Store, n, cassback.ChunksOf(r.Store))
					if err != nil {
						b.Fatal(err)
					}
					for _, t := range m.Tables {
						for _, f := range t.Files {
							if _, ok := flushed[f.Path]; ok {
								if _, seen := first[f.Path]; !seen {
									first[f.Path] = m.Time
								}
							}
						}
					}
				}
				var lat []time.Duration
				for p, at := range flushed {
					if m, ok := first[p]; ok {
						lat = append(lat, m.Sub(at))
					} else {
						b.Errorf("flushed SSTable %s is in no manifest", p)
					}
				}
				measured := cassback.ContinuousStats{Latency: lat} // measured from outside, not the engine's own
				b.ReportMetric(measured.LatencyPercentile(50).Seconds(), "median-s")
				b.ReportMetric(measured.LatencyPercentile(99).Seconds(), "p99-s")
				b.ReportMetric(float64(st.Manifests), "manifests")
				os.RemoveAll(dir)
			}
		})
	}
}
