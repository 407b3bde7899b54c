package bench

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/crypt/keyslot"
)

// encKeys is a key-file source of the benchmark's encrypted stores.
func encKeys(b *testing.B) cassback.Keys {
	k := make([]byte, 32)
	rand.Read(k)
	src, err := keyslot.KeyFile(k)
	if err != nil {
		b.Fatal(err)
	}
	return cassback.KeySlots(src)
}

// BenchmarkEncryption measures a first backup of the generated node, and a
// restore of it, into a plaintext store and an encrypted one, in the same
// run (the budget: each at most 10% slower encrypted). Each
// iteration runs both, in turns (plaintext first, then encrypted first),
// so that what changes over a run (the page cache, the disk's writeback)
// weighs on both alike; it reports each one's mean seconds, wall and CPU,
// and the overheads in percent (ns/op is the pair's). Run with
// -benchtime 6x -count 3.
func BenchmarkEncryption(b *testing.B) {
	n := genNode(b)
	keys := [2]cassback.Keys{nil, encKeys(b)}
	b.Run("backup", func(b *testing.B) {
		b.SetBytes(2 * n.Bytes)
		var r *cassback.Repo
		var dir string
		runPairs(b, func(m int) {
			dir = filepath.Join(tmpRoot, "store-enc-"+encModes[m])
			r = newRepoKeys(b, dir, true, keys[m])
		}, func(m int) {
			if _, err := r.Backup(context.Background(), cassback.BackupOptions{DataDirs: []string{nodeDir}, Host: "bench", IncludeSystem: true}); err != nil {
				b.Fatal(err)
			}
		}, func(m int) { os.RemoveAll(dir) })
	})
	b.Run("restore", func(b *testing.B) {
		b.SetBytes(2 * n.Bytes)
		var rs [2]*cassback.Repo
		var ms [2][]*manifest.Manifest
		for m := range 2 {
			dir := filepath.Join(tmpRoot, "store-enc-restore-"+encModes[m])
			defer os.RemoveAll(dir)
			rs[m] = newRepoKeys(b, dir, true, keys[m])
			ms[m] = backupForRestore(b, rs[m])
		}
		b.ResetTimer()
		dst := func(m int) string { return filepath.Join(tmpRoot, "restore-enc-"+encModes[m]) }
		runPairs(b, func(int) {}, func(m int) {
			if _, err := rs[m].Restore(context.Background(), ms[m], cassback.RestoreOptions{DataDir: dst(m), NoChown: true}); err != nil {
				b.Fatal(err)
			}
		}, func(m int) { os.RemoveAll(dst(m)) })
	})
}

// runPairs runs, each iteration, op for both modes (0 plaintext, 1
// encrypted) in turns, with setup before and cleanup after each outside the
// timer, and reports the pair (reportPair).
func runPairs(b *testing.B, setup, op, cleanup func(m int)) {
	var took, cpu [2]time.Duration
	i := 0
	for b.Loop() {
		for j := range 2 {
			m := (i + j) % 2
			b.StopTimer()
			setup(m)
			b.StartTimer()
			start, cpu0 := time.Now(), cpuTime(b)
			op(m)
			took[m] += time.Since(start)
			cpu[m] += cpuTime(b) - cpu0
			b.StopTimer()
			cleanup(m)
			b.StartTimer()
		}
		i++
	}
	reportPair(b, took, cpu, i)
}

var encModes = [2]string{"plain", "encrypted"}

// reportPair reports the mean seconds of the plaintext and encrypted runs
// and the encrypted one's overhead in percent, of the wall clock and of
// the process's CPU time (user and system), which the machine's other
// work sways less.
func reportPair(b *testing.B, took, cpu [2]time.Duration, n int) {
	if n == 0 {
		return
	}
	plain, enc := took[0].Seconds()/float64(n), took[1].Seconds()/float64(n)
	b.ReportMetric(plain, "plain-s/op")
	b.ReportMetric(enc, "encrypted-s/op")
	b.ReportMetric(100*(enc/plain-1), "overhead-%")
	plainCPU, encCPU := cpu[0].Seconds()/float64(n), cpu[1].Seconds()/float64(n)
	b.ReportMetric(plainCPU, "plain-cpu-s/op")
	b.ReportMetric(encCPU, "encrypted-cpu-s/op")
	b.ReportMetric(100*(encCPU/plainCPU-1), "cpu-overhead-%")
}

// cpuTime returns the CPU time, user and system, the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
