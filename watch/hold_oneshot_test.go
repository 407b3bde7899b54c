package watch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cassback/cassback/manifest/sstable"
)

// NewHolder's private folders: files held stay readable after they are
// deleted; symbolic links, FIFOs and symlinked directories are refused;
// a vanished file is not-found; a live holder's folder survives another's
// start, a dead one's is removed; Close removes everything.
func TestHolder(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "data")
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	writeSSTable(t, tdir, "nb-1-big")
	files := []string{"ks/t-" + tableID + "/nb-1-big-Data.db", "ks/t-" + tableID + "/nb-1-big-TOC.txt"}
	stale := filepath.Join(base, ".cassback-hold-data", oneShotPrefix+"dead", "ks")
	writeFiles(t, stale, "nb-0-big-Data.db.1")

	h1, err := NewHolder(root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale folder of a dead holder: %v, want removed", err)
	}
	held, err := h1.Hold(files)
	if err != nil {
		t.Fatal(err)
	}
	want := readFile(t, filepath.Join(tdir, "nb-1-big-Data.db"))
	os.Remove(filepath.Join(tdir, "nb-1-big-Data.db"))
	if got := readFile(t, held[files[0]]); got != want {
		t.Errorf("held Data.db reads %q, want %q", got, want)
	}

	h2, err := NewHolder(root, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(held[files[0]]); err != nil {
		t.Errorf("a second holder removed the first's links: %v", err)
	}
	if _, err := h2.Hold(files); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nb-1-big-Data.db") {
		t.Errorf("Hold of a vanished file = %v, want not-found naming it", err)
	}
	writeFiles(t, filepath.Join(base, "outside"), "nb-1-big-Data.db")
	for name, make := range map[string]func(p string) error{
		"symlink": func(p string) error { return os.Symlink(filepath.Join(base, "outside", "nb-1-big-Data.db"), p) },
		"fifo":    func(p string) error { return syscall.Mkfifo(p, 0o644) },
	} {
		os.Remove(filepath.Join(tdir, "nb-1-big-Data.db"))
		if err := make(filepath.Join(tdir, "nb-1-big-Data.db")); err != nil {
			t.Fatal(err)
		}
		if _, err := h2.Hold(files); !errors.Is(err, sstable.ErrNotRegular) || !strings.Contains(err.Error(), "nb-1-big-Data.db") {
			t.Errorf("Hold of a %s = %v, want ErrNotRegular naming it", name, err)
		}
	}
	if err := os.Symlink(filepath.Join(base, "outside"), filepath.Join(root, "ks", "t2-"+tableID)); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Hold([]string{"ks/t2-" + tableID + "/nb-1-big-Data.db"}); !errors.Is(err, sstable.ErrNotRegular) {
		t.Errorf("Hold through a symlinked table directory = %v, want ErrNotRegular", err)
	}
	if got := heldFiles(t, h2.dir); len(got) != 0 {
		t.Errorf("failed holds left %v", got)
	}
	if err := h2.Release(held); err == nil {
		t.Errorf("Release of another holder's links succeeded")
	}
	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h1.Release(held); err != nil {
		t.Fatal(err)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, filepath.Join(base, ".cassback-hold-data")); len(got) != 1 || got[0] != oneShotLock {
		t.Errorf("hold folder after Close: %v, want only the lock file", got)
	}
	if _, err := NewHolder(root, filepath.Join(root, "hold")); err == nil {
		t.Errorf("NewHolder with a hold folder inside the data directory succeeded")
	}
}
