package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/local"
)

var (
	tmpRoot string
	nodeDir string
	node    *nodegen.Node
	nodeErr error
	once    sync.Once
)

func TestMain(m *testing.M) {
	var err error
	tmpRoot, err = os.MkdirTemp("", "cassback-bench-")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

func benchBytes() int64 {
	if s := os.Getenv("CASSBACK_BENCH_BYTES"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return 1 << 30
}

// genNode generates the benchmark node once per process.
func genNode(b *testing.B) *nodegen.Node {
	once.Do(func() {
		nodeDir = filepath.Join(tmpRoot, "data")
		node, nodeErr = nodegen.Generate(nodeDir, nodegen.Config{Seed: 42, TotalBytes: benchBytes()})
	})
	if nodeErr != nil {
		b.Fatal(nodeErr)
	}
	return node
}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func newRepo(b *testing.B, dir string, create bool) *cassback.Repo {
	return newRepoKeys(b, dir, create, nil)
}

// newRepoKeys opens the local store in dir, encrypted with keys when it
// creates it (nil: plaintext).
func newRepoKeys(b *testing.B, dir string, create bool, keys cassback.Keys) *cassback.Repo {
	b.Helper()
	os.MkdirAll(dir, 0o755)
	st, err := local.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	r, err := cassback.Open(context.Background(), st, cassback.Options{CacheRoot: "", Create: create, Log: quiet(), Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkChunkHash measures content-defined chunking plus BLAKE3 of
// 256 MiB of random bytes in memory, on one core and on all cores.
func BenchmarkChunkHash(b *testing.B) {
	data := make([]byte, 256<<20)
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := 0; i < len(data); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(data); j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	p := chunk.DefaultParams(chunk.TestPol)
	for _, par := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("cores=%d", par), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var n int
			for b.Loop() {
				f, err := chunk.Split(context.Background(), bytesReaderAt(data), int64(len(data)), p, par, func(chunk.Chunk) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				n = len(f.Chunks)
			}
			b.ReportMetric(float64(len(data))/float64(n)/(1<<20), "MiB/chunk")
		})
	}
}

type bytesReaderAt []byte

func (d bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n := copy(p, d[off:])
	if n < len(p) {
		return n, fmt.Errorf("short read")
	}
	return n, nil
}

// BenchmarkBackup measures a first backup of the generated node into an
// empty local store.
func BenchmarkBackup(b *testing.B) {
	n := genNode(b)
	b.SetBytes(n.Bytes)
	i := 0
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(tmpRoot, "store-"+strconv.Itoa(i))
		r := newRepo(b, dir, true)
		b.StartTimer()
		if _, err := r.Backup(context.Background(), cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench", IncludeSystem: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		i++
		b.StartTimer()
	}
}

// BenchmarkBackupUnchanged measures a second backup of unchanged data.
func BenchmarkBackupUnchanged(b *testing.B) {
	n := genNode(b)
	dir := filepath.Join(tmpRoot, "store-unchanged")
	defer os.RemoveAll(dir)
	r := newRepo(b, dir, true)
	if _, err := r.Backup(context.Background(), cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench", IncludeSystem: true}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n.Bytes)
	for b.Loop() {
		if _, err := r.Backup(context.Background(), cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench", IncludeSystem: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestore measures restoring the whole node from the local store
// into an empty folder, with the whole-file checks.
func BenchmarkRestore(b *testing.B) {
	genNode(b)
	dir := filepath.Join(tmpRoot, "store-restore")
	defer os.RemoveAll(dir)
	benchRestore(b, newRepo(b, dir, true), "restore-")
}

// benchRestore backs the generated node up into r, then measures restoring
// it whole into empty folders named prefix<i> below tmpRoot.
func benchRestore(b *testing.B, r *cassback.Repo, prefix string) {
	ms := backupForRestore(b, r)
	b.SetBytes(node.Bytes)
	i := 0
	for b.Loop() {
		dst := filepath.Join(tmpRoot, prefix+strconv.Itoa(i))
		if _, err := r.Restore(context.Background(), ms, cassback.RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		i++
		b.StartTimer()
	}
}

// backupForRestore backs the generated node up into r and returns its
// manifests, to restore.
func backupForRestore(b *testing.B, r *cassback.Repo) []*manifest.Manifest {
	if _, err := r.Backup(context.Background(), cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench", IncludeSystem: true}); err != nil {
		b.Fatal(err)
	}
	ms, err := cassback.Select(context.Background(), r.Store, "bench", "", nil, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return ms
}
