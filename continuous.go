package cassback

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
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
	// Watch passes test seams (Source, Clock, Debounce, intervals) and hold
	// folders to the watcher; Roots and keyspace filters come from
	// BackupOptions.
	Watch watch.Options
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

type liveSST struct {
	ks, table, tableID string
	files              []manifest.File
	since              time.Time // watcher time it became complete
}

type continuous struct {
	r    *Repo
	opts ContinuousOptions
	w    *index.Writer
	sess *session

	owners *ownerCache

	mu      sync.Mutex
	known   map[string]manifest.File // root\x00path -> last record, for reuse
	learned map[string]time.Time     // condemned run -> when this process learned of it

	// owned by the main loop
	next      uint64
	items     map[uint64]*item
	applied   uint64              // every item with seq <= applied is applied
	live      map[string]*liveSST // root\x00dir/prefix
	dirty     map[string]bool     // keyspaces changed since their last manifest
	keyspaces map[string]bool     // every keyspace ever seen
	synced    map[string]bool     // roots whose start-up scan is applied
	scanned   map[string]bool     // roots whose start-up scan ended (admitted)
	fresh     []*liveSST          // applied since the last commit (for latency)
	stats     ContinuousStats
	pendingB  int64 // bytes of queued items
	doneB     int64 // bytes processed since the last report
}

// Continuous runs continuous backup: it watches the data directories and
// backs up each SSTable as soon as it is complete, writing a new manifest
// of a keyspace (coalesced) once everything it names is durable. It runs
// until stop is closed (graceful: drain the queue, final manifests, end the
// session) or ctx ends (immediate: the store stays consistent, nothing
// half-written is named by a manifest).
func (r *Repo) Continuous(ctx context.Context, stop <-chan struct{}, opts ContinuousOptions) (st ContinuousStats, err error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Threads <= 0 {
		opts.Threads = 4
	}
	if opts.ManifestInterval <= 0 {
		opts.ManifestInterval = 5 * time.Second
	}
	if opts.ReportInterval == 0 {
		opts.ReportInterval = 5 * time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = time.Minute
	}
	if err := CheckDataDirs(opts.DataDirs); err != nil {
		return st, err
	}
	c := &continuous{r: r, opts: opts, owners: &ownerCache{users: map[uint32]string{}, groups: map[uint32]string{}}, known: map[string]manifest.File{}, learned: map[string]time.Time{},
		items: map[uint64]*item{}, live: map[string]*liveSST{}, dirty: map[string]bool{}, keyspaces: map[string]bool{}, synced: map[string]bool{}, scanned: map[string]bool{}}
	roots := make([]string, len(opts.DataDirs))
	for i, d := range opts.DataDirs {
		if roots[i], err = filepath.Abs(d); err != nil {
			return st, err
		}
		roots[i] = filepath.Clean(roots[i])
	}
	c.opts.DataDirs = roots

	sess, runs, err := gc.StartSession(ctx, r.Store, opts.Host, gc.KindBackup, r.GC)
	if err != nil {
		return st, err
	}
	r.exclude(runs)
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	c.sess = &session{s: sess, cancel: hcancel, done: make(chan error, 1)}
	go func() {
		c.sess.done <- sess.Heartbeat(hctx, func(fresh []gc.CondemnedSet) {
			r.exclude(fresh)
			c.mu.Lock()
			for _, run := range fresh {
				c.learned[run.ID] = time.Now()
			}
			c.mu.Unlock()
		})
	}()
	defer func() {
		if eerr := c.sess.end(ctx); eerr != nil && err == nil {
			err = eerr
		}
	}()
	if err := c.loadPrevious(ctx); err != nil {
		return st, err
	}
	if c.w, err = index.NewWriter(ctx, r.Store, r.Index, r.Config, index.WriterOptions{Host: opts.Host, PackSize: opts.PackSize, Journal: r.journalPath(opts.Host)}); err != nil {
		return st, err
	}
	r.splitPar = max(1, runtime.GOMAXPROCS(0)/opts.Threads)

	wopts := opts.Watch
	wopts.Roots, wopts.ExcludeKeyspaces, wopts.IncludeSystem = roots, opts.ExcludeKeyspaces, opts.IncludeSystem
	if wopts.Log == nil {
		wopts.Log = r.Log
	}
	wt, err := watch.New(wopts)
	if err != nil {
		return st, err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	// A small buffer: every buffered event holds its SSTable's hard links.
	events := make(chan watch.Event, 8)
	werr := make(chan error, 1)
	go func() { werr <- wt.Run(wctx, events) }()

	// Workers: each with its own packer.
	work := make(chan *item)
	done := make(chan *item, opts.Threads)
	uctx, ucancel := context.WithCancel(ctx) // cancelled when a drain times out
	defer ucancel()
	var wg sync.WaitGroup
	for range opts.Threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := c.w.NewPacker()
			for it := range work {
				it.err = c.process(uctx, p, it)
				done <- it
			}
		}()
	}
	defer func() {
		close(work)
		go func() {
			for range done {
			}
		}()
		wg.Wait()
		close(done)
	}()

	var queue []*item
	inflight := 0
	commitT := time.NewTicker(opts.ManifestInterval)
	defer commitT.Stop()
	var reportC <-chan time.Time
	if opts.ReportInterval > 0 {
		t := time.NewTicker(opts.ReportInterval)
		defer t.Stop()
		reportC = t.C
	}
	var drainC <-chan time.Time
	stopping := false
	watchDone := false
	for {
		var sendC chan *item
		var head *item
		if len(queue) > 0 {
			sendC, head = work, queue[0]
		}
		if stopping && watchDone && len(queue) == 0 && inflight == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return c.stats, ctx.Err()
		case <-stop:
			stop = nil
			stopping = true
			wcancel()
			drainC = time.After(opts.DrainTimeout)
			r.Log.Info("stopping: draining the upload queue", "queued", len(queue), "uploading", inflight)
		case <-drainC:
			c.stats.Abandoned = len(queue) + inflight
			r.Log.Warn("drain timed out; the rest is backed up on the next start", "abandoned", c.stats.Abandoned)
			queue = nil
			ucancel()
			for inflight > 0 {
				<-done
				inflight--
			}
			watchDone = true
		case ev, ok := <-events:
			if !ok {
				events = nil
				watchDone = true
				if e := <-werr; e != nil && !stopping {
					return c.stats, fmt.Errorf("watch: %w", e)
				}
				continue
			}
			it := c.admit(ev)
			if it != nil {
				it.bytes = sstBytes(it)
				queue = append(queue, it)
				c.pendingB += it.bytes
			}
			c.advance(wt)
		case sendC <- head:
			queue = queue[1:]
			inflight++
		case it := <-done:
			inflight--
			it.finished = true
			c.pendingB -= it.bytes
			if it.err != nil {
				if errors.Is(it.err, context.Canceled) && stopping {
					continue
				}
				return c.stats, it.err
			}
			c.advance(wt)
		case <-commitT.C:
			if err := c.commit(ctx); err != nil {
				return c.stats, err
			}
		case <-reportC:
			r.Log.Info("continuous backup", "queued", len(queue), "uploading", inflight, "bytes_pending", c.pendingB,
				"mb_per_s", fmt.Sprintf("%.1f", float64(c.doneB)/opts.ReportInterval.Seconds()/1e6), "sstables", c.stats.SSTables)
			c.doneB = 0
		}
	}
	if err := c.commit(ctx); err != nil {
		return c.stats, err
	}
	return c.stats, nil
}

func sstBytes(it *item) int64 {
	var n int64
	for _, p := range it.ev.Held {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// loadPrevious reads this host's latest manifests, so files unchanged since
// an earlier run are not uploaded again.
func (c *continuous) loadPrevious(ctx context.Context) error {
	kss, err := manifest.Keyspaces(ctx, c.r.Store, c.opts.Host)
	if err != nil {
		return err
	}
	for _, ks := range kss {
		n, err := manifest.Latest(ctx, c.r.Store, c.opts.Host, ks, time.Now().Add(time.Hour))
		if err != nil || n == "" {
			continue
		}
		m, err := manifest.Get(ctx, c.r.Store, n)
		if err != nil {
			c.r.Log.Warn("previous manifest unreadable; its files are read again", "backup", n, "err", err)
			continue
		}
		for _, t := range m.Tables {
			for _, f := range t.Files {
				c.known[f.Root+"\x00"+f.Path] = f
			}
		}
		c.keyspaces[ks] = true
	}
	return nil
}

// admit turns an event into an item; Gone and Synced need no upload.
func (c *continuous) admit(ev watch.Event) *item {
	c.next++
	it := &item{seq: c.next, ev: ev, started: time.Now(), existing: !c.scanned[ev.Root]}
	c.items[it.seq] = it
	if ev.Kind == watch.Ready || ev.Kind == watch.Rewritten {
		return it
	}
	if ev.Kind == watch.Synced {
		c.scanned[ev.Root] = true
	}
	it.finished = true
	return nil
}

// advance applies finished items in event order, so a manifest never shows
// an SSTable gone before the one that replaced it was backed up.
func (c *continuous) advance(wt *watch.Watcher) {
	for {
		it := c.items[c.applied+1]
		if it == nil || !it.finished || it.err != nil {
			return
		}
		c.applied++
		delete(c.items, it.seq)
		ev := it.ev
		key := ev.Root + "\x00" + ev.SSTable.Dir + "/" + ev.SSTable.Prefix
		switch ev.Kind {
		case watch.Ready, watch.Rewritten:
			s := &liveSST{ks: ev.SSTable.Keyspace, table: ev.SSTable.Table, tableID: ev.SSTable.TableID, files: it.files, since: ev.Time}
			c.live[key] = s
			c.fresh = append(c.fresh, s)
			c.dirty[s.ks], c.keyspaces[s.ks] = true, true
			c.stats.SSTables++
			if err := wt.Release(ev); err != nil {
				c.r.Log.Warn("hard links not released", "sstable", key, "err", err)
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

// process backs up one SSTable's files from their held hard links.
func (c *continuous) process(ctx context.Context, p *index.Packer, it *item) error {
	ev := it.ev
	files := make([]manifest.File, 0, len(ev.SSTable.Files))
	for _, rel := range ev.SSTable.Files {
		path := ev.Held[rel]
		if path == "" {
			path = filepath.Join(ev.Root, filepath.FromSlash(rel))
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open %s: %w", filepath.Join(ev.Root, rel), unwrapPath(err))
		}
		rec, err := c.file(ctx, p, it, f, rel)
		f.Close()
		if err != nil {
			return err
		}
		files = append(files, rec)
	}
	slices.SortFunc(files, func(a, b manifest.File) int { return strings.Compare(a.Path, b.Path) })
	it.files = files
	return nil
}

func (c *continuous) file(ctx context.Context, p *index.Packer, it *item, f *os.File, rel string) (manifest.File, error) {
	fi, err := f.Stat()
	if err != nil {
		return manifest.File{}, err
	}
	root := it.ev.Root
	rec := manifest.File{Path: rel, Root: root, Size: fi.Size(), Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UTC()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		rec.UID, rec.GID, rec.Inode = sys.Uid, sys.Gid, sys.Ino
		rec.User, rec.Group = c.owners.names(sys.Uid, sys.Gid)
	}
	c.mu.Lock()
	old, ok := c.known[root+"\x00"+rel]
	c.mu.Unlock()
	if ok && old.Size == rec.Size && old.MTime.Equal(rec.MTime) && old.Inode == rec.Inode && rec.Inode != 0 && (old.Unstored || c.r.allKnown(old.Chunks)) {
		rec.Sum, rec.Chunks, rec.Unstored = old.Sum, old.Chunks, old.Unstored
		return rec, nil
	}
	if it.existing && c.opts.IgnoreExisting {
		rec.Unstored = true
		c.remember(rec)
		return rec, nil
	}
	cf, err := chunk.Split(ctx, f, rec.Size, c.r.Config.Chunker, c.r.splitPar, func(ch chunk.Chunk) error {
		_, err := p.Add(ctx, ch.ID, ch.Data)
		return err
	})
	if err != nil {
		return manifest.File{}, fmt.Errorf("read %s: %w", filepath.Join(root, rel), err)
	}
	rec.Sum, rec.Chunks = cf.Sum, cf.Chunks
	if rec.Chunks == nil {
		rec.Chunks = []chunk.Ref{}
	}
	c.mu.Lock()
	c.stats.Files++
	c.stats.BytesRead += rec.Size
	c.doneB += rec.Size
	c.mu.Unlock()
	c.remember(rec)
	return rec, nil
}

func (c *continuous) remember(rec manifest.File) {
	c.mu.Lock()
	c.known[rec.Root+"\x00"+rec.Path] = rec
	c.mu.Unlock()
}

// commit writes a manifest for every keyspace that changed, once every
// chunk they name is durable and indexed; then it acknowledges the
// condemned sets every earlier reference is now covered for.
func (c *continuous) commit(ctx context.Context) error {
	if len(c.synced) < len(c.opts.DataDirs) || len(c.dirty) == 0 {
		return nil
	}
	// Condemned sets learned before the oldest unfinished item started can
	// be acknowledged after this commit: every reference made before we
	// learned of them is then in a durable manifest.
	oldest := time.Now()
	for _, it := range c.items {
		if it.started.Before(oldest) {
			oldest = it.started
		}
	}
	var ack []string
	c.mu.Lock()
	for id, at := range c.learned {
		if at.Before(oldest) {
			ack = append(ack, id)
		}
	}
	c.mu.Unlock()

	if err := c.w.Sync(ctx); err != nil {
		return err
	}
	if err := c.sess.check(); err != nil {
		return err
	}
	now := c.opts.Now().UTC().Truncate(time.Microsecond)
	kss := slices.Sorted(maps.Keys(c.dirty))
	for _, ks := range kss {
		m := &manifest.Manifest{Format: manifest.FormatVersion, Name: manifest.BackupName(now, ks, c.opts.Host), Host: c.opts.Host,
			Keyspace: ks, Time: now, CassandraVersion: c.opts.CassandraVersion, Tables: []manifest.Table{}}
		tables := map[string]*manifest.Table{}
		for _, s := range c.live {
			if s.ks != ks {
				continue
			}
			tk := s.table + "\x00" + s.tableID
			t := tables[tk]
			if t == nil {
				t = &manifest.Table{Name: s.table, ID: s.tableID}
				tables[tk] = t
			}
			t.Files = append(t.Files, s.files...)
		}
		for _, t := range tables {
			m.Tables = append(m.Tables, *t)
		}
		m.Sort()
		if err := manifest.Put(ctx, c.r.Store, m); err != nil {
			return err
		}
		c.stats.Manifests++
		c.r.Log.Info("manifest written", "backup", m.Name, "tables", len(m.Tables))
	}
	clear(c.dirty)
	c.stats.Latency = append(c.stats.Latency, c.latencies(time.Now())...)
	c.fresh = c.fresh[:0]
	c.sess.s.Ack(ack)
	c.stats.BytesNew = c.w.Stats().BytesNew.Load()
	return nil
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

// LatencyPercentile returns the p-th percentile (0..100) of Latency.
func (st ContinuousStats) LatencyPercentile(p float64) time.Duration {
	if len(st.Latency) == 0 {
		return 0
	}
	s := slices.Clone(st.Latency)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p/100)]
}
