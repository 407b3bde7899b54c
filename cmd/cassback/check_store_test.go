package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/s3/s3test"
	"github.com/cassback/cassback/remote/storecheck"
)

// checkStoreChecks is how many lines of checks check-store prints.
const checkStoreChecks = 9

// wantCheckStoreOutput checks check-store's stdout: every check passed, and
// the verdict is verdict.
func wantCheckStoreOutput(t *testing.T, stdout, verdict string) {
	t.Helper()
	pass := 0
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, " pass ") {
			pass++
		}
	}
	if pass != checkStoreChecks {
		t.Errorf("got %d passing checks, want %d; stdout:\n%s", pass, checkStoreChecks, stdout)
	}
	if want := "Verdict: " + verdict + "\n"; !strings.HasSuffix(stdout, want) {
		t.Errorf("stdout:\n%s\nwant it to end with %q", stdout, want)
	}
}

// requireCheckStore fails the test at once, and says why, if root.go's
// command list does not include checkStoreCmd.
func requireCheckStore(t *testing.T) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := exitCode(run(t.Context(), []string{"help", "check-store"}, nil, &out, &errb), &errb); code != 0 {
		t.Fatalf("check-store is not a command (help check-store: exit %d, %s); add checkStoreCmd(g, opts) to the command list in root.go",
			code, strings.TrimSpace(errb.String()))
	}
}

func TestCheckStoreLocal(t *testing.T) {
	requireCheckStore(t)
	dir := t.TempDir()
	// Whatever is there already stays as it is.
	if err := os.MkdirAll(filepath.Join(dir, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other", "file"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	args := []string{"--log-file", "-", "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--backup-base", dir, "check-store", "--rounds", "3"}
	if code := exitCode(run(t.Context(), args, nil, &out, &errb), &errb); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s\nstdout:\n%s", code, errb.String(), out.String())
	}
	t.Logf("stdout:\n%s", out.String())
	wantCheckStoreOutput(t, out.String(), storecheck.VerdictLockFree)
	if !strings.HasPrefix(out.String(), "Checking "+dir+" under check-store/") {
		t.Errorf("stdout starts %q, want it to name the folder and the scratch prefix", strings.SplitN(out.String(), "\n", 2)[0])
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "other" && !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind in the store's folder: %s", e.Name())
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "other", "file")); err != nil || string(b) != "keep" {
		t.Errorf("other/file: got %q, %v; want it untouched", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
		t.Error("check-store created a cassback store (a config object)")
	}
}

func TestCheckStoreErrors(t *testing.T) {
	requireCheckStore(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		code int
		want string // the start of stderr
	}{
		{[]string{"--backup-base", filepath.Join(dir, "missing"), "check-store"}, 1, "cassback: --backup-base " + filepath.Join(dir, "missing") + ": no such directory"},
		{[]string{"--backup-base", dir, "check-store", "extra"}, 2, "cassback: check-store takes no arguments"},
		{[]string{"--backup-base", dir, "check-store", "--rounds", "0"}, 2, "cassback: --rounds 0: want at least 1"},
		{[]string{"--backup-base", dir, "check-store", "--racers", "1"}, 2, "cassback: --racers 1: want at least 2"},
		{[]string{"--endpoint", "survey", "--survey-path", filepath.Join(dir, "s"), "--meta-dir", dir, "check-store"}, 2, "cassback: check-store checks a real store"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"--log-file", "-", "--cache-dir", filepath.Join(dir, ".cache")}, tt.args...)
			code := exitCode(run(t.Context(), args, nil, &out, &errb), &errb)
			if code != tt.code || !strings.HasPrefix(errb.String(), tt.want) || strings.Count(errb.String(), "\n") != 1 {
				t.Errorf("got exit status %d, stderr:\n%s\nwant %d and one line starting %q", code, errb.String(), tt.code, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Error("check-store created the missing --backup-base folder")
	}
}

// TestCheckStoreS3 runs check-store against versitygw, which makes its
// conditional writes atomic since versity/versitygw#2288 (in v1.8.0).
func TestCheckStoreS3(t *testing.T) {
	requireCheckStore(t)
	server := s3test.Start(t)
	cfg := server.Config(t)
	for _, prefix := range []string{"", "cluster1"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			c := newS3CLI(t, cfg)
			args := []string{"check-store"} // the defaults, as operators run it
			if prefix != "" {
				c.s3 = append(c.s3, "--key-prefix", prefix)
				args = append(args, "--rounds", "3")
			}
			stdout, stderr, log, code := c.run(args...)
			t.Logf("stdout:\n%s", stdout)
			if code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s\nlog:\n%s", code, stderr, log)
			}
			wantCheckStoreOutput(t, stdout, storecheck.VerdictLockFree)
			// Nothing left in the bucket, under the prefix or beside it, not
			// even the S3 store's hidden conditional-write probe (a dot-name
			// that List skips, so look at the server's folder too).
			err := openS3Store(t, cfg).List(t.Context(), "", func(info remote.Info) error {
				t.Errorf("left behind in the bucket: %s", info.Key)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			err = filepath.WalkDir(filepath.Join(server.Dir, cfg.Bucket), func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					t.Errorf("left behind in the bucket's folder: %s", p)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
