package watch

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/manifest/sstable"
)

const txnUUID = "5a7f0c1e-0000-11ef-8000-0123456789ab"

// A 3.0+ flush: ADD in the transaction log, components, TOC.txt, COMMIT.
// Ready comes only after the COMMIT and the quiet period, once.
func TestFlushWithTransactionLog(t *testing.T) {
	root := t.TempDir()
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	writeFiles(t, tdir)
	h := newHarness(t, root, harnessOpt{})
	if got := describe(h.sync()); !slices.Equal(got, []string{"synced"}) {
		t.Fatalf("start-up events = %v, want [synced]", got)
	}
	if !h.src.watched(tdir) {
		t.Fatalf("table directory not watched; watched: %v", h.src.watchedDirs())
	}

	log := filepath.Join(tdir, "nb_txn_flush_"+txnUUID+".log")
	add := "ADD:[" + filepath.Join(tdir, "nb-1-big") + ",0,8][2345]\n"
	if err := os.WriteFile(log, []byte(add), 0o644); err != nil {
		t.Fatal(err)
	}
	var comps []string
	for _, c := range modernComponents {
		comps = append(comps, "nb-1-big-"+c)
	}
	writeFiles(t, tdir, comps...)
	if got := h.step(); len(got) != 0 {
		t.Errorf("without TOC.txt: events %v, want none", describe(got))
	}
	writeTOC(t, tdir, "nb-1-big")
	if got := h.step(); len(got) != 0 {
		t.Errorf("before COMMIT: events %v, want none", describe(got))
	}

	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("COMMIT:[,0,0][1]\n")
	f.Close()
	h.src.pump()
	h.sync()
	h.clk.Advance(testDebounce / 2)
	if got := h.sync(); len(got) != 0 {
		t.Errorf("half the debounce period after COMMIT: events %v, want none", describe(got))
	}
	h.clk.Advance(testDebounce / 2)
	got := h.sync()
	if d := describe(got); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/nb-1-big"}) {
		t.Fatalf("after COMMIT: events %v, want one ready", d)
	}
	ev := got[0]
	if len(ev.SSTable.Files) != 8 || len(ev.Held) != 8 {
		t.Errorf("files %v, held %d, want 8 each", ev.SSTable.Files, len(ev.Held))
	}
	if ev.SSTable.Keyspace != "ks" || ev.SSTable.Table != "t" || ev.SSTable.TableID != tableID || ev.SSTable.Version != "nb" || ev.SSTable.Gen != "1" {
		t.Errorf("sstable = %+v", ev.SSTable)
	}
	if ev.Root != root || !ev.Time.Equal(h.clk.Now()) {
		t.Errorf("root %q time %v, want %q %v", ev.Root, ev.Time, root, h.clk.Now())
	}
	for rel, held := range ev.Held {
		if got, want := readFile(t, held), readFile(t, h.abs(rel)); got != want {
			t.Errorf("held %s = %q, want %q", rel, got, want)
		}
		if within(held, root) {
			t.Errorf("held link %s inside the data directory", held)
		}
	}

	// The log goes away after the commit: nothing new.
	os.Remove(log)
	if got := h.step(); len(got) != 0 {
		t.Errorf("after the log is removed: events %v, want none", describe(got))
	}
}

// 2.x flushes write tmp- names and rename them, Data.db and then
// Summary.db last; only the final rename completes the SSTable.
func TestTmpRenameFlush(t *testing.T) {
	for _, tc := range []struct{ name, tmp, final string }{
		{"2.2", "tmp-la-1-big", "la-1-big"},
		{"2.1", "ks-t-tmp-ka-1", "ks-t-ka-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tdir := filepath.Join(root, "ks", "t-"+tableID)
			writeFiles(t, tdir)
			h := newHarness(t, root, harnessOpt{})
			h.sync()
			writeSSTable(t, tdir, tc.tmp)
			if got := h.step(); len(got) != 0 {
				t.Fatalf("tmp files: events %v, want none", describe(got))
			}
			rename := func(comp string) {
				if err := os.Rename(filepath.Join(tdir, tc.tmp+"-"+comp), filepath.Join(tdir, tc.final+"-"+comp)); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range append(slices.Clone(modernComponents), "TOC.txt") {
				if c != "Data.db" && c != "Summary.db" {
					rename(c)
				}
			}
			if got := h.step(); len(got) != 0 {
				t.Errorf("without Data.db: events %v, want none", describe(got))
			}
			rename("Data.db")
			if got := h.step(); len(got) != 0 {
				t.Errorf("without Summary.db: events %v, want none", describe(got))
			}
			rename("Summary.db")
			got := h.step()
			if d := describe(got); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/" + tc.final}) {
				t.Fatalf("events %v, want one ready", d)
			}
		})
	}
}

// A component rewritten via .tmp and rename is reported again with fresh
// links; the earlier event's link keeps the old bytes. A file deleted after
// Ready stays readable through the link, and the SSTable is Gone.
func TestRewriteAndDelete(t *testing.T) {
	root := t.TempDir()
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	writeSSTable(t, tdir, "nb-1-big")
	h := newHarness(t, root, harnessOpt{})
	evs := h.sync()
	if d := describe(evs); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/nb-1-big", "synced"}) {
		t.Fatalf("start-up events = %v", d)
	}
	first := evs[0]
	stats := "ks/t-" + tableID + "/nb-1-big-Statistics.db"

	// A .tmp alone changes nothing.
	tmp := h.abs(stats) + ".tmp"
	if err := os.WriteFile(tmp, []byte("new statistics"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := h.step(); len(got) != 0 {
		t.Errorf("Statistics.db.tmp written: events %v, want none", describe(got))
	}
	if err := os.Rename(tmp, h.abs(stats)); err != nil {
		t.Fatal(err)
	}
	evs = h.step()
	if d := describe(evs); !slices.Equal(d, []string{"rewritten ks/t-" + tableID + "/nb-1-big"}) {
		t.Fatalf("after rename: events %v, want one rewritten", d)
	}
	rw := evs[0]
	if !slices.Equal(rw.Changed, []string{stats}) {
		t.Errorf("changed = %v, want [%s]", rw.Changed, stats)
	}
	if got := readFile(t, rw.Held[stats]); got != "new statistics" {
		t.Errorf("rewritten hold has %q", got)
	}
	if got := readFile(t, first.Held[stats]); got != "content of nb-1-big-Statistics.db" {
		t.Errorf("first hold now has %q, want the old bytes", got)
	}
	if len(rw.Held) != 8 {
		t.Errorf("rewritten holds %d files, want all 8", len(rw.Held))
	}

	// An in-place rewrite (new size, same inode) counts too.
	if err := os.WriteFile(h.abs(stats), []byte("rewritten in place, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := describe(h.step()); !slices.Equal(d, []string{"rewritten ks/t-" + tableID + "/nb-1-big"}) {
		t.Errorf("in-place rewrite: events %v, want one rewritten", d)
	}

	// Compaction deletes the files: Gone, and the held bytes stay.
	data := "ks/t-" + tableID + "/nb-1-big-Data.db"
	for _, c := range append(slices.Clone(modernComponents), "TOC.txt") {
		os.Remove(filepath.Join(tdir, "nb-1-big-"+c))
	}
	evs = h.step()
	if d := describe(evs); !slices.Equal(d, []string{"gone ks/t-" + tableID + "/nb-1-big"}) {
		t.Fatalf("after delete: events %v, want one gone", d)
	}
	if evs[0].Held != nil {
		t.Errorf("gone event holds %v", evs[0].Held)
	}
	if got := readFile(t, first.Held[data]); got != "content of nb-1-big-Data.db" {
		t.Errorf("held Data.db after delete = %q", got)
	}
	if err := h.w.Release(first); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first.Held[data]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Release, held link: %v", err)
	}
	if err := h.w.Release(first); err != nil {
		t.Errorf("second Release: %v", err)
	}
}

// Keyspaces and tables created while running are watched and their
// SSTables found, including files written before the watch was added;
// dropping them reports every SSTable Gone and forgets their watches.
func TestDirectoriesComeAndGo(t *testing.T) {
	root := t.TempDir()
	h := newHarness(t, root, harnessOpt{})
	h.sync()

	// mkdir -p ks/t-<id> and the SSTable, all before the watcher hears of ks.
	t1 := filepath.Join(root, "ks", "t1-"+tableID)
	writeSSTable(t, t1, "nb-1-big")
	writeSSTable(t, filepath.Join(t1, ".t1_idx"), "nb-1-big")
	evs := h.step()
	if got, want := keys(evs), []string{"ks/t1-" + tableID + "/.t1_idx/nb-1-big", "ks/t1-" + tableID + "/nb-1-big"}; !slices.Equal(got, want) || len(kinds(evs, Ready)) != 2 {
		t.Fatalf("new keyspace: events %v, want ready %v", describe(evs), want)
	}
	for _, d := range []string{filepath.Join(root, "ks"), t1, filepath.Join(t1, ".t1_idx")} {
		if !h.src.watched(d) {
			t.Errorf("%s not watched", d)
		}
	}
	if idx := evs[1].SSTable; idx.Index != "t1_idx" || idx.Table != "t1" || idx.Dir != "ks/t1-"+tableID+"/.t1_idx" {
		t.Errorf("index sstable = %+v", idx)
	}

	// A second table in the watched keyspace.
	t2 := filepath.Join(root, "ks", "t2")
	writeSSTable(t, t2, "ks-t2-jb-3")
	if d := describe(h.step()); !slices.Equal(d, []string{"ready ks/t2/ks-t2-jb-3"}) {
		t.Fatalf("new legacy table: events %v", d)
	}

	// DROP TABLE t1.
	if err := os.RemoveAll(t1); err != nil {
		t.Fatal(err)
	}
	evs = h.step()
	if got := keys(kinds(evs, Gone)); len(got) != 2 || len(evs) != 2 {
		t.Fatalf("drop table: events %v, want two gone", describe(evs))
	}
	if h.src.watched(t1) || h.w.loop.dirs[t1] != nil {
		t.Errorf("dropped table still known")
	}

	// DROP KEYSPACE.
	if err := os.RemoveAll(filepath.Join(root, "ks")); err != nil {
		t.Fatal(err)
	}
	if d := describe(h.step()); !slices.Equal(d, []string{"gone ks/t2/ks-t2-jb-3"}) {
		t.Fatalf("drop keyspace: events %v", d)
	}
	if got := h.src.watchedDirs(); len(got) != 1 || got[0] != root {
		t.Errorf("watched after drop = %v, want only the root", got)
	}
	if len(h.w.loop.dirs) != 1 {
		t.Errorf("known directories after drop: %d, want 1", len(h.w.loop.dirs))
	}
}

// snapshots/, backups/ and tmp/ are never watched and produce nothing;
// system is excluded unless asked for, and so are excluded keyspaces.
func TestIgnoredTrees(t *testing.T) {
	root := t.TempDir()
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	writeSSTable(t, tdir, "nb-1-big")
	writeSSTable(t, filepath.Join(root, "system", "local-"+tableID), "nb-1-big")
	writeSSTable(t, filepath.Join(root, "system_schema", "tables-"+tableID), "nb-1-big")
	writeSSTable(t, filepath.Join(root, "skipme", "t-"+tableID), "nb-1-big")
	h := newHarness(t, root, harnessOpt{opts: func(o *Options) { o.ExcludeKeyspaces = []string{"skipme"} }})
	want := []string{"ks/t-" + tableID + "/nb-1-big", "system_schema/tables-" + tableID + "/nb-1-big"}
	if got := keys(kinds(h.sync(), Ready)); !slices.Equal(got, want) {
		t.Fatalf("ready at start-up = %v, want %v", got, want)
	}

	for _, sub := range []string{"snapshots/1700000000000", "backups", "tmp", "snapshots/x/.idx"} {
		writeSSTable(t, filepath.Join(tdir, sub), "nb-2-big")
	}
	writeSSTable(t, filepath.Join(root, "system", "local-"+tableID), "nb-2-big")
	writeSSTable(t, filepath.Join(root, "skipme", "t-"+tableID), "nb-2-big")
	if got := h.step(); len(got) != 0 {
		t.Errorf("events %v, want none", describe(got))
	}
	h.clk.Advance(time.Hour) // a full rescan agrees
	if d := describe(h.sync()); !slices.Equal(d, []string{"synced"}) {
		t.Errorf("rescan: events %v, want [synced]", d)
	}
	for _, d := range h.src.watchedDirs() {
		if strings.Contains(d, "snapshots") || strings.Contains(d, "backups") || strings.HasSuffix(d, "tmp") ||
			strings.Contains(d, "skipme") || strings.Contains(d, string(filepath.Separator)+"system"+string(filepath.Separator)) || strings.HasSuffix(d, "system") {
			t.Errorf("watching %s", d)
		}
	}

	t.Run("IncludeSystem", func(t *testing.T) {
		h := newHarness(t, root, harnessOpt{opts: func(o *Options) { o.IncludeSystem = true }})
		got := keys(kinds(h.sync(), Ready))
		if !slices.Contains(got, "system/local-"+tableID+"/nb-2-big") || !slices.Contains(got, "skipme/t-"+tableID+"/nb-1-big") {
			t.Errorf("ready = %v, want system and skipme too", got)
		}
	})
}

// An SSTable written after the watches are in place but after the scan read
// its directory is not missed; one written before the scan is reported
// once, although its events arrive too.
func TestStartupRace(t *testing.T) {
	root := t.TempDir()
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	writeSSTable(t, tdir, "nb-1-big")
	var h *harness
	h = newHarness(t, root, harnessOpt{before: func(hh *harness) {
		hh.src.afterAdd = func(dir string) {
			if dir == tdir {
				// Between this directory's watch and the scan.
				writeSSTable(t, tdir, "nb-2-big")
			}
		}
		scan := hh.w.scan
		hh.w.scan = func(r string, opt sstable.ScanOptions) (sstable.ScanResult, error) {
			if !hh.src.watched(tdir) {
				t.Errorf("scan before the table directory was watched")
			}
			hh.src.pump() // events for nb-2-big, queued in the source
			res, err := scan(r, opt)
			writeSSTable(t, tdir, "nb-3-big") // after the scan read the directory
			hh.src.pump()
			return res, err
		}
	}})
	evs := h.sync()
	want := []string{"ready ks/t-" + tableID + "/nb-1-big", "ready ks/t-" + tableID + "/nb-2-big", "synced"}
	if d := describe(evs); !slices.Equal(d, want) {
		t.Fatalf("start-up events = %v, want %v", d, want)
	}
	h.w.scan = sstable.Scan
	h.clk.Advance(testDebounce)
	if d := describe(h.sync()); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/nb-3-big"}) {
		t.Fatalf("after start-up: events %v, want nb-3-big ready once", d)
	}
}

// When the watch limit is reached, the watcher says which sysctl raises it
// and finds new SSTables by periodic rescans; once the limit is raised it
// watches again.
func TestWatchLimit(t *testing.T) {
	root := t.TempDir()
	t1 := filepath.Join(root, "ks", "t1-"+tableID)
	t2 := filepath.Join(root, "ks", "t2-"+tableID)
	writeSSTable(t, t1, "nb-1-big")
	writeSSTable(t, t2, "nb-1-big")
	limited := true
	h := newHarness(t, root, harnessOpt{before: func(h *harness) {
		h.src.addHook = func(dir string) error {
			if dir == t2 && limited {
				return addError(dir, syscall.ENOSPC)
			}
			return nil
		}
	}})
	if got := keys(kinds(h.sync(), Ready)); len(got) != 2 {
		t.Fatalf("ready at start-up = %v, want both (the scan does not need watches)", got)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "sysctl fs.inotify.max_user_watches") || !strings.Contains(logs, "sysctl -w fs.inotify.max_user_watches=") {
		t.Errorf("no warning naming the sysctl; log:\n%s", logs)
	}
	if h.w.interval() != time.Minute {
		t.Errorf("rescan interval %v, want the poll interval", h.w.interval())
	}

	writeSSTable(t, t2, "nb-2-big")
	if got := h.step(); len(got) != 0 {
		t.Fatalf("unwatched directory produced %v", describe(got))
	}
	h.clk.Advance(time.Minute)
	if d := describe(h.sync()); !slices.Equal(d, []string{"ready ks/t2-" + tableID + "/nb-2-big", "synced"}) {
		t.Fatalf("poll: events %v", d)
	}

	// A Statistics.db rewrite there is found by the next poll too.
	stats := filepath.Join(t2, "nb-1-big-Statistics.db")
	os.WriteFile(stats+".tmp", []byte("repaired"), 0o644)
	os.Rename(stats+".tmp", stats)
	h.clk.Advance(time.Minute)
	if d := describe(h.sync()); !slices.Equal(d, []string{"rewritten ks/t2-" + tableID + "/nb-1-big", "synced"}) {
		t.Fatalf("poll after rewrite: events %v", d)
	}

	// Lost events are made up for by a rescan too.
	writeSSTable(t, t1, "nb-2-big")
	h.src.snap = h.src.read() // the kernel dropped these events
	h.src.errs <- ErrOverflow
	h.sync()
	h.clk.Advance(testDebounce)
	if d := describe(h.sync()); !slices.Equal(d, []string{"ready ks/t1-" + tableID + "/nb-2-big", "synced"}) {
		t.Fatalf("after overflow: events %v", d)
	}

	limited = false
	h.clk.Advance(time.Minute)
	h.sync()
	if !h.src.watched(t2) {
		t.Fatalf("not watched after the limit was raised")
	}
	if !strings.Contains(h.logs.String(), "every directory is watched again") {
		t.Errorf("no recovery message")
	}
	if h.w.interval() != time.Hour {
		t.Errorf("rescan interval %v, want the rescan interval", h.w.interval())
	}
	writeSSTable(t, t2, "nb-3-big")
	if d := describe(h.step()); !slices.Equal(d, []string{"ready ks/t2-" + tableID + "/nb-3-big"}) {
		t.Fatalf("watched again: events %v", d)
	}
}

// A hold folder on another file system is refused by New when detectable,
// and a link failing with EXDEV stops Run with an error naming both paths.
func TestCrossDevice(t *testing.T) {
	t.Run("link", func(t *testing.T) {
		root := t.TempDir()
		writeSSTable(t, filepath.Join(root, "ks", "t-"+tableID), "nb-1-big")
		h := newHarness(t, root, harnessOpt{outCap: -1, before: func(h *harness) {
			h.w.roots[0].h.link = func(_ int, o, n string) error { return &os.LinkError{Op: "link", Old: o, New: n, Err: syscall.EXDEV} }
		}})
		<-h.done
		err := h.err
		h.err = nil
		if !errors.Is(err, ErrCrossDevice) {
			t.Fatalf("Run = %v, want ErrCrossDevice", err)
		}
		if msg := err.Error(); !strings.Contains(msg, root) || !strings.Contains(msg, h.w.roots[0].hold) {
			t.Errorf("error %q does not name both folders", msg)
		}
		if got := heldFiles(t, h.w.roots[0].hold); len(got) != 0 {
			t.Errorf("hold folder keeps %v", got)
		}
	})
	t.Run("tmpfs", func(t *testing.T) {
		shm, err := os.MkdirTemp("/dev/shm", "cassback-watch-")
		if err != nil {
			t.Skipf("no /dev/shm: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(shm) })
		root := t.TempDir()
		if a, _ := deviceOf(root); func() bool { b, _ := deviceOf(shm); return a == b }() {
			t.Skip("/dev/shm is on the temp dir's file system")
		}
		_, err = New(Options{Roots: []string{root}, HoldDirs: map[string]string{root: shm}})
		if !errors.Is(err, ErrCrossDevice) || !strings.Contains(err.Error(), shm) || !strings.Contains(err.Error(), root) {
			t.Fatalf("New = %v, want ErrCrossDevice naming %s and %s", err, shm, root)
		}
	})
}

func TestNewChecks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	os.Mkdir(root, 0o755)
	hold := filepath.Join(filepath.Dir(root), ".cassback-hold-data")
	writeFiles(t, filepath.Join(hold, "held", "ks", "t"), "nb-1-big-Data.db.17")
	writeFiles(t, hold, "keep")
	w, err := New(Options{Roots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	if w.roots[0].hold != hold {
		t.Errorf("default hold folder %s, want %s", w.roots[0].hold, hold)
	}
	if got := entries(t, hold); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("hold folder after New = %v, want the stale hold removed and the rest kept", got)
	}
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no roots", Options{}},
		{"missing root", Options{Roots: []string{filepath.Join(root, "nope")}}},
		{"hold inside root", Options{Roots: []string{root}, HoldDirs: map[string]string{root: filepath.Join(root, ".hold")}}},
		{"overlapping roots", Options{Roots: []string{root, filepath.Join(root, "ks")}}},
	} {
		if tc.name == "overlapping roots" {
			os.Mkdir(filepath.Join(root, "ks"), 0o755)
		}
		if _, err := New(tc.opts); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	if err := w.Release(Event{links: []string{filepath.Join(root, "x")}}); err == nil {
		t.Errorf("Release of a foreign folder succeeded")
	}
}

// A slow consumer pins at most one undelivered SSTable's files; SSTables
// that go before their Ready is sent are dropped with it, and changes to
// an undelivered SSTable are coalesced into its one event.
func TestSlowConsumer(t *testing.T) {
	root := t.TempDir()
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	for _, p := range []string{"nb-1-big", "nb-2-big", "nb-3-big", "nb-4-big"} {
		writeSSTable(t, tdir, p)
	}
	h := newHarness(t, root, harnessOpt{outCap: -1})
	h.sync()
	hold := h.w.roots[0].hold
	if got := heldFiles(t, hold); len(got) != 8 {
		t.Errorf("holds with nothing received: %v, want the next event's 8 files", got)
	}

	// Compact nb-2 and nb-3 into nb-5, and rewrite nb-4's Statistics twice.
	for _, p := range []string{"nb-2-big", "nb-3-big"} {
		for _, c := range append(slices.Clone(modernComponents), "TOC.txt") {
			os.Remove(filepath.Join(tdir, p+"-"+c))
		}
	}
	writeSSTable(t, tdir, "nb-5-big")
	stats := filepath.Join(tdir, "nb-4-big-Statistics.db")
	for _, s := range []string{"one", "two, longer"} {
		os.WriteFile(stats+".tmp", []byte(s), 0o644)
		os.Rename(stats+".tmp", stats)
		h.step()
	}

	var got []string
	var evs []Event
	for len(got) == 0 || got[len(got)-1] != "ready ks/t-"+tableID+"/nb-5-big" {
		ev := h.receive()
		evs = append(evs, ev)
		got = append(got, describe([]Event{ev})...)
		if n := len(heldFiles(t, hold)); n > 8*(len(evs)+1) {
			t.Errorf("%d links held after %d events received", n, len(evs))
		}
	}
	want := []string{"ready ks/t-" + tableID + "/nb-1-big", "ready ks/t-" + tableID + "/nb-4-big", "synced", "ready ks/t-" + tableID + "/nb-5-big"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	rel := "ks/t-" + tableID + "/nb-4-big-Statistics.db"
	if s := readFile(t, evs[1].Held[rel]); s != "two, longer" {
		t.Errorf("coalesced event holds Statistics %q, want the latest", s)
	}
	for _, ev := range evs {
		h.w.Release(ev)
	}
	h.sync()
	if got := heldFiles(t, hold); len(got) != 0 {
		t.Errorf("holds after releasing everything: %v", got)
	}
}

func TestAddErrorMapping(t *testing.T) {
	if err := addError("/d", syscall.ENOSPC); !errors.Is(err, ErrWatchLimit) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("ENOSPC: %v, want ErrWatchLimit", err)
	}
	if err := addError("/d", syscall.ENOENT); errors.Is(err, ErrWatchLimit) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ENOENT: %v, want not-found", err)
	}
}

// The hold folder removed under a running watcher is made again.
func TestHoldFolderRecreated(t *testing.T) {
	root := t.TempDir()
	tdir := filepath.Join(root, "ks", "t-"+tableID)
	writeSSTable(t, tdir, "nb-1-big")
	h := newHarness(t, root, harnessOpt{})
	h.sync()
	if err := os.RemoveAll(filepath.Join(h.w.roots[0].hold, heldDir)); err != nil {
		t.Fatal(err)
	}
	writeSSTable(t, tdir, "nb-2-big")
	evs := h.step()
	if d := describe(evs); !slices.Equal(d, []string{"ready ks/t-" + tableID + "/nb-2-big"}) {
		t.Fatalf("events %v", d)
	}
	for rel, l := range evs[0].Held {
		if readFile(t, l) != readFile(t, h.abs(rel)) {
			t.Errorf("held %s differs", rel)
		}
	}
}
