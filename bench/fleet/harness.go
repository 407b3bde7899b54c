package fleet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/survey"
)

// Build compiles cmd/cassback of the module in the folder src ("" means
// the module that holds the current folder) into dir, and returns the
// binary's path.
func Build(ctx context.Context, src, dir string) (string, error) {
	if src == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		mod := strings.TrimSpace(string(out))
		if err != nil || mod == "" || mod == os.DevNull {
			return "", fmt.Errorf("build cassback: not in a module (go env GOMOD: %q, %v)", mod, err)
		}
		src = filepath.Dir(mod)
	}
	bin := filepath.Join(dir, "cassback")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cassback")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build cassback in %s: %w\n%s", src, err, out)
	}
	return bin, nil
}

// Env is where Measure runs cassback.
type Env struct {
	Bin      string // the binary (Build)
	MetaDir  string // the store: a generated one, or any survey meta dir
	CacheDir string // --cache-dir; an empty folder is a new node's cache
	Scratch  string // each run's survey file and log go here
	// KillRSS, if not 0, is a resident set in bytes at which the command
	// is killed (Result.Killed), so that a measurement cannot take a
	// shared machine's memory. It is checked every 100 ms.
	KillRSS int64
	// KeepSurvey, if set, keeps each run's survey file (Result.Survey),
	// to see its requests one by one; by default it is removed.
	KeepSurvey bool
}

// Count is the lines of one operation in a survey file: requests, and the
// sum of their N (bytes, or keys for the list operations).
type Count struct {
	Requests int64
	N        int64
}

// Result is one measured run of cassback.
type Result struct {
	Args []string // after the global options Measure adds
	Exit int
	Wall time.Duration
	// MaxRSS is the command's peak resident set in bytes, as GNU time
	// reports it. Without /usr/bin/time it is the child's ru_maxrss from
	// wait4, which is at least this process's own peak (see timeBin), and
	// MaxRSSBound is true.
	MaxRSS      int64
	MaxRSSBound bool
	Killed      bool          // at Env.KillRSS
	CPU         time.Duration // user and system time of the command
	Ops         map[survey.Op]Count
	Stdout      string
	Stderr      string
	Log         string // the log file's path
	Survey      string // the survey file's path, with Env.KeepSurvey
}

// timeBin runs the command when it exists. os/exec starts a child with
// vfork on Linux, and exec records the peak of the address space it
// leaves, which after a vfork is the parent's, as the child's own: a 17 MB
// list --hosts started by a test process that had reached 90 MB reports
// 90 MB. GNU time forks a copy of itself (about 1 MB), so the peak it
// reports for its child is the child's.
const timeBin = "/usr/bin/time"

// Measure runs cassback with --endpoint survey on e's store, its cache and
// log in e, and args after the global options. A run that exits non-zero is
// a Result with its Exit, not an error; the error is for a run that could
// not be made or read.
func Measure(ctx context.Context, e Env, args ...string) (Result, error) {
	f, err := os.CreateTemp(e.Scratch, "run-*.survey")
	if err != nil {
		return Result{}, err
	}
	f.Close()
	surveyPath := f.Name()
	if !e.KeepSurvey {
		defer os.Remove(surveyPath) // a validate of 100 hosts logs a line a pack
	}
	base := strings.TrimSuffix(surveyPath, ".survey")
	logPath, rssPath := base+".log", base+".rss"
	defer os.Remove(rssPath)

	argv := append([]string{e.Bin, "--endpoint", "survey", "--survey-path", surveyPath, "--meta-dir", e.MetaDir,
		"--cache-dir", e.CacheDir, "--log-file", logPath}, args...)
	_, err = os.Stat(timeBin)
	viaTime := err == nil
	if viaTime {
		argv = append([]string{timeBin, "-f", "%U %S %M", "-o", rssPath}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{Args: args}, fmt.Errorf("run cassback %s: %w", strings.Join(args, " "), err)
	}
	var killed atomic.Bool
	stop := make(chan struct{})
	if e.KillRSS > 0 {
		go watchRSS(cmd.Process.Pid, e.KillRSS, stop, &killed)
	}
	err = cmd.Wait()
	close(stop)
	r := Result{Killed: killed.Load(), Args: args, Wall: time.Since(began), Stdout: stdout.String(), Stderr: stderr.String(), Log: logPath}
	if e.KeepSurvey {
		r.Survey = surveyPath
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.Exit = exit.ExitCode()
	case err != nil:
		return r, fmt.Errorf("run cassback %s: %w", strings.Join(args, " "), err)
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if viaTime {
		if r.CPU, r.MaxRSS, err = readTime(rssPath); err != nil {
			return r, err
		}
	} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS, r.MaxRSSBound = ru.Maxrss<<10, true // KiB on Linux
	}
	if r.Ops, err = countOps(surveyPath); err != nil {
		return r, err
	}
	return r, nil
}

// watchRSS kills the children of pid (the command under GNU time), or pid
// if it has none, once their resident sets add up to more than limit
// bytes, until stop is closed.
func watchRSS(pid int, limit int64, stop <-chan struct{}, killed *atomic.Bool) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		pids := []int{pid}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					pids = append(pids, c)
				}
			}
		}
		var rss int64
		for _, p := range pids {
			rss += vmRSS(p)
		}
		if rss > limit {
			killed.Store(true)
			if len(pids) > 1 {
				pids = pids[1:] // GNU time then reports the child's peak
			}
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			return
		}
	}
}

// vmRSS is the resident set of a process in bytes, 0 if it is gone.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

// readTime reads what GNU time -f "%U %S %M" wrote: user and system
// seconds and the peak in KiB, on the last line (a line "Command exited
// with non-zero status N" may come first).
func readTime(path string) (cpu time.Duration, rss int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read GNU time's output: %w", err)
	}
	f := strings.Fields(strings.TrimSpace(string(b)))
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("read GNU time's output: %q", b)
	}
	f = f[len(f)-3:]
	user, err1 := strconv.ParseFloat(f[0], 64)
	sys, err2 := strconv.ParseFloat(f[1], 64)
	kib, err3 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, fmt.Errorf("read GNU time's output %q: %w", b, err)
	}
	return time.Duration((user + sys) * float64(time.Second)), kib << 10, nil
}

// countOps counts a survey file's lines by operation, a line at a time (a
// validate of a large store writes millions).
func countOps(path string) (map[survey.Op]Count, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ops := map[survey.Op]Count{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		ev, err := survey.ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("survey file %s: line %d: %w", path, n, err)
		}
		c := ops[ev.Op]
		c.Requests++
		c.N += ev.N
		ops[ev.Op] = c
	}
	return ops, sc.Err()
}

// opOrder is the order Requests prints operations in.
var opOrder = []survey.Op{survey.OpListed, survey.OpListedDirs, survey.OpRestored, survey.OpStat,
	survey.OpMissing, survey.OpStored, survey.OpConflict, survey.OpRemoved}

// Requests formats r.Ops as the survey names them: "listed 4 (1,203
// keys), restored 31 (128.4 MB), stat 2".
func (r Result) Requests() string {
	var parts []string
	for _, op := range opOrder {
		c, ok := r.Ops[op]
		if !ok {
			continue
		}
		s := string(op) + " " + thousands(c.Requests)
		switch op {
		case survey.OpListed:
			s += " (" + thousands(c.N) + " keys)"
		case survey.OpListedDirs:
			s += " (" + thousands(c.N) + " dirs)"
		case survey.OpRestored, survey.OpStored, survey.OpRemoved:
			s += " (" + MB(c.N) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// MB formats bytes in decimal megabytes, or gigabytes from 10 GB.
func MB(n int64) string {
	if n >= 10e9 {
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// RemoveHost deletes what the backups of host left in the store in dir:
// the packs its index files name, the index files, and its manifests,
// commit markers and sessions. It returns how many objects it deleted.
// Measurements back up new hosts into a generated store and take them out
// again, so the store stays what Generate made.
func RemoveHost(ctx context.Context, dir, host string) (int, error) {
	st, err := local.Open(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	del := func(key string) error {
		if err := st.Delete(ctx, key); err != nil {
			return err
		}
		n++
		return nil
	}
	var idx []string
	if err := st.List(ctx, "index/"+host+"/", func(i remote.Info) error {
		idx = append(idx, i.Key)
		return nil
	}); err != nil {
		return n, err
	}
	for _, key := range idx {
		packs, err := index.ReadFile(ctx, st, key)
		if err != nil {
			return n, err
		}
		for _, p := range packs {
			if err := del(pack.Key(p.ID)); err != nil {
				return n, err
			}
		}
		if err := del(key); err != nil {
			return n, err
		}
	}
	for _, top := range []string{"manifests/", "commits/", "sessions/"} {
		var keys []string
		err := st.List(ctx, top+host+"/", func(i remote.Info) error {
			keys = append(keys, i.Key)
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		for _, k := range keys {
			if err := del(k); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// DiskUsage is the bytes the files under dir take on disk (allocated
// blocks, so a 1 KiB stub counts as the 4 KiB it occupies), and how many
// files there are.
func DiskUsage(dir string) (bytes int64, files int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			bytes += st.Blocks * 512
		} else {
			bytes += fi.Size()
		}
		files++
		return nil
	})
	return bytes, files, err
}
