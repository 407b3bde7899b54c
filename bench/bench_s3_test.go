package bench

import (
	"context"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/s3test"
)

// The S3 benchmarks run the engine against versitygw on loopback (package
// s3test; skipped without its binary), through the same decorators as the
// command line: WithRetry(NewCounting(s3.Store)). Each reports MB/s and the
// HTTP requests one operation sent, by S3 operation ("PutObject/op") and in
// all ("requests/op"). Every repository is opened as a new process would,
// with its cache folder, so OpenRepo's requests count too.

// s3Bench is a bucket on a server started for one benchmark.
type s3Bench struct {
	server *s3test.Server
	cfg    s3.Config
	st     *s3.Store
}

func newS3Bench(b *testing.B) *s3Bench {
	b.Helper()
	server := s3test.Start(b)
	sb := &s3Bench{server: server}
	sb.fresh(b)
	return sb
}

// fresh points sb at a new, empty bucket.
func (sb *s3Bench) fresh(b *testing.B) {
	b.Helper()
	sb.cfg = sb.server.Config(b)
	st, err := s3.Open(context.Background(), sb.cfg)
	if err != nil {
		b.Fatal(err)
	}
	sb.st = st
}

// repo opens the store as the command line does.
func (sb *s3Bench) repo(b *testing.B, cacheDir string, create bool) *cassback.Repo {
	b.Helper()
	st := remote.WithRetry(remote.NewCounting(sb.st), remote.RetryOptions{})
	r, err := cassback.Open(context.Background(), st, cassback.Options{CacheRoot: cacheDir, Create: create, Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// report reports the requests sent since before, per operation, over ops
// operations.
func (sb *s3Bench) report(b *testing.B, before map[string]int64, ops int) {
	b.Helper()
	now := sb.st.Requests()
	var total int64
	for _, op := range slices.Sorted(maps.Keys(now)) {
		if n := now[op] - before[op]; n > 0 {
			total += n
			b.ReportMetric(float64(n)/float64(ops), op+"/op")
		}
	}
	b.ReportMetric(float64(total)/float64(ops), "requests/op")
}

func backupOpts() cassback.BackupOptions {
	return cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench", IncludeSystem: true}
}

// BenchmarkS3Backup measures a first backup of the generated node into an
// empty bucket.
func BenchmarkS3Backup(b *testing.B) {
	n := genNode(b)
	sb := newS3Bench(b)
	b.SetBytes(n.Bytes)
	var before map[string]int64
	ops := 0
	for b.Loop() {
		b.StopTimer()
		if ops > 0 {
			sb.fresh(b)
		}
		cache := b.TempDir()
		before = sb.st.Requests()
		b.StartTimer()
		r := sb.repo(b, cache, true)
		if _, err := r.Backup(context.Background(), backupOpts()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		sb.report(b, before, 1)
		ops++
		b.StartTimer()
	}
}

// BenchmarkS3BackupUnchanged measures a second backup of the unchanged
// node: a handful of requests.
func BenchmarkS3BackupUnchanged(b *testing.B) {
	n := genNode(b)
	sb := newS3Bench(b)
	cache := b.TempDir()
	if _, err := sb.repo(b, cache, true).Backup(context.Background(), backupOpts()); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n.Bytes)
	before := sb.st.Requests()
	ops := 0
	for b.Loop() {
		r := sb.repo(b, cache, false)
		if _, err := r.Backup(context.Background(), backupOpts()); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	sb.report(b, before, ops)
}

// BenchmarkS3Restore measures restoring the whole node from the bucket
// into an empty folder.
func BenchmarkS3Restore(b *testing.B) {
	n := genNode(b)
	sb := newS3Bench(b)
	cache := b.TempDir()
	if _, err := sb.repo(b, cache, true).Backup(context.Background(), backupOpts()); err != nil {
		b.Fatal(err)
	}
	restoreBench(b, sb, cache, "bench", n.Bytes)
}

func restoreBench(b *testing.B, sb *s3Bench, cache, host string, size int64) {
	b.Helper()
	b.SetBytes(size)
	before := sb.st.Requests()
	ops := 0
	for b.Loop() {
		dst := filepath.Join(b.TempDir(), "restore")
		r := sb.repo(b, cache, false)
		ms, err := cassback.Select(context.Background(), r.Store, host, "", nil, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		res, err := r.Restore(context.Background(), ms, cassback.RestoreOptions{DataDir: dst, NoChown: true})
		if err != nil {
			b.Fatal(err)
		}
		if res.Bytes != size {
			b.Fatalf("restored %d bytes, want %d", res.Bytes, size)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		ops++
		b.StartTimer()
	}
	b.StopTimer()
	sb.report(b, before, ops)
}

// bigFileBytes is the size of BenchmarkS3RestoreLargeFile's file: 1 GiB,
// or CASSBACK_BENCH_BYTES.
func bigFileBytes() int64 {
	if s := os.Getenv("CASSBACK_BENCH_BYTES"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return 1 << 30
}

// BenchmarkS3RestoreLargeFile measures restoring one 1 GiB Data.db of
// random bytes: its chunks lie in some 32 packs, read as merged ranges of
// up to 64 MiB, 8 at a time (the restore's default --threads).
func BenchmarkS3RestoreLargeFile(b *testing.B) {
	size := bigFileBytes()
	data := filepath.Join(b.TempDir(), "data")
	table := filepath.Join(data, "bigks", "big-0123456789abcdef0123456789abcdef")
	if err := os.MkdirAll(table, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := writeRandom(filepath.Join(table, "nb-1-big-Data.db"), size); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(table, "nb-1-big-TOC.txt"), []byte("Data.db\nTOC.txt\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	sb := newS3Bench(b)
	cache := b.TempDir()
	sum, err := sb.repo(b, cache, true).Backup(context.Background(), cassback.BackupOptions{DataDirs: []string{data}, Host: "big"})
	if err != nil {
		b.Fatal(err)
	}
	if sum.Files != 2 {
		b.Fatalf("backed up %d files, want Data.db and TOC.txt", sum.Files)
	}
	restoreBench(b, sb, cache, "big", sum.BytesTotal)
}

// writeRandom writes size pseudo-random bytes to a new file.
func writeRandom(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{7})
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		n := int(min(left, int64(len(buf))))
		rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= int64(n)
	}
	return f.Close()
}
