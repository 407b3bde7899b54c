package watch

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// secretFile writes a file outside every data directory, as /etc/shadow is.
func secretFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(p, []byte("root:secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkHeldRegular fails if an event holds anything but regular files.
func checkHeldRegular(t *testing.T, evs []Event) {
	t.Helper()
	for _, ev := range evs {
		for rel, l := range ev.Held {
			fi, err := os.Lstat(l)
			if err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s %s holds %s as %v (%v), want a regular file", ev.Kind, ev.SSTable.Prefix, rel, fi.Mode().Type(), err)
			}
		}
	}
}

// A component that is a symbolic link (nb-90-big-Data.db -> /etc/shadow,
// listed in its TOC) is never followed: its SSTable is not reported, and
// the watcher warns, naming the link.
func TestSymlinkedComponent(t *testing.T) {
	root := t.TempDir()
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	writeSSTable(t, tdir, "nb-1-big")
	writeSSTable(t, tdir, "nb-90-big")
	data := filepath.Join(tdir, "nb-90-big-Data.db")
	os.Remove(data)
	if err := os.Symlink(secretFile(t), data); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, root, harnessOpt{})
	evs := h.sync()
	if d := describe(evs); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/nb-1-big", "synced"}) {
		t.Errorf("events %v, want only nb-1-big ready", d)
	}
	checkHeldRegular(t, evs)
	if logs := h.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "nb-90-big-Data.db") {
		t.Errorf("no warning naming the link:\n%s", logs)
	}
	// A reported SSTable whose Data.db becomes a link is gone.
	for _, ev := range evs {
		h.w.Release(ev)
	}
	data = filepath.Join(tdir, "nb-1-big-Data.db")
	os.Remove(data)
	if err := os.Symlink(secretFile(t), data); err != nil {
		t.Fatal(err)
	}
	if d := describe(h.step()); !slices.Equal(d, []string{"gone ks/t-" + tableID + "/nb-1-big"}) {
		t.Errorf("after Data.db became a link: events %v, want nb-1-big gone", d)
	}
}

// A symlinked table or keyspace directory is neither watched nor walked:
// nothing outside the data directory is reported, and the watcher warns.
func TestSymlinkedDirectory(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "t2-"+tableID)
	writeSSTable(t, outside, "nb-7-big")
	writeSSTable(t, filepath.Join(root, "ks", "t-"+tableID), "nb-1-big")
	if err := os.Symlink(outside, filepath.Join(root, "ks", "t2-"+tableID)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(root, "ks2")); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, root, harnessOpt{})
	evs := h.sync()
	if d := describe(evs); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/nb-1-big", "synced"}) {
		t.Errorf("events %v, want only nb-1-big ready", d)
	}
	for _, d := range h.src.watchedDirs() {
		if strings.Contains(d, "t2-") || strings.Contains(d, "ks2") {
			t.Errorf("watches %s, a symbolic link", d)
		}
	}
	logs := h.logs.String()
	for _, name := range []string{"t2-" + tableID, "ks2"} {
		if !strings.Contains(logs, name) {
			t.Errorf("no warning naming %s:\n%s", name, logs)
		}
	}
}

// A component swapped for a FIFO, or a symbolic link, between the check and
// the hard link is caught when it is held: no event holds it, and the
// watcher goes on.
func TestSwappedBeforeHold(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink"} {
		t.Run(kind, func(t *testing.T) {
			root := t.TempDir()
			tdir := filepath.Join(root, "ks", "t-"+tableID)
			writeSSTable(t, tdir, "nb-1-big")
			writeSSTable(t, tdir, "nb-2-big")
			secret := secretFile(t)
			h := newHarness(t, root, harnessOpt{before: func(h *harness) {
				h.w.roots[0].h.link = func(dirfd int, name, dst string) error {
					if name == "nb-2-big-Data.db" {
						o := filepath.Join(tdir, name)
						os.Remove(o)
						if kind == "fifo" {
							syscall.Mkfifo(o, 0o644)
						} else {
							os.Symlink(secret, o)
						}
					}
					return linkat(dirfd, name, dst)
				}
			}})
			evs := h.sync()
			checkHeldRegular(t, evs)
			if d := describe(evs); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/nb-1-big", "synced"}) {
				t.Errorf("events %v, want only nb-1-big ready", d)
			}
			if logs := h.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "nb-2-big-Data.db") {
				t.Errorf("no warning naming the swapped file:\n%s", logs)
			}
		})
	}
}
