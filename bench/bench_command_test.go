package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The command benchmarks run the real binary, built from this tree once per
// process, as an operator runs it, and report its peak RSS ("peakRSS-MiB",
// the largest of the iterations) and its CPU time ("cpu-s/op", user and
// system: steadier than the wall time on a shared machine) beside its
// throughput.
//
// Why a shim: at exec, Linux records as the new program's peak RSS that of
// the memory it replaces, and Go starts a command by vfork, in the parent's
// memory, so a command started by the benchmark process (which holds the
// generated node's bookkeeping) would report at least that process's peak.
// The benchmark binary, started again with shimEnv set, starts the command
// while its own memory is small and reports the command's peak from wait4.
// Its own peak at that moment ("shim-MiB") is a floor under the figure.

const shimEnv = "CASSBACK_BENCH_SHIM"

func init() {
	if out := os.Getenv(shimEnv); out != "" {
		os.Exit(shim(out, os.Args[1:]))
	}
}

// shimReport is what the shim measured of one command.
type shimReport struct {
	MaxRSS int64         // KiB, from wait4
	Floor  int64         // KiB: the shim's own peak when it started the command
	CPU    time.Duration // user and system time
	Err    string
}

// shim runs args with its standard streams and writes a shimReport to out.
func shim(out string, args []string) int {
	rep := shimReport{Floor: statusKiB("VmHWM:")}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		rep.Err = err.Error()
	}
	if cmd.ProcessState != nil {
		rep.MaxRSS = cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		rep.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	b, _ := json.Marshal(rep)
	if err := os.WriteFile(out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// statusKiB returns a field of /proc/self/status in KiB, 0 if absent.
func statusKiB(field string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for len(b) > 0 {
		line := b
		if i := indexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) > len(field) && string(line[:len(field)]) == field {
			var n int64
			fmt.Sscan(string(line[len(field):]), &n)
			return n
		}
	}
	return 0
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// cassbackBin builds cmd/cassback of the tree this file is in.
func cassbackBin(b *testing.B) string {
	binOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		binPath = filepath.Join(tmpRoot, "cassback")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/cassback")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build in %s: %v\n%s", root, err, out)
		}
	})
	if binErr != nil {
		b.Skip(binErr)
	}
	return binPath
}

// runShimmed runs the command args through the shim and returns its report.
func runShimmed(b *testing.B, args ...string) shimReport {
	b.Helper()
	if runtime.GOOS != "linux" {
		b.Skip("peak RSS from wait4 and /proc: linux only")
	}
	out := filepath.Join(tmpRoot, "shim.json")
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), shimEnv+"="+out)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("shim: %v", err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	var rep shimReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		b.Fatal(err)
	}
	if rep.Err != "" {
		b.Fatalf("%v: %s", args, rep.Err)
	}
	return rep
}

// BenchmarkBackupCommand measures `cassback backup --ignore-changes` of the
// generated node into an empty local store, with default flags (and the
// system keyspace, as BenchmarkBackup).
func BenchmarkBackupCommand(b *testing.B) {
	n := genNode(b)
	bin := cassbackBin(b)
	b.SetBytes(n.Bytes)
	var m cmdMetrics
	i := 0
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(tmpRoot, "cmd-"+strconv.Itoa(i))
		b.StartTimer()
		m.add(runShimmed(b, bin, "--backup-base", filepath.Join(dir, "store"), "--cache-dir", filepath.Join(dir, "cache"),
			"--log-file", filepath.Join(tmpRoot, "cmd.log"), "backup", "--ignore-changes", "--cassandra_data_dir", nodeDir,
			"--host", "bench", "--include-system-keyspace"))
		b.StopTimer()
		os.RemoveAll(dir)
		i++
		b.StartTimer()
	}
	m.report(b)
}

// BenchmarkRestoreCommand measures `cassback restore` of the whole node
// from a local store into an empty folder (default flags, no chown).
func BenchmarkRestoreCommand(b *testing.B) {
	n := genNode(b)
	bin := cassbackBin(b)
	dir := filepath.Join(tmpRoot, "cmd-restore")
	defer os.RemoveAll(dir)
	common := []string{bin, "--backup-base", filepath.Join(dir, "store"), "--cache-dir", filepath.Join(dir, "cache"),
		"--log-file", filepath.Join(tmpRoot, "cmd.log")}
	runShimmed(b, append(common, "backup", "--ignore-changes", "--cassandra_data_dir", nodeDir, "--host", "bench", "--include-system-keyspace")...)
	b.SetBytes(n.Bytes)
	var m cmdMetrics
	i := 0
	for b.Loop() {
		dst := filepath.Join(tmpRoot, "cmd-restored-"+strconv.Itoa(i))
		m.add(runShimmed(b, append(common, "restore", "--data-dir", dst, "--host", "bench", "--no-chown")...))
		b.StopTimer()
		os.RemoveAll(dst)
		i++
		b.StartTimer()
	}
	m.report(b)
}

// cmdMetrics gathers the shim's reports of a benchmark's iterations.
type cmdMetrics struct {
	peak, floor int64 // KiB
	cpu         time.Duration
	n           int
}

func (m *cmdMetrics) add(r shimReport) {
	m.peak, m.floor = max(m.peak, r.MaxRSS), max(m.floor, r.Floor)
	m.cpu += r.CPU
	m.n++
}

func (m *cmdMetrics) report(b *testing.B) {
	if m.n == 0 {
		return
	}
	b.ReportMetric(float64(m.peak)/1024, "peakRSS-MiB")
	b.ReportMetric(float64(m.floor)/1024, "shim-MiB")
	b.ReportMetric(m.cpu.Seconds()/float64(m.n), "cpu-s/op")
}
