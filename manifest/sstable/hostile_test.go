package sstable

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A symbolic link named like a component, listed by its TOC, is never taken
// for a file: its SSTable is skipped as incomplete, naming the link, and the
// link itself is skipped as not a regular file. A link that is an extra
// component (not in the TOC) is left out of its SSTable.
func TestScanSymlinkedComponent(t *testing.T) {
	root := tree(t, merge(sstable(td, "nb-1-big"), sstable(td, "nb-90-big")))
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, filepath.FromSlash(td))
	data := filepath.Join(dir, "nb-90-big-Data.db")
	os.Remove(data)
	if err := os.Symlink(secret, data); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "nb-1-big-SAI+aa+t+idx+KDTree.db")); err != nil {
		t.Fatal(err)
	}
	res, err := Scan(root, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := found(res); !slices.Equal(got, []string{td + "/nb-1-big"}) {
		t.Errorf("found %v, want only nb-1-big", got)
	}
	for _, s := range res.SSTables {
		if len(s.Files) != 8 {
			t.Errorf("%s: files %v, want the 8 regular ones", s.Prefix, s.Files)
		}
	}
	sk := skipOf(res, td+"/nb-90-big")
	if sk.Reason != SkipIncomplete || !strings.Contains(sk.Detail, "Data.db") || !strings.Contains(sk.Detail, "symbolic link") {
		t.Errorf("nb-90-big skipped as %+v, want incomplete naming Data.db as a symbolic link", sk)
	}
	if r := skipped(res, td+"/nb-90-big-Data.db"); r != SkipNotRegular {
		t.Errorf("the link itself: skip %q, want %q", r, SkipNotRegular)
	}
	if n := res.SkipCounts[SkipNotRegular]; n != 2 {
		t.Errorf("SkipCounts[not regular] = %d, want 2", n)
	}
}

// FIFOs, sockets and devices are never opened by a scan; a TOC or
// transaction log swapped for a FIFO after the listing does not block.
func TestScanFIFO(t *testing.T) {
	root := tree(t, sstable(td, "nb-1-big"))
	dir := filepath.Join(root, filepath.FromSlash(td))
	toc := filepath.Join(dir, "nb-1-big-TOC.txt")
	os.Remove(toc)
	if err := syscall.Mkfifo(toc, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Scan(root, ScanOptions{})
	if err != nil || len(res.SSTables) != 0 || skipped(res, td+"/nb-1-big-TOC.txt") != SkipNotRegular {
		t.Errorf("Scan with a FIFO TOC = %v, %v; want it skipped as not regular", found(res), err)
	}
	log := filepath.Join(dir, "nb_txn_flush_5a7fd8e0-1b2c-11ef-8f3e-0123456789ab.log")
	if err := syscall.Mkfifo(log, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func() error{
		"TOC":             func() error { _, err := readTOC(toc); return err },
		"transaction log": func() error { _, err := readLimited(log, maxTxnLog); return err },
	} {
		if err := noBlock(t, toc, read); err == nil {
			t.Errorf("reading a FIFO as a %s: no error", name)
		} else if !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("reading a FIFO as a %s: %v, want not a regular file", name, err)
		}
	}
}

// noBlock runs f and fails the test if it does not return within 10 s;
// fifo is opened for writing then, which unblocks a reader stuck in open.
func noBlock(t *testing.T, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatalf("blocked on the FIFO %s for 10 s", fifo)
		return nil
	}
}

func skipOf(res ScanResult, path string) Skip {
	for _, s := range res.Skipped {
		if s.Path == path {
			return s
		}
	}
	return Skip{}
}

// Open refuses, without blocking, a symbolic link at any level below the
// data directory, a FIFO and a device; it opens regular files below a
// data directory that is itself a link.
func TestOpen(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "data")
	writeFile(t, root, td+"/nb-1-big-Data.db", "data")
	writeFile(t, base, "outside/t/nb-1-big-Data.db", "secret")
	dir := filepath.Join(root, filepath.FromSlash(td))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(base, "outside", "t", "nb-1-big-Data.db"), filepath.Join(dir, "nb-2-big-Data.db")))
	must(os.Symlink(filepath.Join(base, "outside", "t"), filepath.Join(root, "ks", "t2")))
	must(syscall.Mkfifo(filepath.Join(dir, "nb-3-big-Data.db"), 0o644))
	must(os.Symlink(root, filepath.Join(base, "link")))
	for _, tc := range []struct {
		root, rel, want string // want: content, or a word of the error
	}{
		{root, td + "/nb-1-big-Data.db", "data"},
		{filepath.Join(base, "link"), td + "/nb-1-big-Data.db", "data"},
		{root, td + "/nb-2-big-Data.db", "symbolic link"},
		{root, "ks/t2/nb-1-big-Data.db", "symbolic link"},
		{root, td + "/nb-3-big-Data.db", "named pipe"},
		{root, td, "directory"},
		{"/dev", "null", "device"},
		{root, td + "/nb-9-big-Data.db", "no such file"},
	} {
		var got string
		err := noBlock(t, filepath.Join(dir, "nb-3-big-Data.db"), func() error {
			f, err := Open(tc.root, tc.rel)
			if err != nil {
				return err
			}
			defer f.Close()
			b, err := io.ReadAll(f)
			got = string(b)
			return err
		})
		switch {
		case err == nil && got != tc.want:
			t.Errorf("Open(%s) read %q, want %q", tc.rel, got, tc.want)
		case err != nil && !strings.Contains(err.Error(), tc.want):
			t.Errorf("Open(%s) = %v, want an error about %q", tc.rel, err, tc.want)
		case err != nil && tc.want != "no such file" && (!errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), filepath.Join(tc.root, tc.rel[:strings.IndexByte(tc.rel+"/", '/')]))):
			t.Errorf("Open(%s) = %v, want ErrNotRegular naming the path", tc.rel, err)
		case err != nil && tc.want == "no such file" && !errors.Is(err, fs.ErrNotExist):
			t.Errorf("Open(%s) = %v, want fs.ErrNotExist", tc.rel, err)
		}
	}
}
