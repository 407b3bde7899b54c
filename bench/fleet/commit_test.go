package fleet

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/remote/survey"
)

// TestFleetCommit measures what continuous backup writes to commit one
// flush in a keyspace of many SSTables: it builds a node of one keyspace
// of CASSBACK_COMMIT_TABLES tables × CASSBACK_COMMIT_SSTABLES SSTables of
// 8 small components (default 10 × 10,000: 100,000 SSTables, 800,000
// files; kept in CASSBACK_COMMIT_NODE when set), starts `cassback backup`
// (continuous) on it against a survey store in CASSBACK_COMMIT_STORE
// (default: a new one), waits for the first commit, writes one SSTable
// into one table (its components, then its TOC, as Cassandra's flush
// does), waits for the commit that follows, and reports that commit's
// requests and bytes, then stops the backup with SIGTERM. Switched on by
// CASSBACK_COMMIT=1; cassback is built from CASSBACK_FLEET_SRC (default
// this tree).
func TestFleetCommit(t *testing.T) {
	if os.Getenv("CASSBACK_COMMIT") == "" {
		t.Skip("set CASSBACK_COMMIT=1 to measure a continuous commit in a keyspace of many SSTables")
	}
	ctx := t.Context()
	tables := int(envInt(t, "CASSBACK_COMMIT_TABLES", 10))
	ssts := int(envInt(t, "CASSBACK_COMMIT_SSTABLES", 10_000))
	work := t.TempDir()
	node := os.Getenv("CASSBACK_COMMIT_NODE")
	if node == "" {
		node = filepath.Join(work, "node")
	}
	if _, err := os.Stat(node); err != nil {
		began := time.Now()
		buildTree(t, node, 1, tables, ssts)
		t.Logf("node of %d tables × %d SSTables built in %v", tables, ssts, time.Since(began).Round(time.Second))
	}
	store := os.Getenv("CASSBACK_COMMIT_STORE")
	if store == "" {
		store = filepath.Join(work, "store")
	}
	bin, err := Build(ctx, os.Getenv("CASSBACK_FLEET_SRC"), work)
	if err != nil {
		t.Fatal(err)
	}
	surveyPath := filepath.Join(work, "run.survey")
	logPath := filepath.Join(work, "run.log")
	cmd := exec.CommandContext(ctx, bin, "--endpoint", "survey", "--survey-path", surveyPath, "--meta-dir", store,
		"--cache-dir", filepath.Join(work, "cache"), "--log-file", logPath,
		"backup", "--cassandra-data-dir", node, "--host", "c100k", "--manifest-interval-secs", "1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
		}
	}()

	// commits returns the survey's events and the number of commit markers
	// stored so far.
	events := func() ([]survey.Event, int) {
		f, err := os.Open(surveyPath)
		if err != nil {
			return nil, 0
		}
		defer f.Close()
		var evs []survey.Event
		n := 0
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			ev, err := survey.ParseLine(line)
			if err != nil {
				continue // a line being written
			}
			evs = append(evs, ev)
			if ev.Op == survey.OpStored && strings.HasPrefix(ev.Key, "commits/") {
				n++
			}
		}
		return evs, n
	}
	wait := func(what string, commits int, limit time.Duration) []survey.Event {
		deadline := time.Now().Add(limit)
		for {
			evs, n := events()
			if n >= commits {
				return evs
			}
			select {
			case err := <-done:
				log, _ := os.ReadFile(logPath)
				t.Fatalf("%s: the backup exited: %v\n%s\n%s", what, err, out.String(), tail(log, 3000))
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logPath)
				t.Fatalf("%s: no commit within %v\n%s", what, limit, tail(log, 3000))
			}
		}
	}
	first := wait("first backup", 1, time.Hour)
	t.Logf("first commit after %v: %d requests", time.Since(began).Round(time.Second), len(first))
	// Let the first commit's requests end (the session's renewal after the
	// marker), then mark where the flush begins.
	time.Sleep(3 * time.Second)
	before, n0 := events()
	rss0 := vmHWM(cmd.Process.Pid)

	dir := filepath.Join(node, "ks00", fmt.Sprintf("t%03d-%032x", 0, 0))
	gen := ssts + 1 // the next generation not written by an earlier run
	for {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("nb-%d-big-TOC.txt", gen))); err != nil {
			break
		}
		gen++
	}
	comps := []string{"Data.db", "Index.db", "Filter.db", "Statistics.db", "Summary.db", "Digest.crc32", "CompressionInfo.db"}
	flushed := time.Now()
	for _, c := range comps {
		body := fmt.Appendf(nil, "%s flush %d %d", c, gen, time.Now().UnixNano())
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("nb-%d-big-%s", gen, c)), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	toc := []byte(strings.Join(append(comps, "TOC.txt"), "\n") + "\n")
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("nb-%d-big-TOC.txt", gen)), toc, 0o644); err != nil {
		t.Fatal(err)
	}
	wait("the flush's commit", n0+1, 10*time.Minute)
	latency := time.Since(flushed)
	time.Sleep(3 * time.Second) // the commit's last requests
	after, _ := events()
	ops := map[survey.Op]Count{}
	var written int64
	for _, ev := range after[len(before):] {
		c := ops[ev.Op]
		c.Requests++
		c.N += ev.N
		ops[ev.Op] = c
		if ev.Op == survey.OpStored {
			written += ev.N
			t.Logf("  stored %s (%d bytes)", ev.Key, ev.N)
		} else {
			t.Logf("  %s %s (%d)", ev.Op, ev.Key, ev.N)
		}
	}
	r := Result{Ops: ops}
	t.Logf("one flush (8 files) into a keyspace of %d SSTables (%d files): committed %v after the TOC was written; requests: %s; %d bytes stored; peak RSS %s (before the flush %s)",
		tables*ssts+1, (tables*ssts+1)*8, latency.Round(time.Millisecond), r.Requests(), written, MB(vmHWM(cmd.Process.Pid)), MB(rss0))
}

// vmHWM is the peak resident set of process pid, from /proc.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
