package cassback

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cassback/cassback/manifest"
)

// TestRestoreFollowsNoSymlinkOut plants symlinks to a folder outside the
// data directory where restore writes: in place of a table folder, in
// place of a file, and in place of a table folder just after restore made
// it and before it creates the file (the window between the two calls).
// Restore writes nothing outside (the outside file keeps its bytes and
// mode), reports the files it could not restore as failed, and restores
// the others. The target is an os.Root: every path is resolved below the
// data directory, a symlink that leads out of it is an error.
func TestRestoreFollowsNoSymlinkOut(t *testing.T) {
	r := repoOn(t, localStore(t), writerOpts)
	ms := backupSmall(t, r, 93)
	m := ms[0]
	var tb manifest.Table // a table with at least two files
	for _, x := range m.Tables {
		if len(x.Files) >= 2 {
			tb = x
			break
		}
	}
	if len(tb.Files) < 2 {
		t.Fatal("no table with two files in the backup")
	}
	tableDir := filepath.Dir(filepath.FromSlash(tb.Files[0].Path))
	filePath := filepath.FromSlash(tb.Files[1].Path)
	total := 0
	for _, mm := range ms {
		for _, x := range mm.Tables {
			total += len(x.Files)
		}
	}

	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, data, outside string) // before restore
		hook  func(t *testing.T, data, outside string) func(dir string)
		lost  int // files failed
	}{
		{name: "table-folder", lost: len(tb.Files), plant: func(t *testing.T, data, outside string) {
			plantDir(t, filepath.Dir(filepath.Join(data, tableDir)))
			plantLink(t, outside, filepath.Join(data, tableDir))
		}},
		{name: "file", lost: 1, plant: func(t *testing.T, data, outside string) {
			plantDir(t, filepath.Dir(filepath.Join(data, filePath)))
			plantLink(t, filepath.Join(outside, "victim"), filepath.Join(data, filePath))
		}},
		{name: "folder-swapped-after-mkdir", lost: len(tb.Files), hook: func(t *testing.T, data, outside string) func(string) {
			return func(dir string) {
				if dir != tableDir {
					return
				}
				if err := os.Remove(filepath.Join(data, dir)); err != nil {
					t.Error(err)
				}
				plantLink(t, outside, filepath.Join(data, dir))
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			outside := t.TempDir()
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("not cassback's"), 0o640); err != nil {
				t.Fatal(err)
			}
			plantDir(t, data)
			if tt.plant != nil {
				tt.plant(t, data, outside)
			}
			if tt.hook != nil {
				testHookFolderMade = tt.hook(t, data, outside)
				t.Cleanup(func() { testHookFolderMade = func(string) {} })
			}
			res, err := r.Restore(t.Context(), ms, RestoreOptions{DataDir: data, NoChown: true})
			if err == nil {
				t.Errorf("restore through a planted symlink reported no error")
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 || ents[0].Name() != "victim" {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("outside the data directory: %v, want only victim", names)
			}
			if b, _ := os.ReadFile(victim); !bytes.Equal(b, []byte("not cassback's")) {
				t.Errorf("the file outside was overwritten: %q", b)
			}
			if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o640 {
				t.Errorf("the file outside changed mode: %v", fi.Mode().Perm())
			}
			if len(res.Failed) != tt.lost || len(res.Restored) != total-tt.lost {
				t.Errorf("restored %d, failed %d %v; want %d restored, %d failed", len(res.Restored), len(res.Failed), res.Failed, total-tt.lost, tt.lost)
			}
			for _, o := range res.Failed {
				if !slices.ContainsFunc(tb.Files, func(f manifest.File) bool { return f.Path == o.Path }) {
					t.Errorf("failed %s, not a file of the planted table", o.Path)
				}
			}
			// The symlink is still a symlink: nothing replaced it with a
			// folder or file that could be mistaken for the table.
			planted := filepath.Join(data, tableDir)
			if tt.name == "file" {
				planted = filepath.Join(data, filePath)
			}
			if fi, err := os.Lstat(planted); err != nil || fi.Mode().Type() != fs.ModeSymlink {
				t.Errorf("%s: %v, %v; want the planted symlink", planted, fi.Mode().Type(), err)
			}
		})
	}
}

func plantDir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func plantLink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
