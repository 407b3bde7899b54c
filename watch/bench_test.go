package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// buildTree writes keyspaces×tables table directories with ssts tiny
// SSTables each (8 files), by hand: nodegen would spend its time on bytes
// the watcher never reads.
func buildTree(tb testing.TB, root string, keyspaces, tables, ssts int) {
	tb.Helper()
	toc := []byte("Data.db\nIndex.db\nFilter.db\nStatistics.db\nSummary.db\nDigest.crc32\nCompressionInfo.db\nTOC.txt\n")
	for k := range keyspaces {
		for t := range tables {
			dir := filepath.Join(root, fmt.Sprintf("ks%02d", k), fmt.Sprintf("t%03d-%032x", t, k*1000+t))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				tb.Fatal(err)
			}
			for g := 1; g <= ssts; g++ {
				for _, c := range modernComponents {
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("nb-%d-big-%s", g, c)), []byte(c), 0o644); err != nil {
						tb.Fatal(err)
					}
				}
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("nb-%d-big-TOC.txt", g)), toc, 0o644); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startAndDrain runs a watcher on root with the real fsnotify source,
// releasing every event as a consumer would, until the start-up scan is
// reported. It returns the watcher, how many SSTables were ready and a
// stop function.
func startAndDrain(tb testing.TB, root string, clk Clock) (*Watcher, int, func()) {
	tb.Helper()
	w, err := New(Options{Roots: []string{root}, Clock: clk})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Event, 64)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	ready := 0
	for ev := range out {
		if ev.Kind == Ready {
			ready++
		}
		if err := w.Release(ev); err != nil {
			tb.Fatal(err)
		}
		if ev.Kind == Synced {
			break
		}
	}
	return w, ready, func() {
		cancel()
		for range out {
		}
		if err := <-done; !errors.Is(err, context.Canceled) {
			tb.Fatal(err)
		}
	}
}

const (
	benchKeyspaces = 10
	benchTables    = 100
	benchSSTables  = 10 // per table: 10,000 in all, 80,000 files, 1,011 watches
)

var benchRoot string

func benchTree(b *testing.B) string {
	if benchRoot == "" {
		dir, err := os.MkdirTemp("", "cassback-watch-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchRoot = filepath.Join(dir, "data")
		buildTree(b, benchRoot, benchKeyspaces, benchTables, benchSSTables)
	}
	return benchRoot
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRoot != "" {
		os.RemoveAll(filepath.Dir(benchRoot))
	}
	os.Exit(code)
}

// BenchmarkStart10k: start-up on 10,000 SSTables: watch 1,011 directories,
// scan, stat and hard-link 80,000 files, send and release 10,000 Ready.
func BenchmarkStart10k(b *testing.B) {
	root := benchTree(b)
	var heap uint64
	cpu0, n := cpuTime(), 0
	for b.Loop() {
		n++
		w, ready, stop := startAndDrain(b, root, nil)
		if ready != benchKeyspaces*benchTables*benchSSTables {
			b.Fatalf("%d ready", ready)
		}
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = ms.HeapAlloc
		_ = w
		stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n)/1e6, "cpu-ms/op")
}

// BenchmarkRescan10k: one periodic rescan of 10,000 unchanged SSTables.
func BenchmarkRescan10k(b *testing.B) {
	root := benchTree(b)
	clk := newFakeClock()
	w, _, stop := startAndDrain(b, root, clk)
	defer stop()
	cpu0, n := cpuTime(), 0
	for b.Loop() {
		clk.Advance(DefaultRescanInterval)
		done := make(chan struct{})
		w.syncc <- done
		<-done
		n++
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n)/1e6, "cpu-ms/op")
}

// BenchmarkIdle10k: CPU spent while watching 10,000 SSTables that do not
// change; run with -benchtime=5x (each iteration is one idle second).
func BenchmarkIdle10k(b *testing.B) {
	root := benchTree(b)
	_, _, stop := startAndDrain(b, root, nil)
	defer stop()
	runtime.GC()
	cpu0, t0 := cpuTime(), time.Now()
	for b.Loop() {
		time.Sleep(time.Second)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Since(t0))*100, "cpu-%")
}
