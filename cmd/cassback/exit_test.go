package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
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
