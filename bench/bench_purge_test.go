package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
)

// peakRSS returns the process's peak resident set (VmHWM) in bytes, and
// resetPeakRSS starts a new peak (Linux clear_refs).
func peakRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// BenchmarkPurgeLarge measures a purge over a store of 10,000 manifests
// naming 1,000,000 distinct chunks (CASSBACK_BENCH_MANIFESTS and
// CASSBACK_BENCH_CHUNKS change the scale): it removes the older half of the
// manifests and collects the packs only they used. Chunks are 64 bytes in
// 8 KiB packs so the store stays small; the collector's work depends on the
// numbers of manifests, chunks and packs, not on chunk size.
func BenchmarkPurgeLarge(b *testing.B) {
	nMan, nChunks := 10_000, 1_000_000
	if s := os.Getenv("CASSBACK_BENCH_MANIFESTS"); s != "" {
		nMan, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("CASSBACK_BENCH_CHUNKS"); s != "" {
		nChunks, _ = strconv.Atoi(s)
	}
	per := nChunks / nMan
	ctx := context.Background()
	dir := filepath.Join(tmpRoot, "purge-store")
	defer os.RemoveAll(dir)
	r := newRepo(b, dir, true)
	r.GC = gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 1}

	// Chunks, written by 2 workers into 8 KiB packs.
	refs := make([]chunk.Ref, nChunks)
	idx := index.New()
	w, err := index.NewWriter(ctx, r.Store, idx, r.Config, index.WriterOptions{Host: "h", PackSize: 8 << 10})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for k := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := w.NewPacker()
			buf := make([]byte, 64)
			for i := k; i < nChunks; i += 2 {
				rand.Read(buf)
				id := chunk.Sum(buf)
				refs[i] = chunk.Ref{ID: id, Len: 64}
				if _, err := p.Add(ctx, id, buf); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	// Manifests: one file of `per` chunks each, an hour apart.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sem := make(chan struct{}, 4)
	for i := range nMan {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			at := t0.Add(time.Duration(i) * time.Hour)
			m := &manifest.Manifest{Format: manifest.FormatVersion, Host: "h", Keyspace: fmt.Sprintf("ks%d", i%10), Time: at}
			m.Name = manifest.BackupName(at, m.Keyspace, "h")
			cs := refs[i*per : (i+1)*per]
			m.Tables = []manifest.Table{{Name: "t", ID: strings.Repeat("ab", 16), Files: []manifest.File{{
				Path: m.Keyspace + "/t-" + strings.Repeat("ab", 16) + "/nb-1-big-Data.db", Size: int64(64 * per), Mode: 0o644,
				MTime: at, Sum: chunk.Sum([]byte(m.Name)), Chunks: cs,
			}}}}
			if err := cassback.CommitManifest(ctx, r.Store, m, ""); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	// Purge from a freshly opened repo, as the purge command does, and
	// count only its memory.
	refs, w = nil, nil
	r = newRepo(b, dir, false)
	r.GC = gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 1}
	runtime.GC()
	debug.FreeOSMemory()
	cut := t0.Add(time.Duration(nMan/2) * time.Hour)
	b.ResetTimer()
	for b.Loop() {
		resetPeakRSS()
		start := time.Now()
		res, err := r.Purge(ctx, cassback.PurgeOptions{Host: "h", Before: cut, Holder: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/purge")
		b.ReportMetric(float64(peakRSS())/(1<<20), "peakRSS-MiB")
		b.Logf("%d manifests, %d chunks, %d packs: removed %d manifests, condemned %d and deleted %d packs, rewrote %d index files, %.1fs, peak RSS %d MiB",
			nMan, nChunks, idx.Packs(), len(res.Manifests), res.GC.Condemned, res.GC.Deleted, res.GC.IndexRewritten, time.Since(start).Seconds(), peakRSS()>>20)
	}
}
