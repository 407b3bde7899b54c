package watch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/manifest/sstable"
)

// loopState is everything Run's goroutine owns.
type loopState struct {
	src    Source
	events <-chan FSEvent
	errs   <-chan error

	dirs      map[string]*dirState // by absolute path
	dirty     map[*dirState]bool   // directories with a check pending
	unwatched int                  // directories not watched (limit reached, no source)
	// limitHit: an Add hit the watch limit since the last rescan, so no
	// more are tried until the next one.
	limitHit    bool
	limitWarned bool

	queue []*entry
	seq   uint64          // numbers the links of each event
	odd   map[string]bool // entries warned of as neither files nor directories

	nextRescan time.Time
	timerC     <-chan time.Time
	timerAt    time.Time
}

// entry is a queued event. Ready and Rewritten entries take their hard links
// only when they reach the head of the queue, so a slow consumer pins at
// most one undelivered SSTable's files, not a backlog.
type entry struct {
	st        *sstState // Ready/Rewritten: built from st when prepared
	ev        Event
	ids       map[string]fileID // identities of what ev.Held holds
	prepared  bool
	cancelled bool
}

// Run watches the roots until ctx ends, sending Events on out; it closes
// out when it returns. It first watches every directory, then scans each
// root (so a file created in between is seen by the scan or by an event,
// and reported once), sends Ready for every complete SSTable and Synced,
// and then follows the events. It returns ctx's error when ctx ends, and
// any other error (a hold folder on another file system, a root that
// cannot be read at start-up) at once. Run may be called once.
func (w *Watcher) Run(ctx context.Context, out chan<- Event) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("watch: Run called more than once")
	}
	defer close(out)
	l := &w.loop
	l.dirs = map[string]*dirState{}
	l.dirty = map[*dirState]bool{}
	l.odd = map[string]bool{}
	src := w.opts.Source
	if src == nil {
		s, err := newFSNotify()
		switch {
		case errors.Is(err, ErrWatchLimit):
			w.limitReached(err)
		case err != nil:
			return fmt.Errorf("watch: %w", err)
		default:
			src = s
		}
	}
	if src != nil {
		defer src.Close()
		l.src, l.events, l.errs = src, src.Events(), src.Errors()
	}
	defer w.dropQueue()
	for _, rs := range w.roots {
		rs.dir = w.newDir(rs, nil, "")
	}
	for _, rs := range w.roots {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.fullScan(rs); err != nil {
			return err
		}
	}
	w.scheduleRescan()
	return w.run(ctx, out)
}

func (w *Watcher) run(ctx context.Context, out chan<- Event) error {
	l := &w.loop
	for {
		head, err := w.head()
		if err != nil {
			return err
		}
		var outc chan<- Event
		var ev Event
		if head != nil {
			outc, ev = out, head.ev
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case outc <- ev:
			w.sent(head)
		case fe, ok := <-l.events:
			if !ok {
				w.sourceLost()
				continue
			}
			w.handle(fe)
		case err, ok := <-l.errs:
			if !ok {
				l.errs = nil
				continue
			}
			w.sourceError(err)
		case <-w.timer():
			w.runDue()
		case done := <-w.syncc:
			err := w.syncNow(out)
			close(done)
			if err != nil {
				return err
			}
		}
	}
}

// syncNow is the tests' barrier: it handles every event already delivered
// by the source, runs every check due by the clock and sends what it can
// without blocking.
func (w *Watcher) syncNow(out chan<- Event) error {
	l := &w.loop
	for more := true; more; {
		select {
		case fe, ok := <-l.events:
			if !ok {
				w.sourceLost()
				continue
			}
			w.handle(fe)
		case err, ok := <-l.errs:
			if !ok {
				l.errs = nil
				continue
			}
			w.sourceError(err)
		default:
			more = false
		}
	}
	w.runDue()
	for {
		head, err := w.head()
		if err != nil || head == nil {
			return err
		}
		select {
		case out <- head.ev:
			w.sent(head)
		default:
			return nil
		}
	}
}

// handle turns one file-system event into work: a new directory is watched
// and listed, a vanished one forgotten, and a changed file marks its
// SSTable (or, for a transaction log, its directory's pending SSTables)
// for the debounced check.
func (w *Watcher) handle(fe FSEvent) {
	l := &w.loop
	if fe.Op&^Chmod == 0 {
		return
	}
	p := filepath.Clean(fe.Path)
	if d := l.dirs[p]; d != nil {
		if fe.Op&(Remove|Rename) != 0 {
			w.dirGone(d)
		}
		return
	}
	parent := l.dirs[filepath.Dir(p)]
	if parent == nil {
		return
	}
	name := filepath.Base(p)
	if fe.Op&Create != 0 && w.acceptsChild(parent, name) {
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			c := w.newDir(parent.root, parent, name)
			if err := w.walk(c, true, nil); err != nil {
				w.log.Warn("cannot read new directory, rescanning", "dir", p, "err", err)
				w.rescanSoon(w.opts.PollInterval)
			}
			return
		}
	}
	if parent.depth == depthRoot {
		return
	}
	pp, err := sstable.ParsePath(parent.child(name))
	switch {
	case err != nil:
	case pp.Kind == sstable.KindTxnLog:
		w.markDirty(parent, "", true)
	case pp.Kind == sstable.KindComponent && pp.Snapshot == "" && !pp.InBackups:
		w.markDirty(parent, pp.Prefix, false)
	}
}

// markDirty schedules a check of prefix in d (or, for txn, of every pending
// prefix) Debounce after the last event, at most maxDelayFactor×Debounce
// after the first.
func (w *Watcher) markDirty(d *dirState, prefix string, txn bool) {
	now := w.clock.Now()
	if !d.dirty {
		d.dirty, d.first = true, now
		w.loop.dirty[d] = true
	}
	d.last = now
	if prefix != "" {
		d.dirtyPrefix[prefix] = true
	}
	d.dirtyTxn = d.dirtyTxn || txn
}

func (w *Watcher) due(d *dirState) time.Time {
	a, b := d.last.Add(w.opts.Debounce), d.first.Add(maxDelayFactor*w.opts.Debounce)
	if b.Before(a) {
		return b
	}
	return a
}

// timer returns a channel that fires at the next check or rescan, or
// earlier: a timer armed for a deadline that events have since pushed back
// is kept (it fires, nothing is due, it is armed again), so a burst of
// events costs one timer per debounce period, not one per event.
func (w *Watcher) timer() <-chan time.Time {
	l := &w.loop
	next := l.nextRescan
	for d := range l.dirty {
		if t := w.due(d); t.Before(next) {
			next = t
		}
	}
	if l.timerC != nil && !next.Before(l.timerAt) {
		return l.timerC
	}
	l.timerAt, l.timerC = next, w.clock.After(next.Sub(w.clock.Now()))
	return l.timerC
}

// runDue checks the directories whose quiet period ended and rescans if a
// rescan is due.
func (w *Watcher) runDue() {
	l := &w.loop
	l.timerC = nil
	now := w.clock.Now()
	var due []*dirState
	for d := range l.dirty {
		if !w.due(d).After(now) {
			due = append(due, d)
		}
	}
	slices.SortFunc(due, func(a, b *dirState) int { return strings.Compare(a.abs, b.abs) })
	for _, d := range due {
		if d.dirty && l.dirs[d.abs] == d {
			w.checkDir(d)
		}
	}
	if !now.Before(l.nextRescan) {
		w.rescanAll()
		w.scheduleRescan()
	}
}

func (w *Watcher) interval() time.Duration {
	if w.loop.src == nil || w.loop.unwatched > 0 {
		return w.opts.PollInterval
	}
	return w.opts.RescanInterval
}

func (w *Watcher) scheduleRescan() {
	w.loop.nextRescan = w.clock.Now().Add(w.interval())
}

// rescanSoon brings the next rescan forward to at most d from now.
func (w *Watcher) rescanSoon(d time.Duration) {
	if t := w.clock.Now().Add(d); t.Before(w.loop.nextRescan) {
		w.loop.nextRescan = t
	}
}

func (w *Watcher) rescanAll() {
	l := &w.loop
	l.limitHit = false
	for _, rs := range w.roots {
		if err := w.fullScan(rs); err != nil {
			w.log.Warn("rescan failed, retrying later", "root", rs.path, "err", err)
		}
	}
	if l.unwatched == 0 && l.limitWarned {
		l.limitWarned = false
		w.log.Info("every directory is watched again")
	}
}

func (w *Watcher) sourceError(err error) {
	if errors.Is(err, ErrOverflow) {
		w.log.Warn("file system events lost, rescanning; consider raising sysctl fs.inotify.max_queued_events", "err", err)
	} else {
		w.log.Warn("file system watch error, rescanning", "err", err)
	}
	w.rescanSoon(w.opts.Debounce)
}

// sourceLost: the event stream ended although Run did not close it. Every
// directory is polled from now on.
func (w *Watcher) sourceLost() {
	l := &w.loop
	w.log.Warn("file system events stopped, rescanning periodically", "interval", w.opts.PollInterval)
	l.src, l.events, l.errs = nil, nil, nil
	for _, d := range l.dirs {
		if d.watched {
			d.watched = false
			l.unwatched++
		}
	}
	w.rescanSoon(w.opts.Debounce)
}

// fullScan re-walks the directories of rs (watching new ones, retrying
// unwatched ones, dropping vanished ones), scans it and reconciles what it
// finds with what was reported, then queues Synced.
func (w *Watcher) fullScan(rs *rootState) error {
	prefixes := map[*dirState]map[string]bool{}
	if err := w.walk(rs.dir, false, prefixes); err != nil {
		return err
	}
	res, err := w.scan(rs.path, sstable.ScanOptions{
		ExcludeKeyspaces: w.opts.ExcludeKeyspaces, IncludeSystem: w.opts.IncludeSystem, MaxSkipped: -1,
	})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	w.reconcile(rs, res.SSTables, prefixes)
	w.enqueue(&entry{prepared: true, ev: Event{Kind: Synced, Root: rs.path, Time: w.clock.Now()}})
	return nil
}

// enqueue, head, sent, cancel and unprepare manage the queue; dropQueue
// releases what was never sent.

func (w *Watcher) enqueue(e *entry) { w.loop.queue = append(w.loop.queue, e) }

// head returns the first live entry, prepared, or nil.
func (w *Watcher) head() (*entry, error) {
	l := &w.loop
	for len(l.queue) > 0 {
		e := l.queue[0]
		if !e.cancelled {
			if e.prepared {
				return e, nil
			}
			ok, err := w.prepare(e)
			if err != nil {
				return nil, err
			}
			if ok {
				return e, nil
			}
		}
		l.queue[0] = nil
		l.queue = l.queue[1:]
	}
	return nil, nil
}

// sent records that head e was delivered.
func (w *Watcher) sent(e *entry) {
	l := &w.loop
	l.queue[0] = nil
	l.queue = l.queue[1:]
	if st := e.st; st != nil {
		st.delivered, st.deliveredSST, st.seen, st.queued = e.ids, e.ev.SSTable, e.ids, nil
	}
}

// prepare takes the hard links of a Ready/Rewritten entry and builds its
// Event. It reports false when there is nothing to send: a file vanished
// (the SSTable is checked again; if it was never delivered it is
// forgotten), or a rewrite turned out to leave every file as delivered.
func (w *Watcher) prepare(e *entry) (bool, error) {
	l := &w.loop
	st := e.st
	d, rs := st.dir, st.dir.root
	l.seq++
	held, ids, links, err := rs.h.hold(l.seq, st.sst.Files)
	if err != nil {
		w.removeLinks(links)
		if errors.Is(err, sstable.ErrNotRegular) {
			// Swapped since the check: the check that follows finds the
			// SSTable incomplete.
			w.log.Warn("sstable not backed up: a file is not a regular file", "sstable", st.sst.Dir+"/"+st.sst.Prefix, "err", err)
		} else if !errors.Is(err, errVanished) {
			return false, fmt.Errorf("watch: %w", err)
		}
		st.queued = nil
		if st.delivered == nil {
			delete(d.ssts, st.sst.Prefix)
		} else {
			st.seen = nil
		}
		w.markDirty(d, st.sst.Prefix, false)
		return false, nil
	}
	kind := Ready
	var changed []string
	if st.delivered != nil {
		kind = Rewritten
		for _, rel := range st.sst.Files {
			if old, ok := st.delivered[rel]; !ok || old != ids[rel] {
				changed = append(changed, rel)
			}
		}
		if len(changed) == 0 && len(ids) == len(st.delivered) {
			w.removeLinks(links)
			st.queued, st.seen = nil, ids
			return false, nil
		}
	}
	sst := st.sst
	sst.Files = slices.Clone(sst.Files)
	e.ids, e.prepared = ids, true
	e.ev = Event{Kind: kind, Root: rs.path, SSTable: sst, Held: held, Changed: changed, Time: w.clock.Now(), links: links}
	return true, nil
}

func (w *Watcher) cancel(e *entry) {
	w.unprepare(e)
	e.cancelled = true
}

// unprepare drops an entry's links; it is prepared again when it reaches
// the head.
func (w *Watcher) unprepare(e *entry) {
	if e.prepared && e.st != nil {
		w.removeLinks(e.ev.links)
		e.prepared, e.ev = false, Event{}
	}
}

func (w *Watcher) dropQueue() {
	for _, e := range w.loop.queue {
		if e != nil && !e.cancelled {
			w.unprepare(e)
		}
	}
	w.loop.queue = nil
}

func (w *Watcher) removeLinks(links []string) {
	if err := removeLinks(links); err != nil {
		w.log.Warn("cannot remove held link", "err", err)
	}
}

// sortedKeys is maps.Keys in order, for deterministic event order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
