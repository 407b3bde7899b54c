package cassback

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/watch"
)

// Hostile and odd data directories (issue 11, items 1, 5 and 9): symbolic
// links and FIFOs named like components, SSTables that are incomplete or
// vanish during a backup.

const hostileTable = "ks/t-0123456789abcdef0123456789abcdef"

var hostileComponents = []string{"Data.db", "Index.db", "Statistics.db", "TOC.txt"}

// writeHostileSSTable writes a complete SSTable hostileTable/prefix below
// data, each component's content naming it.
func writeHostileSSTable(t *testing.T, data, prefix string) {
	t.Helper()
	dir := filepath.Join(data, filepath.FromSlash(hostileTable))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range hostileComponents {
		content := "content of " + prefix + "-" + c
		if c == "TOC.txt" {
			content = strings.Join(hostileComponents, "\n") + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, prefix+"-"+c), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hostilePath is the absolute path of prefix's component c below data.
func hostilePath(data, prefix, c string) string {
	return filepath.Join(data, filepath.FromSlash(hostileTable), prefix+"-"+c)
}

// secret is what must never reach the store: a file outside the data
// directory, as /etc/shadow is.
const secret = "root:$6$very-secret-hash"

func writeSecret(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// warns returns the WARN lines of the log that contain every one of words.
func (l *logBuffer) warns(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.SplitSeq(l.b.String(), "\n") {
		if !strings.Contains(line, "level=WARN") {
			continue
		}
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hostileRepo opens a new local store whose log is captured.
func hostileRepo(t *testing.T) (*Repo, *logBuffer) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	r := gcRepo(t, dir, true)
	storeDirs.Store(r, dir)
	logs := &logBuffer{}
	r.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})
	return r, logs
}

// storeDirs maps a repo of hostileRepo to its store's folder.
var storeDirs sync.Map

// storeHolds reports whether any file of the local store holds s.
func storeHolds(t *testing.T, r *Repo, s string) bool {
	t.Helper()
	found := false
	dir, _ := storeDirs.Load(r)
	filepath.WalkDir(dir.(string), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			found = found || bytes.Contains(b, []byte(s))
		}
		return nil
	})
	return found
}

// backedUp returns the paths of every file in the backups, and the record
// of each.
func backedUp(t *testing.T, r *Repo, names []string) map[string]manifest.File {
	t.Helper()
	out := map[string]manifest.File{}
	for _, n := range names {
		m, err := manifest.Get(t.Context(), r.Store, n, ChunksOf(r.Store))
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range m.Tables {
			for _, f := range tb.Files {
				out[f.Path] = f
			}
		}
	}
	return out
}

// checkLeftOut checks that files hold an SSTable of keep and none of
// leftOut, that nothing from outside the data directory reached the store,
// and that a warning names each of warn.
func checkLeftOut(t *testing.T, r *Repo, logs *logBuffer, files map[string]manifest.File, keep string, leftOut []string, warn ...string) {
	t.Helper()
	if !hasSSTable(files, keep) || slices.ContainsFunc(leftOut, func(p string) bool { return hasSSTable(files, p) }) {
		t.Errorf("backed up %v; want %s and none of %v", mapsKeys(files), keep, leftOut)
	}
	if storeHolds(t, r, secret) {
		t.Errorf("the store holds the secret from outside the data directory")
	}
	for _, w := range warn {
		if len(logs.warns(w)) == 0 {
			t.Errorf("no warning naming %s", w)
		}
	}
}

// hasSSTable reports whether files hold any component of prefix.
func hasSSTable(files map[string]manifest.File, prefix string) bool {
	for p := range files {
		if strings.HasPrefix(filepath.Base(p), prefix+"-") {
			return true
		}
	}
	return false
}

// within runs f and fails the test unless it returns within 20 s; it then
// opens fifo for writing, which frees a reader blocked in open(2).
func within(t *testing.T, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		if fifo != "" {
			if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
		}
		t.Fatalf("blocked for 20 s (FIFO %s)", fifo)
		return nil
	}
}

// Item 1: a component that is a symbolic link to a file outside the data
// directory, and a table directory that is a symbolic link to one, are not
// followed: nothing of theirs is stored, a warning names each, and the
// summary counts them.
func TestBackupSymlinks(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	writeHostileSSTable(t, data, "nb-1-big")
	writeHostileSSTable(t, data, "nb-90-big")
	shadow := writeSecret(t)
	link := hostilePath(data, "nb-90-big", "Data.db")
	os.Remove(link)
	if err := os.Symlink(shadow, link); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "moved")
	writeHostileSSTable(t, outside, "nb-7-big")
	if err := os.WriteFile(hostilePath(outside, "nb-7-big", "Data.db"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, filepath.FromSlash(hostileTable)), filepath.Join(data, "ks", "t2-0123456789abcdef0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	r, logs := hostileRepo(t)
	sum, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	checkLeftOut(t, r, logs, backedUp(t, r, sum.Manifests), "nb-1-big", []string{"nb-90-big", "nb-7-big"},
		"nb-90-big-Data.db", "t2-0123456789abcdef0123456789abcdef")
	checkSkips(t, sum, 2, 1, 0)
}

// Item 1 and 5: a component swapped, after the scan, for a symbolic link
// out of the data directory or for a FIFO is neither followed nor waited
// on: the backup ends, its SSTable is left out with a warning naming the
// file, and the summary counts it.
func TestBackupSwappedAfterScan(t *testing.T) {
	for _, kind := range []string{"symlink", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			writeHostileSSTable(t, data, "nb-1-big")
			writeHostileSSTable(t, data, "nb-2-big")
			shadow := writeSecret(t)
			target := hostilePath(data, "nb-2-big", "Data.db")
			swap := func() {
				os.Remove(target)
				if kind == "fifo" {
					if err := syscall.Mkfifo(target, 0o644); err != nil {
						t.Error(err)
					}
				} else if err := os.Symlink(shadow, target); err != nil {
					t.Error(err)
				}
			}
			r, logs := hostileRepo(t)
			var sum BackupSummary
			err := within(t, target, func() error {
				var err error
				sum, err = r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h", afterScan: swap})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			checkLeftOut(t, r, logs, backedUp(t, r, sum.Manifests), "nb-1-big", []string{"nb-2-big"}, "nb-2-big-Data.db")
			checkSkips(t, sum, 1, 0, 0)
		})
	}
}

// Item 9: an SSTable whose TOC lists a missing component is skipped with a
// warning naming it, and counted.
func TestBackupIncompleteWarns(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	writeHostileSSTable(t, data, "nb-1-big")
	writeHostileSSTable(t, data, "nb-3-big")
	os.Remove(hostilePath(data, "nb-3-big", "Index.db"))
	r, logs := hostileRepo(t)
	sum, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	checkLeftOut(t, r, logs, backedUp(t, r, sum.Manifests), "nb-1-big", []string{"nb-3-big"})
	if len(logs.warns("nb-3-big", "Index.db")) == 0 {
		t.Errorf("no warning naming nb-3-big and its missing Index.db")
	}
	checkSkips(t, sum, 0, 1, 0)
}

// Item 9: compaction during a one-shot backup. An SSTable deleted after it
// was held is backed up whole from its hard links (the manifest is the
// state at the scan); one whose file vanished between the scan and the hold
// is left out with a warning naming it, and counted.
func TestBackupCompactedDuringBackup(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	writeHostileSSTable(t, data, "nb-1-big")
	writeHostileSSTable(t, data, "nb-2-big")
	writeHostileSSTable(t, data, "nb-3-big")
	want := map[string]chunk.ID{}
	for _, c := range hostileComponents {
		b, err := os.ReadFile(hostilePath(data, "nb-2-big", c))
		if err != nil {
			t.Fatal(err)
		}
		want[hostileTable+"/nb-2-big-"+c] = chunk.Sum(b)
	}
	compact := func() {
		for _, c := range hostileComponents {
			os.Remove(hostilePath(data, "nb-2-big", c))
		}
	}
	r, logs := hostileRepo(t)
	sum, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h",
		afterScan: func() { os.Remove(hostilePath(data, "nb-3-big", "Data.db")) }, afterHold: compact})
	if err != nil {
		t.Fatal(err)
	}
	files := backedUp(t, r, sum.Manifests)
	for p, id := range want {
		if f, ok := files[p]; !ok || f.Sum != id {
			t.Errorf("%s: backed up %v with sum %v, want it whole (held before the compaction removed it)", p, ok, f.Sum)
		}
	}
	checkLeftOut(t, r, logs, files, "nb-1-big", []string{"nb-3-big"}, "nb-3-big")
	checkSkips(t, sum, 0, 0, 1)
}

// Item 1 and 5 in continuous mode: a symlinked component is never stored,
// and a held path or data file that is a FIFO fails at once instead of
// blocking the worker past any drain timeout.
func TestContinuousSymlinkAndFIFO(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	writeHostileSSTable(t, data, "nb-1-big")
	writeHostileSSTable(t, data, "nb-90-big")
	link := hostilePath(data, "nb-90-big", "Data.db")
	os.Remove(link)
	if err := os.Symlink(writeSecret(t), link); err != nil {
		t.Fatal(err)
	}
	r, logs := hostileRepo(t)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := r.Continuous(t.Context(), stop, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "n"},
			ManifestInterval: 50 * time.Millisecond, ReportInterval: -1, Watch: watch.Options{Debounce: 20 * time.Millisecond}})
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms, err := Select(t.Context(), r.Store, "n", "", []string{"ks"}, time.Now())
		if err == nil && len(ms) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms, err := Select(t.Context(), r.Store, "n", "", []string{"ks"}, time.Now())
	if err != nil || len(ms) != 1 {
		t.Fatalf("Select = %d manifests, %v", len(ms), err)
	}
	checkLeftOut(t, r, logs, backedUp(t, r, []string{ms[0].Name}), "nb-1-big", []string{"nb-90-big"}, "nb-90-big-Data.db")

	fifo := hostilePath(data, "nb-1-big", "Data.db")
	os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	rel := hostileTable + "/nb-1-big-Data.db"
	c := &continuous{b: &backupRun{r: r}}
	it := &item{ev: watch.Event{Root: data, SSTable: sstable.SSTable{Files: []string{rel}}, Held: map[string]string{rel: fifo}}}
	err = within(t, fifo, func() error { return c.process(t.Context(), nil, it) })
	if !isNotRegular(err) || !strings.Contains(fmt.Sprint(err), "nb-1-big-Data.db") {
		t.Errorf("process of a held FIFO = %v, want not a regular file naming it", err)
	}
	err = within(t, fifo, func() error { _, err := c.restore(t.Context(), nil, manifest.File{Root: data, Path: rel}); return err })
	if !isNotRegular(err) {
		t.Errorf("storing a FIFO again = %v, want not a regular file", err)
	}
}

func isNotRegular(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not a regular file")
}

func mapsKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkSkips checks the summary's counts of skipped entries.
func checkSkips(t *testing.T, sum BackupSummary, notRegular, incomplete, vanished int) {
	t.Helper()
	if sum.NotRegular != notRegular || sum.Incomplete != incomplete || sum.Vanished != vanished {
		t.Errorf("summary counts %d not regular, %d incomplete, %d vanished; want %d, %d, %d",
			sum.NotRegular, sum.Incomplete, sum.Vanished, notRegular, incomplete, vanished)
	}
}

// Without a hold folder (it cannot be made) a one-shot backup reads in
// place, with a warning: a FIFO swapped in is still not waited on, and an
// SSTable compacted away meanwhile is left out, warned of and counted.
func TestBackupInPlace(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	for _, p := range []string{"nb-1-big", "nb-2-big", "nb-3-big"} {
		writeHostileSSTable(t, data, p)
	}
	fifo := hostilePath(data, "nb-2-big", "Data.db")
	r, logs := hostileRepo(t)
	var sum BackupSummary
	err := within(t, fifo, func() error {
		var err error
		sum, err = r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h",
			newHolder: func(string) (*watch.Holder, error) { return nil, errors.New("no hold folder") },
			afterHold: func() {
				os.Remove(fifo)
				if err := syscall.Mkfifo(fifo, 0o644); err != nil {
					t.Error(err)
				}
				os.Remove(hostilePath(data, "nb-3-big", "Index.db"))
			}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	checkLeftOut(t, r, logs, backedUp(t, r, sum.Manifests), "nb-1-big", []string{"nb-2-big", "nb-3-big"})
	for _, words := range [][]string{{"cannot hold", "no hold folder"}, {"nb-2-big-Data.db", "named pipe"}, {"nb-3-big", "vanished"}} {
		if len(logs.warns(words...)) == 0 {
			t.Errorf("no warning with %q", words)
		}
	}
	checkSkips(t, sum, 1, 0, 1)
}

// A one-shot backup holds only the files it must read: on a second backup
// the unchanged files are recorded from their lstat(2), a rewritten
// Statistics.db alone is held, and a compaction removing both SSTables
// after the hold changes nothing in the manifest. No link is left behind.
func TestBackupHoldsOnlyWhatItReads(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	writeHostileSSTable(t, data, "nb-1-big")
	writeHostileSSTable(t, data, "nb-2-big")
	hold := filepath.Join(filepath.Dir(data), ".cassback-hold-data")
	r, _ := hostileRepo(t)
	checkReleased := func(when string) {
		t.Helper()
		ents, err := os.ReadDir(hold)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "oneshot.lock" {
				t.Errorf("%s: %s left in the hold folder", when, e.Name())
			}
		}
	}
	if _, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	checkReleased("first backup")

	stats := hostilePath(data, "nb-2-big", "Statistics.db")
	if err := os.WriteFile(stats+".tmp", []byte("statistics rewritten"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(stats+".tmp", stats); err != nil {
		t.Fatal(err)
	}
	var held []string
	sum, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h", afterHold: func() {
		filepath.WalkDir(hold, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && filepath.Base(p) != "oneshot.lock" {
				held = append(held, filepath.Base(p))
			}
			return nil
		})
		for _, p := range []string{"nb-1-big", "nb-2-big"} {
			for _, c := range hostileComponents {
				os.Remove(hostilePath(data, p, c))
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	checkReleased("second backup")
	if len(held) != 1 || !strings.HasPrefix(held[0], "nb-2-big-Statistics.db.") {
		t.Errorf("held %v, want only the rewritten Statistics.db", held)
	}
	files := backedUp(t, r, sum.Manifests)
	if len(files) != 8 || sum.FilesReused != 7 || sum.BytesRead != int64(len("statistics rewritten")) {
		t.Errorf("second backup: %d files, %d reused, %d bytes read; want 8, 7 and the new Statistics.db", len(files), sum.FilesReused, sum.BytesRead)
	}
	if f := files[hostileTable+"/nb-2-big-Statistics.db"]; f.Sum != chunk.Sum([]byte("statistics rewritten")) {
		t.Errorf("Statistics.db recorded with sum %v, want the rewritten content's", f.Sum)
	}
}
