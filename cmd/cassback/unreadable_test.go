package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/nodegen"
)

// copyExe copies the test binary, which acts as cassback when so named, to
// a folder everyone can read.
func copyExe(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, "cassback")
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	return exe
}

// TestUnreadableFile: a component file the backup cannot read fails its
// keyspace with a one-line error naming the file and exit status 1; the
// other keyspaces are still backed up. As root every file is readable, so
// the backup runs as user nobody (setpriv), which is how CI runs it.
func TestUnreadableFile(t *testing.T) {
	base := t.TempDir()
	os.Chmod(base, 0o755)
	os.Chmod(filepath.Dir(base), 0o755) // t.TempDir makes its parent 0700
	data := filepath.Join(base, "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 2, TotalBytes: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	for _, f := range node.LiveFiles {
		if strings.HasPrefix(f, "ks_app/") && strings.HasSuffix(f, "Data.db") {
			victim = f
			break
		}
	}
	if victim == "" {
		t.Fatal("no ks_app Data.db generated")
	}
	if err := os.Chmod(filepath.Join(data, victim), 0); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(base, "store")
	os.Mkdir(store, 0o777)
	os.Chmod(store, 0o777)
	args := []string{"--backup-base", store, "--log-file", "-", "--log-level", "ERROR", "--cache-dir", filepath.Join(base, "cache"),
		"backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1"}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("running as root without setpriv: cannot make a file unreadable")
		}
		exe := copyExe(t, base)
		os.MkdirAll(filepath.Join(base, "cache"), 0o777)
		os.Chmod(filepath.Join(base, "cache"), 0o777)
		cmd = exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", exe}, args...)...)
	} else {
		cmd = exec.Command(copyExe(t, t.TempDir()), args...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit status %d (%v), want 1\nstdout:\n%s\nstderr:\n%s", code, err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], filepath.Base(victim)) || !strings.Contains(lines[0], "permission denied") {
		t.Errorf("stderr = %q, want one line naming %s and the permission error", stderr.String(), filepath.Base(victim))
	}
	if !strings.Contains(stdout.String(), "Failed keyspace: ks_app") || !strings.Contains(stdout.String(), "-inventory-n1") {
		t.Errorf("stdout does not report ks_app failed and inventory backed up:\n%s", stdout.String())
	}
	if strings.Contains(stdout.String(), "-ks_app-n1") {
		t.Errorf("a manifest was written for ks_app although one of its files could not be read")
	}
}
