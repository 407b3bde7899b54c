package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/nodegen"
)

// TestExitCodes checks the exit status of usage errors (2), failures (1)
// and success (0), and that each error is a single line (a bare
// "cassback" also prints the usage).
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"help"}, 0},
		{[]string{"help", "backup"}, 0},
		{[]string{"backup", "-h"}, 0},
		{[]string{}, 2},
		{[]string{"nosuchcommand"}, 2},
		{[]string{"--nosuchflag", "list"}, 2},
		{[]string{"list", "--nosuchflag"}, 2},
		{[]string{"help", "nosuchcommand"}, 2},
		{[]string{"--log-level", "LOUD", "list"}, 2},
		{[]string{"--endpoint", "ftp", "list"}, 2},
		{[]string{"--backup-base", dir, "backup", "--ignore-changes", "--threads", "0"}, 2},
		{[]string{"--backup-base", dir, "restore", "--data-dir", dir, "--at", "noon"}, 2},
		{[]string{"--backup-base", dir, "show", "not-a-backup-name"}, 2},
		{[]string{"--backup-base", filepath.Join(dir, "missing"), "list"}, 1},
		{[]string{"--backup-base", dir, "list", "--host", "h"}, 1}, // empty folder: not a store
		{[]string{"--backup-base", dir, "backup", "--ignore-changes", "--cassandra_data_dir", filepath.Join(dir, "nodata")}, 1},
		{[]string{"--endpoint", "s3", "list"}, 2},       // no --bucket-name
		{[]string{"--backup-base", dir, "validate"}, 1}, // an empty folder is not a store
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"--log-file", "-", "--cache-dir", filepath.Join(dir, ".cache")}, tc.args...)
			got := exitCode(run(context.Background(), args, nil, &out, &errb), &errb)
			if got != tc.want {
				t.Errorf("exit status %d, want %d; stderr:\n%s", got, tc.want, errb.String())
			}
			if got != 0 && len(tc.args) > 0 && strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Errorf("error is not one line:\n%s", errb.String())
			}
		})
	}
}

// A store removed and created again in the same folder: the backup whose
// cache held the old store's config starts again with the new one, once,
// and succeeds.
func TestBackupStoreCreatedAgain(t *testing.T) {
	data, store, cache := filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "store"), t.TempDir()
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 7, TotalBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	backup := func() string {
		t.Helper()
		_, stderr, code := cli(t, cache, "--backup-base", store, "backup", "--ignore-changes", "--host", "h1", "--cassandra-data-dir", data)
		if code != 0 {
			t.Fatalf("backup: exit %d: %s", code, stderr)
		}
		return stderr
	}
	for range 3 { // the third takes the config from the cache
		backup()
	}
	if err := os.RemoveAll(store); err != nil {
		t.Fatal(err)
	}
	if log := backup(); !strings.Contains(log, "config changed since it was cached") {
		t.Errorf("the backup after the store was created again did not start again: %s", log)
	}
	out, stderr, code := cli(t, cache, "--backup-base", store, "list", "--host", "h1")
	if code != 0 || !strings.Contains(out, "h1") {
		t.Fatalf("list after the store was created again: exit %d: %s%s", code, out, stderr)
	}
}
