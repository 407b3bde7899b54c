package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// FuzzExpandArgFiles expands hostile argument files: two files that may
// name each other, themselves, a FIFO, a directory or missing files. It
// must never panic or hang; a success expands every @file (no argument
// left that names one) within the limits; a failure is one usage error.
func FuzzExpandArgFiles(f *testing.F) {
	f.Add("@a", []byte("--endpoint=local\n@b\nlist\n"), []byte("--backup-base=/x\r\n\n  \n"))
	f.Add("@a\n@a", []byte("@b\n@b\n@b\n"), []byte("@fifo\n"))
	f.Add("@a", []byte("@a\n"), []byte{})
	f.Add("@b", []byte("x"), []byte("@a\n@d\n@missing\n@\n"))
	f.Add("list\n--\n@a", []byte(strings.Repeat("@b\n", 100)), []byte(strings.Repeat("y\n", 200)))
	dir := f.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		f.Fatal(err)
	}
	// rooted makes every @name of s name a file in dir, so the inputs never
	// reach outside it; names with '/' or '.' are left as literal words.
	rooted := func(s string) []string {
		var out []string
		for line := range strings.SplitSeq(s, "\n") {
			line = strings.TrimRight(line, "\r")
			if len(line) >= 2 && line[0] == '@' {
				if strings.ContainsAny(line, "/.") {
					line = "word" + line
				} else {
					line = "@" + filepath.Join(dir, line[1:])
				}
			}
			out = append(out, line)
		}
		return out
	}
	f.Fuzz(func(t *testing.T, args string, a, b []byte) {
		for name, content := range map[string][]byte{"a": a, "b": b} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(rooted(string(content)), "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := expandArgFiles(rooted(args))
		if err != nil {
			if !isUsage(err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("expand: %q is not a one-line usage error", err)
			}
			return
		}
		if len(out) > maxArgs {
			t.Fatalf("expanded to %d arguments, more than %d", len(out), maxArgs)
		}
		for _, o := range out {
			if len(o) >= 2 && o[0] == '@' {
				t.Fatalf("argument %q left unexpanded", o)
			}
		}
	})
}
