package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
)

// TestProgressLineOnTerminal runs a throttled restore in a real
// pseudo-terminal (tmux) and captures the screen while it runs: one live
// line with the operation, files, percentage, rate and remaining time.
// tmux is needed: the test skips without it, and fails when CI is set
// (.ci/run installs it).
func TestProgressLineOnTerminal(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and tmux is missing (apt-get install tmux): %v", err)
		}
		t.Skipf("tmux not found (apt-get install tmux): %v", err)
	}
	dir := t.TempDir()
	exe := buildCassback(t, dir)
	data := filepath.Join(dir, "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 5, TotalBytes: 24 << 20}); err != nil {
		t.Fatal(err)
	}
	base := []string{"--log-file", filepath.Join(dir, "log"), "--cache-dir", filepath.Join(dir, "cache"), "--backup-base", filepath.Join(dir, "store")}
	if out, err := exec.Command(exe, append(base, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1")...).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// About 4 s at 6 MB/s: the screen is captured after 1.5 s.
	cmd := strings.Join(append(append([]string{exe}, base...), "--max-download-rate", "6MB/s", "restore", "--data-dir", filepath.Join(dir, "r"), "--host", "n1", ">/dev/null;", "sleep", "60"), " ")
	session := "cassback-progress-" + filepath.Base(dir)
	if out, err := exec.Command(tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "10", cmd).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	defer exec.Command(tmux, "kill-session", "-t", session).Run()
	line := regexp.MustCompile(`restore \d+/\d+ files +\d+% \|.*\| \([\d.]+/[\d.]+ [kM]B, [\d.]+ [kM]B/s\) \[\d+s:\d+s\]`)
	var screen string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, err := exec.Command(tmux, "capture-pane", "-p", "-t", session).Output()
		if err != nil {
			t.Fatalf("capture-pane: %v", err)
		}
		screen = string(out)
		if line.MatchString(screen) {
			t.Logf("captured:\n%s", strings.TrimRight(screen, "\n"))
			return
		}
	}
	t.Fatalf("no progress line on the terminal within 30 s; screen:\n%s", screen)
}

// TestNoProgressBarWithoutTerminal: when standard error is not a
// terminal and --progress is auto, no live line is drawn (progress goes
// to the log every 30 s instead), and the restore's output stays clean.
func TestNoProgressBarWithoutTerminal(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 6, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	store := filepath.Join(dir, "store")
	if _, errs, code := cli(t, cache, "--backup-base", store, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1"); code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, errs)
	}
	out, errs, code := cli(t, cache, "--backup-base", store, "restore", "--data-dir", filepath.Join(dir, "r"), "--host", "n1")
	if code != 0 || strings.Contains(out+errs, "|") || strings.Contains(out+errs, "\r") {
		t.Fatalf("restore without a terminal: exit %d, a progress bar drawn:\n%s\n%s", code, out, errs)
	}
	if _, errs, code := cli(t, cache, "--progress", "sometimes", "list"); code != 2 || !strings.Contains(errs, "--progress") {
		t.Errorf("--progress sometimes: exit %d, %q; want a usage error naming the option", code, errs)
	}
}
