package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"ok", []string{"-dir", dir, "-size", "2MiB", "-version", "da", "-snapshots", "-backups", "-inflight"}, 0, "version da", ""},
		{"not empty", []string{"-dir", dir, "-size", "1MiB"}, 1, "", "is not empty"},
		{"force", []string{"-dir", nonEmpty, "-size", "512KiB", "-force"}, 0, "keyspaces", ""},
		{"no dir", []string{"-size", "1MB"}, 2, "", "-dir is required"},
		{"bad size", []string{"-dir", dir, "-size", "lots"}, 2, "", "bad -size"},
		{"bad flag", []string{"-dir", dir, "-sise", "1MB"}, 2, "", "flag provided but not defined"},
		{"extra arg", []string{"-dir", dir, "more"}, 2, "", "unexpected argument"},
		{"bad version", []string{"-dir", filepath.Join(t.TempDir(), "v"), "-version", "zz"}, 1, "", "unsupported SSTable version"},
		{"help", []string{"-h"}, 0, "", "usage: gennode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := exitCode(run(c.args, &stdout, &stderr), &stderr)
			if code != c.code || !strings.Contains(stdout.String(), c.stdout) || !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("gennode %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					c.args, code, stdout.String(), stderr.String(), c.code, c.stdout, c.stderr)
			}
			if c.code != 0 && strings.Count(stderr.String(), "gennode:") != 1 {
				t.Errorf("want one error line, got %q", stderr.String())
			}
			if c.code == 0 && stdout.Len() > 0 && strings.Count(stdout.String(), "\n") != 1 {
				t.Errorf("want one summary line, got %q", stdout.String())
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"200MB": 200e6, "1GiB": 1 << 30, "512K": 512 << 10, "1.5MiB": 3 << 19, "4096": 4096, "10B": 10,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MB", "MB", "1XB", "0.5"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}
