package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cassback/cassback/manifest/sstable"
)

// Depths of the directories the watcher watches. Snapshots, backups and tmp
// directories are never watched, so they never produce events.
const (
	depthRoot     = iota // the data directory
	depthKeyspace        // <ks>/ (SSTables directly inside in 1.0's layout)
	depthTable           // <ks>/<table>[-<id>]/
	depthIndex           // <ks>/<table>[-<id>]/.<index>/ (2.2+)
)

// dirState is one watched (or, past the watch limit, polled) directory.
type dirState struct {
	root     *rootState
	parent   *dirState
	name     string
	abs      string
	rel      string // slash-separated, relative to the root; "" for the root
	depth    int
	watched  bool
	children map[string]*dirState

	ssts    map[string]*sstState // by prefix: SSTables reported or queued
	pending map[string]bool      // prefixes with files that were not complete when last checked

	// Debounce: what to check, and since when events arrive.
	dirty       bool
	dirtyPrefix map[string]bool
	dirtyTxn    bool // a transaction log changed: recheck every pending prefix
	first, last time.Time
}

func (d *dirState) child(name string) string {
	if d.rel == "" {
		return name
	}
	return d.rel + "/" + name
}

func (d *dirState) keyspace() string {
	ks, _, _ := strings.Cut(d.rel, "/")
	return ks
}

// acceptsChild reports whether a subdirectory name of d is one to watch: a
// keyspace (not excluded) below the root, a table directory below a
// keyspace, a ".<index>" directory below a table. snapshots/, backups/ and
// tmp/ below a table never are.
func (w *Watcher) acceptsChild(d *dirState, name string) bool {
	switch d.depth {
	case depthRoot:
		return isName(name) && !slices.Contains(w.opts.ExcludeKeyspaces, name) &&
			(w.opts.IncludeSystem || !strings.EqualFold(name, "system"))
	case depthKeyspace:
		return isTableDir(name)
	case depthTable:
		return strings.HasPrefix(name, ".") && isName(name[1:])
	}
	return false
}

// isName: CQL names are [A-Za-z0-9_]+.
func isName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range []byte(s) {
		if c != '_' && !('0' <= c && c <= '9') && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// isTableDir: "<table>" (up to 2.0) or "<table>-<32 lowercase hex>".
func isTableDir(s string) bool {
	name, id, ok := strings.Cut(s, "-")
	if !ok {
		return isName(s)
	}
	if len(id) != 32 || !isName(name) {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// newDir registers a directory (not yet watched).
func (w *Watcher) newDir(rs *rootState, parent *dirState, name string) *dirState {
	d := &dirState{
		root: rs, parent: parent, name: name,
		children: map[string]*dirState{}, ssts: map[string]*sstState{}, pending: map[string]bool{},
		dirtyPrefix: map[string]bool{},
	}
	if parent == nil {
		d.abs = rs.path
	} else {
		d.abs = filepath.Join(parent.abs, name)
		d.rel = parent.child(name)
		d.depth = parent.depth + 1
		parent.children[name] = d
	}
	w.loop.dirs[d.abs] = d
	w.loop.unwatched++
	return d
}

// tryWatch adds a watch for d unless the watch limit was hit since the
// last rescan. It reports false if d turned out to be gone.
func (w *Watcher) tryWatch(d *dirState) bool {
	l := &w.loop
	if d.watched || l.src == nil || l.limitHit {
		return true
	}
	err := l.src.Add(d.abs)
	switch {
	case err == nil:
		d.watched = true
		l.unwatched--
	case errors.Is(err, fs.ErrNotExist):
		return false
	case errors.Is(err, ErrWatchLimit):
		l.limitHit = true
		w.limitReached(err)
	default:
		w.log.Warn("cannot watch directory, rescanning it periodically", "dir", d.abs, "err", err)
		w.rescanSoon(w.opts.PollInterval)
	}
	return true
}

// limitReached warns, once until every directory is watched again, that
// the watcher falls back to rescans, with the sysctl that lifts the limit.
func (w *Watcher) limitReached(err error) {
	l := &w.loop
	w.rescanSoon(w.opts.PollInterval)
	if l.limitWarned {
		return
	}
	l.limitWarned = true
	if errors.Is(err, syscall.EMFILE) {
		w.log.Warn("inotify instance limit reached, rescanning periodically instead of watching; raise it with sysctl fs.inotify.max_user_instances",
			"hint", "sysctl -w fs.inotify.max_user_instances=1024", "interval", w.opts.PollInterval, "err", err)
		return
	}
	limit := readInt("/proc/sys/fs/inotify/max_user_watches")
	w.log.Warn("inotify watch limit reached, rescanning periodically instead of watching; raise it with sysctl fs.inotify.max_user_watches",
		"limit", limit, "hint", fmt.Sprintf("sysctl -w fs.inotify.max_user_watches=%d", max(2*limit, 524288)),
		"watched", len(l.dirs)-l.unwatched, "unwatched", l.unwatched, "interval", w.opts.PollInterval, "err", err)
}

func readInt(name string) int {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range strings.TrimSpace(string(b)) {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// oddEntry warns, once per path and run, of an entry that is neither a
// regular file nor a directory. Like Scan, the watcher never follows a
// symbolic link (nothing outside the data directory is backed up, and a
// symlinked table directory is not watched) and never opens a FIFO or a
// device, so an SSTable with such a component is never complete.
func (w *Watcher) oddEntry(d *dirState, name string, t fs.FileMode) {
	p := filepath.Join(d.abs, name)
	if w.loop.odd[p] {
		return
	}
	w.loop.odd[p] = true
	w.log.Warn("skipped: not a regular file or directory", "path", p, "type", sstable.TypeName(t))
}

// walk watches d and every directory below it that the watcher wants,
// drops the ones that vanished and records in prefixes which SSTable
// prefixes have files in each directory. With check, the SSTables found
// are queued for a debounced check (a directory that appeared while
// running); without, the caller scans. An unreadable directory is an
// error; a vanished one is dropped.
func (w *Watcher) walk(d *dirState, check bool, prefixes map[*dirState]map[string]bool) error {
	if !w.tryWatch(d) {
		w.dirGone(d)
		return nil
	}
	entries, err := os.ReadDir(d.abs)
	if errors.Is(err, fs.ErrNotExist) {
		w.dirGone(d)
		return nil
	}
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	seen := map[string]bool{}
	var ps map[string]bool
	for _, e := range entries {
		name := e.Name()
		t := e.Type()
		switch {
		case !t.IsDir() && !t.IsRegular():
			w.oddEntry(d, name, t)
		case t.IsDir():
			if !w.acceptsChild(d, name) {
				continue
			}
			seen[name] = true
			c := d.children[name]
			if c == nil {
				c = w.newDir(d.root, d, name)
			}
			if err := w.walk(c, check, prefixes); err != nil {
				return err
			}
		case t.IsRegular() && d.depth > depthRoot:
			p, err := sstable.ParsePath(d.child(name))
			if err != nil || p.Kind != sstable.KindComponent || p.Snapshot != "" || p.InBackups {
				continue
			}
			if ps == nil {
				ps = map[string]bool{}
			}
			ps[p.Prefix] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(d.children)) {
		if !seen[name] {
			w.dirGone(d.children[name])
		}
	}
	if prefixes != nil {
		prefixes[d] = ps
	}
	if check {
		for p := range ps {
			w.markDirty(d, p, false)
		}
	}
	return nil
}

// dirGone forgets d and everything below it: each SSTable reported there is
// Gone, and the watches are removed.
func (w *Watcher) dirGone(d *dirState) {
	l := &w.loop
	for _, name := range slices.Sorted(maps.Keys(d.children)) {
		w.dirGone(d.children[name])
	}
	for _, p := range slices.Sorted(maps.Keys(d.ssts)) {
		w.gone(d.ssts[p])
	}
	clear(d.pending)
	delete(l.dirty, d)
	d.dirty = false
	if d.depth == depthRoot {
		// The data directory itself vanished: keep it and poll for it.
		if d.watched {
			d.watched = false
			l.unwatched++
		}
		w.rescanSoon(w.opts.PollInterval)
		w.log.Warn("data directory vanished, rescanning periodically", "dir", d.abs)
		return
	}
	if d.watched && l.src != nil {
		// The kernel already dropped the watch of a deleted directory, so
		// an error here is expected.
		if err := l.src.Remove(d.abs); err != nil {
			w.log.Debug("remove watch", "dir", d.abs, "err", err)
		}
	} else if !d.watched {
		l.unwatched--
	}
	delete(l.dirs, d.abs)
	if d.parent != nil && d.parent.children[d.name] == d {
		delete(d.parent.children, d.name)
	}
}
