package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeArgFile writes an argument file of the given lines into dir.
func writeArgFile(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestArgFiles checks that argument files expand as the original's did:
// one argument per line taken whole, blank lines skipped, CRLF accepted,
// files naming files, and the same file twice side by side.
func TestArgFiles(t *testing.T) {
	dir := t.TempDir()
	inner := writeArgFile(t, dir, "inner.conf", "--endpoint=local", "", "  ", "--backup-base=/b c\r")
	outer := writeArgFile(t, dir, "outer.conf", "@"+inner, "list")
	got, err := expandArgFiles([]string{"--log-file", "-", "@" + outer, "@" + inner, "@", "ks1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--log-file", "-", "--endpoint=local", "--backup-base=/b c", "list", "--endpoint=local", "--backup-base=/b c", "@", "ks1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}

	// Up to the limits is fine: a 1 MiB file, 10,000 arguments in all.
	const fileBytes, args = 1 << 20, 10000
	line := strings.Repeat("x", 199) // 200 bytes a line with its newline
	big := writeArgFile(t, dir, "big.conf", repeat(line, fileBytes/200)...)
	if fi, _ := os.Stat(big); fi.Size() > fileBytes {
		t.Fatalf("test file of %d bytes", fi.Size())
	}
	if got, err := expandArgFiles([]string{"@" + big}); err != nil || len(got) != fileBytes/200 {
		t.Errorf("1 MiB argument file: got %d arguments, %v", len(got), err)
	}
	// Every line counts, and so does the command line's "@many.conf".
	many := writeArgFile(t, dir, "many.conf", repeat("a", args-2)...)
	if got, err := expandArgFiles([]string{"@" + many, "list"}); err != nil || len(got) != args-1 {
		t.Errorf("%d arguments: got %d, %v", args, len(got), err)
	}
}

// TestArgFileLimits checks that an argument file that is too large, fans
// out to too many arguments, includes itself, or is not a regular file is a
// one-line usage error naming it, quickly and without reading it all:
// 10^8 arguments once reached 7.6 GB, @/dev/urandom ate all memory, and a
// FIFO blocked in open for ever.
func TestArgFileLimits(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.conf")
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 1<<40); err != nil { // sparse: costs nothing
		t.Fatal(err)
	}
	long := writeArgFile(t, dir, "long.conf", strings.Repeat("x", 1<<20+1))
	lines := writeArgFile(t, dir, "lines.conf", repeat("a", 10000+1)...)
	// Fan-out: 10 lines of @f1, each 10 lines of @f2, ... 10^6 arguments.
	prev := writeArgFile(t, dir, "f6.conf", repeat("x", 10)...)
	for i := 5; i >= 1; i-- {
		prev = writeArgFile(t, dir, "f"+string(rune('0'+i))+".conf", repeat("@"+prev, 10)...)
	}
	fanout := prev
	// Bytes: a 600 KiB file read eight times.
	chunky := writeArgFile(t, dir, "chunky.conf", repeat(strings.Repeat("y", 60<<10), 10)...)
	rereads := writeArgFile(t, dir, "rereads.conf", repeat("@"+chunky, 8)...)
	self := filepath.Join(dir, "self.conf")
	writeArgFile(t, dir, "self.conf", "--endpoint=local", "@"+self)
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	writeArgFile(t, dir, "a.conf", "@"+b)
	writeArgFile(t, dir, "b.conf", "list", "@"+a)
	// A symlink to a file being expanded is the same file.
	link := filepath.Join(dir, "link.conf")
	if err := os.Symlink(filepath.Join(dir, "viaLink.conf"), link); err != nil {
		t.Fatal(err)
	}
	writeArgFile(t, dir, "viaLink.conf", "@"+link)
	deep := writeArgFile(t, dir, "d9.conf", "list")
	for i := 8; i >= 0; i-- {
		deep = writeArgFile(t, dir, "d"+string(rune('0'+i))+".conf", "@"+deep)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// A reader stuck in open (before the fix) is let go when the test ends.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"huge", []string{"@" + huge}, "argument file " + huge + ": larger than 1 MiB"},
		{"long line", []string{"@" + long}, "argument file " + long + ": larger than 1 MiB"},
		{"many lines", []string{"@" + lines}, "argument file " + lines + ": more than 10000 arguments in all"},
		{"fan-out", []string{"@" + fanout}, "argument file " + filepath.Join(dir, "f6.conf") + ": more than 10000 arguments in all"},
		{"rereads", []string{"@" + rereads}, "argument file " + chunky + ": more than 4 MiB of argument files in all"},
		{"self", []string{"@" + self}, "argument file " + self + ": includes itself"},
		{"cycle", []string{"@" + a}, "argument file " + a + ": includes itself"},
		{"symlink cycle", []string{"@" + link}, "argument file " + link + ": includes itself"},
		{"deep", []string{"@" + deep}, "argument file " + filepath.Join(dir, "d8.conf") + ": nested too deeply"},
		{"fifo", []string{"@" + fifo}, "argument file " + fifo + ": not a regular file (named pipe)"},
		{"directory", []string{"@" + dir}, "argument file " + dir + ": not a regular file (directory)"},
		{"dev-null", []string{"@/dev/null"}, "argument file /dev/null: not a regular file (character device)"},
		{"dev-zero", []string{"@/dev/zero"}, "argument file /dev/zero: not a regular file (character device)"},
		{"dev-urandom", []string{"@/dev/urandom"}, "argument file /dev/urandom: not a regular file (character device)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			done := make(chan struct{})
			var (
				code   int
				stderr bytes.Buffer
			)
			go func() {
				defer close(done)
				args := append([]string{"--log-file", "-", "--cache-dir", filepath.Join(dir, "cache")}, tt.args...)
				code = exitCode(run(ctx, append(args, "list"), nil, &bytes.Buffer{}, &stderr), &stderr)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("still expanding after 10s")
			}
			if got := strings.TrimSuffix(stderr.String(), "\n"); code != 2 || got != "cassback: "+tt.want {
				t.Errorf("got exit status %d, stderr:\n%s\nwant 2 and %q", code, got, "cassback: "+tt.want)
			}
		})
	}
}
