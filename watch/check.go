package watch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cassback/cassback/manifest/sstable"
)

// sstState is one SSTable the watcher has found complete.
type sstState struct {
	dir  *dirState
	sst  sstable.SSTable   // as last found complete
	seen map[string]fileID // identities when last found (or delivered)

	delivered    map[string]fileID // identities held by the last Ready/Rewritten sent; nil if none was
	deliveredSST sstable.SSTable
	queued       *entry // the Ready/Rewritten not yet sent, or nil
}

// bulkCheck is the number of prefixes above which a directory is checked
// with one Scan of its keyspace instead of CheckComplete per prefix
// (which reads the whole directory each time: quadratic in a directory of
// thousands of LCS SSTables).
const bulkCheck = 64

// noFiles is CheckComplete's reason for a prefix without any file.
const noFiles = sstable.SkipIncomplete + ": no files"

// checkDir checks the prefixes marked in d: complete ones are reported (or
// found unchanged), reported ones that are no longer complete may be Gone,
// and the rest stay pending. Every Ready is queued before any Gone, so a
// compaction's output is reported before its inputs go.
func (w *Watcher) checkDir(d *dirState) {
	cands := d.dirtyPrefix
	if d.dirtyTxn {
		for p := range d.pending {
			cands[p] = true
		}
	}
	d.dirty, d.dirtyTxn, d.dirtyPrefix = false, false, map[string]bool{}
	delete(w.loop.dirty, d)
	if d.depth == depthRoot || len(cands) == 0 {
		return
	}
	prefixes := sortedKeys(cands)
	if len(prefixes) > bulkCheck {
		w.checkBulk(d, prefixes)
		return
	}
	var missing []*sstState
	for _, p := range prefixes {
		files, ok, reason, err := sstable.CheckComplete(d.abs, p)
		switch {
		case err != nil:
			w.log.Warn("cannot check sstable, rescanning later", "dir", d.abs, "sstable", p, "err", err)
			d.pending[p] = true
			w.rescanSoon(w.opts.PollInterval)
		case ok:
			w.found(d, w.sstable(d, p, files))
		case d.ssts[p] != nil:
			missing = append(missing, d.ssts[p])
		case reason == noFiles:
			delete(d.pending, p)
		default:
			d.pending[p] = true
		}
	}
	for _, st := range missing {
		if d.ssts[st.sst.Prefix] == st {
			w.notComplete(d, st)
		}
	}
}

// checkBulk is checkDir for many prefixes: one Scan of the keyspace and one
// listing of d.
func (w *Watcher) checkBulk(d *dirState, prefixes []string) {
	res, err := w.scan(d.root.path, sstable.ScanOptions{Keyspaces: []string{d.keyspace()}, MaxSkipped: -1})
	if err != nil {
		w.log.Warn("cannot check directory, rescanning later", "dir", d.abs, "err", err)
		for _, p := range prefixes {
			d.pending[p] = true
		}
		w.rescanSoon(w.opts.PollInterval)
		return
	}
	complete := map[string]sstable.SSTable{}
	for _, s := range res.SSTables {
		if s.Dir == d.rel {
			complete[s.Prefix] = s
		}
	}
	have := map[string]bool{}
	if entries, err := os.ReadDir(d.abs); err == nil {
		for _, e := range entries {
			if p, err := sstable.ParsePath(d.child(e.Name())); err == nil && p.Kind == sstable.KindComponent {
				have[p.Prefix] = true
			}
		}
	}
	var missing []*sstState
	for _, p := range prefixes {
		switch s, ok := complete[p]; {
		case ok:
			w.found(d, s)
		case d.ssts[p] != nil:
			missing = append(missing, d.ssts[p])
		case have[p]:
			d.pending[p] = true
		default:
			delete(d.pending, p)
		}
	}
	for _, st := range missing {
		if d.ssts[st.sst.Prefix] == st {
			w.notComplete(d, st)
		}
	}
}

// reconcile applies a full scan of rs: every complete SSTable is found
// (reported if new or changed), every reported one the scan did not return
// is checked for Gone, and each directory's pending set is rebuilt from the
// prefixes the walk saw.
func (w *Watcher) reconcile(rs *rootState, ssts []sstable.SSTable, prefixes map[*dirState]map[string]bool) {
	l := &w.loop
	byDir := map[string][]sstable.SSTable{}
	for _, s := range ssts {
		byDir[s.Dir] = append(byDir[s.Dir], s)
	}
	dirs := make([]*dirState, 0, len(prefixes))
	for d := range prefixes {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, func(a, b *dirState) int { return strings.Compare(a.abs, b.abs) })
	var missing []*sstState
	for _, d := range dirs {
		if l.dirs[d.abs] != d {
			continue
		}
		complete := map[string]bool{}
		for _, s := range byDir[d.rel] {
			complete[s.Prefix] = true
			if !w.unchanged(d, s) {
				w.found(d, s)
			}
		}
		delete(byDir, d.rel)
		for _, p := range sortedKeys(d.ssts) {
			if !complete[p] {
				missing = append(missing, d.ssts[p])
			}
		}
		clear(d.pending)
		for p := range prefixes[d] {
			if !complete[p] {
				d.pending[p] = true
			}
		}
	}
	for _, st := range missing {
		if st.dir.ssts[st.sst.Prefix] == st {
			w.notComplete(st.dir, st)
		}
	}
	// Directories the scan saw but the walk before it did not: created in
	// between. Their parent's watch reports them too; adding them here
	// also covers a parent that is not watched.
	for _, rel := range sortedKeys(byDir) {
		w.appeared(rs, rel)
	}
}

// appeared registers the directory rel of rs, which has appeared, and
// queues a check of its SSTables.
func (w *Watcher) appeared(rs *rootState, rel string) {
	d := rs.dir
	for seg := range strings.SplitSeq(rel, "/") {
		if c := d.children[seg]; c != nil {
			d = c
			continue
		}
		if !w.acceptsChild(d, seg) {
			return
		}
		c := w.newDir(rs, d, seg)
		if err := w.walk(c, true, nil); err != nil {
			w.log.Warn("cannot read new directory, rescanning later", "dir", c.abs, "err", err)
		}
		return
	}
}

// unchanged is the rescan's cheap test: sst was found before with the same
// files, and its mutable components (the only ones Cassandra replaces
// under the same name) still have the same identity. Immutable components
// are not stat'ed, which makes a rescan of 10,000 SSTables about 60,000
// stat(2)s cheaper; events still catch any change to them.
func (w *Watcher) unchanged(d *dirState, sst sstable.SSTable) bool {
	st := d.ssts[sst.Prefix]
	if st == nil || st.seen == nil || len(st.seen) != len(sst.Files) {
		return false
	}
	for _, rel := range sst.Files {
		old, ok := st.seen[rel]
		if !ok {
			return false
		}
		if !mutable(rel) {
			continue
		}
		id, err := statID(filepath.Join(d.root.path, filepath.FromSlash(rel)))
		if err != nil || id != old {
			return false
		}
	}
	delete(d.pending, sst.Prefix)
	return true
}

// mutable reports whether Cassandra may replace a component under its name:
// Statistics.db and Summary.db (BigFormat/BtiFormat MUTABLE_COMPONENTS),
// and secondary-index components (SAI "+", SASI "SI_"), which an index
// rebuild writes again.
func mutable(rel string) bool {
	name := rel[strings.LastIndexByte(rel, '/')+1:]
	comp := name[strings.LastIndexByte(name, '-')+1:]
	return comp == "Statistics.db" || comp == "Summary.db" || strings.Contains(comp, "+") || strings.HasPrefix(comp, "SI_")
}

// found records that sst is complete: it queues Ready (first time),
// Rewritten (a file's identity changed) or nothing (unchanged).
func (w *Watcher) found(d *dirState, sst sstable.SSTable) {
	ids := make(map[string]fileID, len(sst.Files))
	for _, rel := range sst.Files {
		id, err := statID(filepath.Join(d.root.path, filepath.FromSlash(rel)))
		if err != nil {
			// Vanished since the check: its events (or the next rescan)
			// tell what became of it.
			if !errors.Is(err, fs.ErrNotExist) {
				w.log.Warn("cannot stat sstable file", "file", rel, "err", err)
			}
			d.pending[sst.Prefix] = true
			return
		}
		ids[rel] = id
	}
	delete(d.pending, sst.Prefix)
	st := d.ssts[sst.Prefix]
	if st != nil && sameIDs(st.seen, ids) {
		return
	}
	if st == nil {
		st = &sstState{dir: d}
		d.ssts[sst.Prefix] = st
	}
	st.sst, st.seen = sst, ids
	if st.queued != nil {
		// Not sent yet: it will be sent once, with the newest files.
		w.unprepare(st.queued)
		return
	}
	st.queued = &entry{st: st}
	w.enqueue(st.queued)
}

// notComplete decides about a reported SSTable that a check did not find
// complete: Gone when its Data.db or TOC.txt is missing or a committed
// transaction removed it; otherwise (a transaction log in the way, a
// component being replaced) it stays as reported.
func (w *Watcher) notComplete(d *dirState, st *sstState) {
	prefix := st.sst.Prefix
	toc := d.child(prefix + "-TOC.txt")
	if !w.exists(d, prefix+"-Data.db") || (slices.Contains(st.sst.Files, toc) && !w.exists(d, prefix+"-TOC.txt")) {
		w.gone(st)
		return
	}
	files, ok, reason, err := sstable.CheckComplete(d.abs, prefix)
	switch {
	case err != nil:
		w.log.Warn("cannot check sstable, rescanning later", "dir", d.abs, "sstable", prefix, "err", err)
		w.rescanSoon(w.opts.PollInterval)
	case ok:
		w.found(d, w.sstable(d, prefix, files))
	case strings.HasPrefix(reason, sstable.SkipObsolete):
		w.gone(st)
	default:
		w.log.Debug("reported sstable not complete now", "dir", d.abs, "sstable", prefix, "reason", reason)
	}
}

// exists reports whether d/name exists as a regular file; an error other
// than not-found counts as existing, so a Gone is never sent on doubt. A
// symbolic link, FIFO or device in its place does not count: the SSTable
// reported is gone.
func (w *Watcher) exists(d *dirState, name string) bool {
	fi, err := os.Lstat(filepath.Join(d.abs, name))
	if err == nil {
		return fi.Mode().IsRegular()
	}
	return !errors.Is(err, fs.ErrNotExist)
}

// gone forgets st; if it was sent, Gone is queued; if its Ready is still
// queued, both are dropped.
func (w *Watcher) gone(st *sstState) {
	d := st.dir
	delete(d.ssts, st.sst.Prefix)
	if st.queued != nil {
		w.cancel(st.queued)
		st.queued = nil
	}
	if st.delivered != nil {
		w.enqueue(&entry{prepared: true, ev: Event{Kind: Gone, Root: d.root.path, SSTable: st.deliveredSST, Time: w.clock.Now()}})
	}
}

// sstable builds the SSTable of prefix in d from CheckComplete's file names.
func (w *Watcher) sstable(d *dirState, prefix string, files []string) sstable.SSTable {
	rels := make([]string, len(files))
	for i, f := range files {
		rels[i] = d.child(f)
	}
	p, _ := sstable.ParsePath(rels[0]) // a name CheckComplete accepted parses
	return sstable.SSTable{
		Keyspace: p.Keyspace, Table: p.Table, TableID: p.TableID, Index: p.Index,
		Dir: d.rel, Prefix: prefix, Layout: p.Layout,
		Version: p.Version, Gen: p.Gen, Format: p.Format, Files: rels,
	}
}

func sameIDs(a, b map[string]fileID) bool {
	if len(a) != len(b) || a == nil {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
