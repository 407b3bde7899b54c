package cassback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/watch"
)

// ContinuousOptions configures continuous backup. Zero values mean defaults.
type ContinuousOptions struct {
	BackupOptions
	// IgnoreExisting records SSTables present at start-up in the manifests
	// without reading or uploading them (unless a previous manifest of this
	// host already has them stored).
	IgnoreExisting bool
	// ManifestInterval coalesces manifest writes: a keyspace that changed
	// gets a new manifest at most this often. Default 5 s.
	ManifestInterval time.Duration
	// ReportInterval is how often progress is logged; default 5 s, < 0 never.
	ReportInterval time.Duration
	// DrainTimeout bounds the graceful stop: after it, unfinished uploads
	// are abandoned (the next run catches up) and the final manifests name
	// what was done. Default 60 s.
	DrainTimeout time.Duration
	// OthersRefresh is how often other hosts' index files are listed
	// again, so that chunks they stored since deduplicate (the host's own
	// are listed once a session heartbeat). Default 1 h: at a fleet's
	// scale reading the heads of other hosts' new files each heartbeat
	// was most of a node's requests.
	OthersRefresh time.Duration
	// Watch passes test seams (Source, Clock, Debounce, intervals) and hold
	// folders to the watcher; Roots and keyspace filters come from
	// BackupOptions.
	Watch watch.Options
}

func (o ContinuousOptions) withDefaults() ContinuousOptions {
	o.BackupOptions = o.BackupOptions.withDefaults()
	if o.ManifestInterval <= 0 {
		o.ManifestInterval = 5 * time.Second
	}
	if o.ReportInterval == 0 {
		o.ReportInterval = 5 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = time.Minute
	}
	if o.OthersRefresh <= 0 {
		o.OthersRefresh = time.Hour
	}
	return o
}

// ContinuousStats reports what a continuous backup did.
type ContinuousStats struct {
	SSTables  int             // SSTable events backed up
	Files     int             // files read (not reused)
	BytesRead int64           // bytes read
	BytesNew  int64           // chunk bytes uploaded
	Manifests int             // manifests written
	Latency   []time.Duration // per SSTable: from complete to in a durable manifest
	Abandoned int             // SSTable events not backed up when a drain timed out
}

// LatencyPercentile returns the p-th percentile (0..100) of Latency.
func (st ContinuousStats) LatencyPercentile(p float64) time.Duration {
	if len(st.Latency) == 0 {
		return 0
	}
	s := slices.Clone(st.Latency)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p/100)]
}

// item is one watcher event in flight.
type item struct {
	seq      uint64
	ev       watch.Event
	started  time.Time       // local clock, when queued
	bytes    int64           // size of its held files, for progress reports
	existing bool            // reported by the start-up scan, before the root's first Synced
	files    []manifest.File // set by the worker
	err      error           // set by the worker
	finished bool            // set by the main loop once the worker handed it back
}

// sstKey names an SSTable: its data directory, directory and prefix.
type sstKey struct{ root, sst string }

type liveSST struct {
	ks    string
	table tableKey
	files []manifest.File
	since time.Time // watcher time it became complete
}

// continuous is the state of one continuous backup. The fields below mu
// are shared with the workers and the heartbeat; the rest belong to the
// main loop.
type continuous struct {
	b    *backupRun
	opts ContinuousOptions

	mu      sync.Mutex
	learned map[string]time.Time // condemned set -> when this process learned of it
	stats   ContinuousStats
	doneB   int64 // bytes processed since the last report

	next      uint64
	items     map[uint64]*item
	applied   uint64              // every item with seq <= applied is applied
	live      map[sstKey]*liveSST // complete SSTables now
	dirty     map[string]bool     // keyspaces changed since their last manifest
	keyspaces map[string]bool     // every keyspace ever seen
	synced    map[string]bool     // roots whose start-up scan is applied
	scanned   map[string]bool     // roots whose start-up scan ended (admitted)
	fresh     []*liveSST          // applied since the last commit (for latency)
	pendingB  int64               // bytes of queued items
	queue     []*item             // admitted, not yet handed to a worker
	inflight  int                 // handed to a worker, not back yet
	stopping  bool                // a graceful stop was asked for
	watchDone bool                // the watcher has ended
	wt        *watch.Watcher
	work      chan *item
	done      chan *item
	ucancel   context.CancelFunc // abandons uploads when a drain times out
	repacker  *index.Packer      // stores carried files again (recover)
	refreshed time.Time          // when the index files were last listed
	// refreshedAll is when every host's index files were last listed.
	refreshedAll time.Time
}

// add adds o's counts to st.
func (st *ContinuousStats) add(o ContinuousStats) {
	st.SSTables += o.SSTables
	st.Files += o.Files
	st.BytesRead += o.BytesRead
	st.BytesNew += o.BytesNew
	st.Manifests += o.Manifests
	st.Latency = append(st.Latency, o.Latency...)
	st.Abandoned += o.Abandoned
}

// Continuous runs continuous backup: it watches the data directories and
// backs up each SSTable as soon as it is complete, writing a new manifest
// of a keyspace (coalesced) once everything it names is durable. It runs
// until stop is closed (graceful: drain the queue, final manifests, end the
// session) or ctx ends (immediate: the store stays consistent, nothing
// half-written is named by a manifest).
//
// A process stopped for longer than the session lease (a suspended VM, a
// long GC pause) finds its session revoked: what it wrote since its last
// commit never counts. It then starts over with a new session, which
// compares the live files with the last committed manifests and stores
// again whatever they lack.
func (r *Repo) Continuous(ctx context.Context, stop <-chan struct{}, opts ContinuousOptions) (ContinuousStats, error) {
	var total ContinuousStats
	if err := ValidDedupScope(opts.DedupScope); err != nil {
		return total, err
	}
	for {
		st, err := r.continuousRun(ctx, stop, opts)
		total.add(st)
		if !errors.Is(err, gc.ErrRevoked) || ctx.Err() != nil || closed(stop) {
			return total, err
		}
		r.Log.Warn("continuous backup stopped past its session lease; starting again with a new session", "err", err)
		opts.IgnoreExisting = false // what the old session recorded without storing is not committed
	}
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// continuousRun is one session of continuous backup.
func (r *Repo) continuousRun(ctx context.Context, stop <-chan struct{}, opts ContinuousOptions) (st ContinuousStats, err error) {
	opts = opts.withDefaults()
	if err := CheckDataDirs(opts.DataDirs); err != nil {
		return st, err
	}
	for i, d := range opts.DataDirs {
		if opts.DataDirs[i], err = filepath.Abs(d); err != nil {
			return st, err
		}
	}
	c := &continuous{opts: opts, refreshed: time.Now(), refreshedAll: time.Now(), learned: map[string]time.Time{}, items: map[uint64]*item{}, live: map[sstKey]*liveSST{},
		dirty: map[string]bool{}, keyspaces: map[string]bool{}, synced: map[string]bool{}, scanned: map[string]bool{}}
	// Manifests up to an hour ahead of this clock count as previous ones
	// (a clock stepped back since they were written).
	if c.b, err = r.beginBackup(ctx, opts.BackupOptions, nil, opts.Now().Add(time.Hour), c.learn); err != nil {
		return st, err
	}
	c.b.treeBeside = true
	defer func() {
		if eerr := c.b.end(ctx); eerr != nil && err == nil {
			err = eerr
		}
	}()
	for _, ks := range c.b.previous {
		c.keyspaces[ks] = true
	}
	return c.run(ctx, stop)
}

// learn notes when this process learned of condemned sets (the heartbeat
// calls it): they may be acknowledged once everything queued before is in
// a durable manifest.
func (c *continuous) learn(sets []gc.CondemnedSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range sets {
		c.learned[s.ID] = time.Now()
	}
}

// run starts the watcher and the workers and runs the main loop.
func (c *continuous) run(ctx context.Context, stop <-chan struct{}) (ContinuousStats, error) {
	wopts := c.opts.Watch
	wopts.Roots, wopts.ExcludeKeyspaces, wopts.IncludeSystem = c.opts.DataDirs, c.opts.ExcludeKeyspaces, c.opts.IncludeSystem
	if wopts.Log == nil {
		wopts.Log = c.b.r.Log
	}
	var err error
	if c.wt, err = watch.New(wopts); err != nil {
		return c.stats, err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	// A small buffer: every buffered event holds its SSTable's hard links.
	events := make(chan watch.Event, 8)
	werr := make(chan error, 1)
	go func() { werr <- c.wt.Run(wctx, events) }()

	uctx, ucancel := context.WithCancel(ctx)
	defer ucancel()
	c.ucancel = ucancel
	c.work, c.done = make(chan *item), make(chan *item, c.opts.Threads)
	var g errgroup.Group
	for _, p := range c.b.w.NewPackers(c.opts.Threads) {
		g.Go(func() error {
			for it := range c.work {
				it.err = c.process(uctx, p, it)
				c.done <- it
			}
			return nil
		})
	}
	defer func() {
		close(c.work)
		go func() {
			for range c.done {
			}
		}()
		g.Wait()
		close(c.done)
	}()
	if err := c.loop(ctx, stop, wcancel, events, werr); err != nil {
		return c.stats, err
	}
	return c.stats, c.commit(ctx)
}

// loop is the main loop: it admits watcher events in order, hands them to
// the workers, applies finished ones in order, commits every
// ManifestInterval and reports progress, until a drained stop.
func (c *continuous) loop(ctx context.Context, stop <-chan struct{}, wcancel context.CancelFunc, events chan watch.Event, werr chan error) error {
	commitT := time.NewTicker(c.opts.ManifestInterval)
	defer commitT.Stop()
	var reportC <-chan time.Time
	if c.opts.ReportInterval > 0 {
		t := time.NewTicker(c.opts.ReportInterval)
		defer t.Stop()
		reportC = t.C
	}
	var drainC <-chan time.Time
	for !(c.stopping && c.watchDone && len(c.queue) == 0 && c.inflight == 0) {
		var sendC chan *item
		var head *item
		if len(c.queue) > 0 {
			sendC, head = c.work, c.queue[0]
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			stop = nil
			c.stopping = true
			wcancel()
			drainC = time.After(c.opts.DrainTimeout)
			c.b.r.Log.Info("stopping: draining the upload queue", "queued", len(c.queue), "uploading", c.inflight)
		case <-drainC:
			c.abandon()
		case ev, ok := <-events:
			if !ok {
				events = nil
				c.watchDone = true
				if e := <-werr; e != nil && !c.stopping {
					return fmt.Errorf("watch: %w", e)
				}
				continue
			}
			c.admit(ev)
		case sendC <- head:
			c.queue = c.queue[1:]
			c.inflight++
		case it := <-c.done:
			if err := c.finish(it); err != nil {
				return err
			}
		case <-commitT.C:
			if err := c.commit(ctx); err != nil {
				return err
			}
		case <-reportC:
			c.report()
		}
	}
	return nil
}

// abandon gives up the queue when a drain timed out: uploads in flight are
// cancelled and the next start catches up.
func (c *continuous) abandon() {
	c.stats.Abandoned = len(c.queue) + c.inflight
	c.b.r.Log.Warn("drain timed out; the rest is backed up on the next start", "abandoned", c.stats.Abandoned)
	c.queue = nil
	c.ucancel()
	for c.inflight > 0 {
		<-c.done
		c.inflight--
	}
	c.watchDone = true
}

// admit turns an event into an item; Gone and Synced need no upload.
func (c *continuous) admit(ev watch.Event) {
	c.next++
	it := &item{seq: c.next, ev: ev, started: time.Now(), existing: !c.scanned[ev.Root]}
	c.items[it.seq] = it
	switch ev.Kind {
	case watch.Ready, watch.Rewritten:
		it.bytes = heldBytes(ev)
		c.queue = append(c.queue, it)
		c.pendingB += it.bytes
		if st := c.b.r.Stats; st != nil {
			st.SSTablesQueued.Add(1)
			st.FilesQueued.Add(int64(len(ev.SSTable.Files)))
			st.pendingSince(ev.Time)
		}
	case watch.Synced:
		c.scanned[ev.Root] = true
		it.finished = true
	default:
		it.finished = true
	}
	c.advance()
}

// finish takes an item back from a worker.
func (c *continuous) finish(it *item) error {
	c.inflight--
	it.finished = true
	c.pendingB -= it.bytes
	if it.err != nil {
		if errors.Is(it.err, context.Canceled) && c.stopping {
			return nil
		}
		c.b.r.Stats.addError(ErrorFile, 1)
		return it.err
	}
	if st := c.b.r.Stats; st != nil {
		st.SSTablesDone.Add(1)
		st.SSTableDuration.Observe(time.Since(it.started))
	}
	c.advance()
	return nil
}

func (c *continuous) report() {
	c.mu.Lock()
	done := c.doneB
	c.doneB = 0
	c.mu.Unlock()
	c.b.r.Log.Info("continuous backup", "queued", len(c.queue), "uploading", c.inflight, "bytes_pending", c.pendingB,
		"mb_per_s", fmt.Sprintf("%.1f", float64(done)/c.opts.ReportInterval.Seconds()/1e6), "sstables", c.stats.SSTables)
}

// heldBytes is the size of an event's held files.
func heldBytes(ev watch.Event) int64 {
	var n int64
	for _, p := range ev.Held {
		if fi, err := os.Lstat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// advance applies finished items in event order, so a manifest never shows
// an SSTable gone before the one that replaced it was backed up.
func (c *continuous) advance() {
	for {
		it := c.items[c.applied+1]
		if it == nil || !it.finished || it.err != nil {
			return
		}
		c.applied++
		delete(c.items, it.seq)
		ev := it.ev
		key := sstKey{ev.Root, ev.SSTable.Dir + "/" + ev.SSTable.Prefix}
		switch ev.Kind {
		case watch.Ready, watch.Rewritten:
			s := &liveSST{ks: ev.SSTable.Keyspace, table: tableKey{ev.SSTable.Table, ev.SSTable.TableID}, files: it.files, since: ev.Time}
			c.live[key] = s
			c.fresh = append(c.fresh, s)
			c.dirty[s.ks], c.keyspaces[s.ks] = true, true
			c.stats.SSTables++
			if err := c.wt.Release(ev); err != nil {
				c.b.r.Log.Warn("hard links not released", "sstable", key.sst, "root", key.root, "err", err)
			}
		case watch.Gone:
			if s := c.live[key]; s != nil {
				delete(c.live, key)
				c.dirty[s.ks] = true
			}
		case watch.Synced:
			c.synced[ev.Root] = true
			// A keyspace with a previous manifest but nothing live now
			// (dropped while we were down) gets an empty manifest.
			for ks := range c.keyspaces {
				c.dirty[ks] = true
			}
		}
	}
}

// process backs up one SSTable's files from their held hard links (which
// the watcher made sure are regular files), following no symbolic link and
// never blocking in open(2).
func (c *continuous) process(ctx context.Context, p *index.Packer, it *item) error {
	ev := it.ev
	files := make([]manifest.File, 0, len(ev.SSTable.Files))
	for _, rel := range ev.SSTable.Files {
		var f *os.File
		var err error
		if path := ev.Held[rel]; path != "" {
			f, err = sstable.OpenFile(path)
		} else {
			f, err = sstable.Open(ev.Root, rel)
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", filepath.Join(ev.Root, rel), unwrapPath(err))
		}
		rec, read, err := c.b.storeFile(ctx, p, ev.Root, rel, f, storeOptions{unstored: it.existing && c.opts.IgnoreExisting})
		f.Close()
		if err != nil {
			return err
		}
		if st := c.b.r.Stats; st != nil {
			st.FilesDone.Add(1)
		}
		if read > 0 {
			c.mu.Lock()
			c.stats.Files++
			c.stats.BytesRead += read
			c.doneB += read
			c.mu.Unlock()
		}
		files = append(files, rec)
	}
	slices.SortFunc(files, func(a, b manifest.File) int { return strings.Compare(a.Path, b.Path) })
	it.files = files
	return nil
}

// commit writes a manifest for every keyspace that changed, once every
// chunk they name is durable and indexed, and commits them together with
// the acknowledgement of the condemned sets every earlier reference is now
// covered for. With nothing to commit and nothing in flight, every
// reference is already committed: it acknowledges every set it learned of,
// so an idle node never holds up a purge.
func (c *continuous) commit(ctx context.Context) error {
	if len(c.synced) < len(c.opts.DataDirs) {
		return nil
	}
	ack := c.ackable()
	if len(ack) > 0 {
		ok, err := c.recover(ctx)
		if err != nil {
			return err
		}
		if !ok {
			ack = nil // a carried file could not be stored again: ask later
		}
	}
	if len(c.dirty) == 0 {
		if len(c.items) == 0 {
			c.b.sess.s.Ack(ack) // written by the next renewal
		}
		c.notePending()
		return nil
	}
	at := c.opts.Now()
	var ms []*manifest.Manifest
	for _, ks := range slices.Sorted(maps.Keys(c.dirty)) {
		// Each table's SSTables in the order of their first files, and
		// their files in one slice of the exact size: the table is then
		// in order as a manifest needs it but where SSTables' paths
		// interleave (newManifest sorts what is not).
		groups := map[tableKey][]*liveSST{}
		for _, s := range c.live {
			if s.ks == ks {
				groups[s.table] = append(groups[s.table], s)
			}
		}
		tables := map[tableKey][]manifest.File{}
		for k, g := range groups {
			slices.SortFunc(g, func(a, b *liveSST) int {
				if len(a.files) == 0 || len(b.files) == 0 {
					return cmp.Compare(len(a.files), len(b.files))
				}
				return cmp.Or(strings.Compare(a.files[0].Path, b.files[0].Path), strings.Compare(a.files[0].Root, b.files[0].Root))
			})
			n := 0
			for _, s := range g {
				n += len(s.files)
			}
			files := make([]manifest.File, 0, n)
			for _, s := range g {
				files = append(files, s.files...)
			}
			tables[k] = files
		}
		ms = append(ms, c.b.newManifest(ks, at, tables))
	}
	names, err := c.b.commit(ctx, ms, ack)
	c.stats.Manifests += len(names)
	if err != nil {
		return err
	}
	clear(c.dirty)
	c.stats.Latency = append(c.stats.Latency, c.latencies(time.Now())...)
	c.fresh = c.fresh[:0]
	_, c.stats.BytesNew, _, _ = c.b.chunkStats()
	c.notePending()
	c.refreshIndex(ctx)
	return nil
}

// refreshIndex lists the host's own index files again, once a session
// heartbeat at most, and every host's once an OthersRefresh (1 h), and
// reads those written since (other hosts' by their heads): writers compact
// their index files, so a file this backup knew of may be gone, its
// entries in one it does not know yet, and other hosts' new chunks are
// worth deduplicating against too — but at a fleet's scale the heads of
// other hosts' new files, read every heartbeat, were most of a node's
// requests (docs/design.md §6.1), and they only cost dedup while unread.
// It is safe for the reason the first load is (§4.2 W1): a pack a new file
// names is checked before it is relied on, and condemned packs stay
// excluded. A failure only costs dedup until the next try.
func (c *continuous) refreshIndex(ctx context.Context) {
	every := c.b.r.GC.Heartbeat
	if every <= 0 {
		every = 5 * time.Minute
	}
	if time.Since(c.refreshed) < every {
		return
	}
	c.refreshed = time.Now()
	load := c.b.idx.LoadOwn
	if time.Since(c.refreshedAll) >= max(every, c.opts.OthersRefresh) {
		c.refreshedAll = c.refreshed
		load = c.b.idx.Load
	}
	if _, err := c.b.r.loadWith(ctx, c.b.idx, load); err != nil {
		c.b.r.Log.Warn("index files not listed again; the next commit tries", "err", err)
	}
}

// notePending tells the Stats, after a commit, since when the oldest
// SSTable not in a committed manifest has been complete: the oldest of
// those not yet applied (queued, being stored, or waiting for an earlier
// one), since everything applied is committed now. It costs a pass over
// the items in flight, once per commit.
func (c *continuous) notePending() {
	st := c.b.r.Stats
	if st == nil {
		return
	}
	var oldest time.Time
	for _, it := range c.items {
		if k := it.ev.Kind; (k == watch.Ready || k == watch.Rewritten) && (oldest.IsZero() || it.ev.Time.Before(oldest)) {
			oldest = it.ev.Time
		}
	}
	st.setPending(oldest)
}

// recover makes sure every file the next manifests will carry over from
// earlier commits is still stored outside the condemned packs, before the
// session acknowledges their sets: the manifest that named it may have been
// removed since (purge --purge-latest), and its packs condemned, so that
// "referenced by a committed manifest" no longer protects it
// (docs/design.md §4.2 W4). A file whose chunks are all gone from the index
// is stored again from disk, and its keyspace gets a new manifest. It
// reports false if such a file could not be read (it is going away: a Gone
// event will follow).
func (c *continuous) recover(ctx context.Context) (bool, error) {
	ok := true
	// SSTables stored since the last commit are not carried: their chunks
	// were stored or found stored (outside the condemned packs) just now,
	// and some are in packs the coming Sync uploads.
	fresh := map[*liveSST]bool{}
	for _, s := range c.fresh {
		fresh[s] = true
	}
	keys := slices.SortedFunc(maps.Keys(c.live), func(a, b sstKey) int { return cmp.Or(strings.Compare(a.root, b.root), strings.Compare(a.sst, b.sst)) })
	for _, k := range keys {
		s := c.live[k]
		if fresh[s] {
			continue
		}
		for i, f := range s.files {
			if f.Unstored {
				continue
			}
			stored, err := c.b.allStored(ctx, f.Chunks)
			if err != nil {
				return false, err
			}
			if stored {
				continue
			}
			if c.repacker == nil {
				c.repacker = c.b.w.NewPacker()
			}
			rec, err := c.restore(ctx, c.repacker, f)
			if errors.Is(err, sstable.ErrNotRegular) {
				c.b.r.Log.Warn("a file's stored copy was condemned after its backup was removed, and it is no longer a regular file; not stored again", "err", err)
			}
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, sstable.ErrNotRegular) {
				ok = false
				continue
			}
			if err != nil {
				return false, err
			}
			s.files[i] = rec
			c.dirty[s.ks] = true
		}
	}
	return ok, nil
}

// restore stores one carried file again from the data directory.
func (c *continuous) restore(ctx context.Context, p *index.Packer, f manifest.File) (manifest.File, error) {
	fh, err := sstable.Open(f.Root, f.Path)
	if err != nil {
		return f, err
	}
	defer fh.Close()
	c.b.r.Log.Warn("a file's stored copy was condemned after its backup was removed; storing it again", "path", f.Path)
	rec, _, err := c.b.storeFile(ctx, p, f.Root, f.Path, fh, storeOptions{})
	return rec, err
}

// ackable returns the condemned sets learned before the oldest unfinished
// item started: once the coming commit is durable, every reference made
// before this process learned of them is in a durable manifest.
func (c *continuous) ackable() []string {
	oldest := time.Now()
	for _, it := range c.items {
		if it.started.Before(oldest) {
			oldest = it.started
		}
	}
	var ack []string
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, at := range c.learned {
		if at.Before(oldest) {
			ack = append(ack, id)
		}
	}
	return ack
}

// latencies are from each SSTable's completion (watcher time) to now.
func (c *continuous) latencies(now time.Time) []time.Duration {
	var out []time.Duration
	clock := c.opts.Watch.Clock
	for _, s := range c.fresh {
		t := now
		if clock != nil {
			t = clock.Now()
		}
		out = append(out, t.Sub(s.since))
	}
	return out
}
