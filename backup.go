package cassback

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/watch"
)

// BackupOptions configures a one-shot backup. Zero values mean defaults.
type BackupOptions struct {
	DataDirs         []string // Cassandra data_file_directories (JBOD: several)
	Host             string   // names the node in every key and manifest
	ExcludeKeyspaces []string
	IncludeSystem    bool
	Threads          int // files read at once; default 4
	PackSize         int // target pack size; default the store's
	CassandraVersion string
	Now              func() time.Time // default time.Now
	// DedupScope is what a chunk is deduplicated against: "store" (the
	// default: every host's chunks) or "host" (this host's own: other
	// hosts' index files are never listed or read, which saves a node of a
	// very large fleet their filters' disk and requests, at the cost of
	// chunks it shares with them).
	DedupScope string

	// Test seams: afterScan runs once the data directories are scanned,
	// before the SSTables are held; afterHold once they are held, before a
	// file is read; newHolder replaces watch.NewHolder.
	afterScan, afterHold func()
	newHolder            func(root string) (*watch.Holder, error)
}

// Dedup scopes (BackupOptions.DedupScope).
const (
	DedupStore = "store"
	DedupHost  = "host"
)

// ValidDedupScope reports, as a one-line error, a scope that is not one
// of DedupStore and DedupHost.
func ValidDedupScope(s string) error {
	if s != "" && s != DedupStore && s != DedupHost {
		return fmt.Errorf("dedup scope %q: want %s or %s", s, DedupStore, DedupHost)
	}
	return nil
}

func (o BackupOptions) withDefaults() BackupOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Threads <= 0 {
		o.Threads = 4
	}
	return o
}

// BackupSummary reports what a backup did.
type BackupSummary struct {
	Files       int   // component files in the manifests
	FilesReused int   // unchanged since the last manifest: not read
	BytesRead   int64 // bytes read from data files
	BytesTotal  int64 // bytes of all files in the manifests
	BytesNew    int64 // chunk bytes of files uploaded
	ChunksNew   int64
	MetaBytes   int64 // bytes of manifest trees uploaded (what changed of them)
	ChunksDup   int64
	Packs       int64
	Manifests   []string // backup names written
	Failed      []string // keyspaces whose manifest was not written, with why
	Duration    time.Duration

	// Left out, each with a warning in the log naming it:
	NotRegular int // entries that are symbolic links (never followed), FIFOs, devices or sockets
	Incomplete int // SSTables whose TOC.txt lists a component missing or not a regular file
	Vanished   int // SSTables a file of which vanished between the scan and its hold (compaction)
}

// DedupRatio is total bytes over new bytes (how many times smaller the upload
// was than the data); 0 when nothing was new.
func (s BackupSummary) DedupRatio() float64 {
	if s.BytesNew == 0 {
		return 0
	}
	return float64(s.BytesTotal) / float64(s.BytesNew)
}

// fileJob is one component file a scan found.
type fileJob struct {
	ks     string
	table  tableKey
	root   string         // data directory
	rel    string         // path below it
	sst    string         // the SSTable's directory and prefix, which identify it in root
	reused *manifest.File // its record, when unchanged since the previous backup: not read
	hold   *sstHold       // its SSTable's hard links; nil: read in place
}

// sstHold is the hard links a one-shot backup holds to one SSTable's
// files, released once the last of them is stored.
type sstHold struct {
	h     *watch.Holder
	links map[string]string // by path below the data directory
	left  atomic.Int32      // files not stored yet
}

type fileResult struct {
	file       manifest.File
	err        error
	gone       bool  // vanished before it could be read (compacted away)
	notRegular bool  // swapped for a symbolic link, FIFO or device (err says which)
	read       int64 // bytes read (0 when reused)
}

// Backup scans the data directories, holds a hard link to every file of
// every complete SSTable found that changed since the previous backup,
// stores them and writes one manifest per keyspace: the manifests are the
// state the scan found, even if a compaction removes SSTables meanwhile. A keyspace with a file that could
// not be read gets no manifest and is reported in Failed (the error is
// non-nil); other keyspaces still complete. Nothing below a data directory
// that is a symbolic link, FIFO or device is followed or opened; what is
// left out is logged as a warning and counted in the summary.
func (r *Repo) Backup(ctx context.Context, opts BackupOptions) (sum BackupSummary, err error) {
	start := time.Now()
	opts = opts.withDefaults()
	if err := ValidDedupScope(opts.DedupScope); err != nil {
		return sum, err
	}
	if err := CheckDataDirs(opts.DataDirs); err != nil {
		return sum, err
	}
	// The session, index and previous manifests come first, so that the
	// scan is followed at once by the holds and what they need not pin.
	candidates, err := keyspaceDirs(opts)
	if err != nil {
		return sum, err
	}
	b, err := r.beginBackup(ctx, opts, candidates, opts.Now(), nil)
	if err != nil {
		return sum, err
	}
	// Not when the session acknowledged sets: their sweep may go on under it.
	b.trustPrevious = !b.ackedAtStart
	defer func() {
		if eerr := b.end(ctx); eerr != nil && err == nil {
			err = eerr
		}
	}()
	found, keyspaces, err := r.scan(opts, &sum)
	if err != nil {
		return sum, err
	}
	if opts.afterScan != nil {
		opts.afterScan()
	}
	hs := r.holders(opts)
	defer r.closeHolders(hs)
	jobs := b.holdAll(found, hs, opts.Threads, &sum)
	if opts.afterHold != nil {
		opts.afterHold()
	}
	results, err := b.storeAll(ctx, jobs, opts.Threads)
	if err != nil {
		return sum, err
	}
	ms, errs := b.oneShotManifests(jobs, results, keyspaces, opts.Now(), &sum)
	noteOneShot(r.Stats, jobs, results, &sum)
	sum.Manifests, err = b.commit(ctx, ms, nil)
	sum.ChunksNew, sum.BytesNew, sum.ChunksDup, sum.Packs = b.chunkStats()
	sum.MetaBytes = b.w.Stats().NodeBytes.Load()
	sum.Duration = time.Since(start)
	return sum, errors.Join(append(errs, err)...)
}

// keyspaceDirs lists the keyspaces a scan may find in the data
// directories, for the previous manifests to read.
func keyspaceDirs(opts BackupOptions) ([]string, error) {
	kss := map[string]bool{}
	for _, root := range opts.DataDirs {
		names, err := sstable.Keyspaces(root, sstable.ScanOptions{ExcludeKeyspaces: opts.ExcludeKeyspaces, IncludeSystem: opts.IncludeSystem})
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", root, err)
		}
		for _, n := range names {
			kss[n] = true
		}
	}
	return slices.Sorted(maps.Keys(kss)), nil
}

// foundSST is a complete SSTable a scan found in the data directory root.
type foundSST struct {
	root string
	t    sstable.SSTable
}

// scan lists the complete SSTables of the data directories and the
// keyspaces they belong to. Entries that are not regular files and
// incomplete SSTables are logged as warnings and counted in sum; the
// other skips (snapshots, temporary files …) are routine.
func (r *Repo) scan(opts BackupOptions, sum *BackupSummary) ([]foundSST, []string, error) {
	var found []foundSST
	keyspaces := map[string]bool{}
	for _, root := range opts.DataDirs {
		res, err := sstable.Scan(root, sstable.ScanOptions{ExcludeKeyspaces: opts.ExcludeKeyspaces, IncludeSystem: opts.IncludeSystem})
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", root, err)
		}
		for _, s := range res.Skipped {
			switch s.Reason {
			case sstable.SkipNotRegular:
				r.Log.Warn("skipped: not a regular file or directory", "root", root, "path", s.Path, "detail", s.Detail)
			case sstable.SkipIncomplete:
				r.Log.Warn("sstable skipped: incomplete", "root", root, "sstable", s.Path, "detail", s.Detail)
			default:
				r.Log.Debug("skipped", "path", s.Path, "reason", s.Reason)
			}
		}
		sum.NotRegular += res.SkipCounts[sstable.SkipNotRegular]
		sum.Incomplete += res.SkipCounts[sstable.SkipIncomplete]
		for _, t := range res.SSTables {
			keyspaces[t.Keyspace] = true
			found = append(found, foundSST{root, t})
		}
	}
	return found, slices.Sorted(maps.Keys(keyspaces)), nil
}

// holders returns a Holder per data directory (watch.NewHolder: a private
// folder in the hold folder beside it). A data directory without one is
// read in place, with a warning: a compaction during the backup can then
// take SSTables away before they are read.
func (r *Repo) holders(opts BackupOptions) map[string]*watch.Holder {
	newHolder := opts.newHolder
	if newHolder == nil {
		newHolder = func(root string) (*watch.Holder, error) { return watch.NewHolder(root, "") }
	}
	hs := map[string]*watch.Holder{}
	for _, root := range opts.DataDirs {
		h, err := newHolder(root)
		if err != nil {
			r.Log.Warn("cannot hold hard links; reading the data directory in place, so SSTables a compaction removes during the backup are left out", "root", root, "err", err)
			continue
		}
		hs[root] = h
	}
	return hs
}

func (r *Repo) closeHolders(hs map[string]*watch.Holder) {
	for root, h := range hs {
		if err := h.Close(); err != nil {
			r.Log.Warn("hard links not released", "root", root, "err", err)
		}
	}
}

// holdAll holds every SSTable found, right after the scan, and returns the
// files to store. An SSTable a file of which vanished meanwhile, or turned
// into something other than a regular file, is left out with a warning;
// one that cannot be held for another reason (fs.protected_hardlinks, a
// mount point below the data directory) makes its data directory read in
// place from then on. The files are examined by threads goroutines at
// once (lstat(2) is most of an unchanged backup), then held in order.
func (b *backupRun) holdAll(found []foundSST, hs map[string]*watch.Holder, threads int, sum *BackupSummary) []fileJob {
	type examined struct {
		jobs   []fileJob
		toHold []string
		err    error
	}
	ex := make([]examined, len(found))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(threads, len(found)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(found)); i = next.Add(1) - 1 {
				e := &ex[i]
				e.jobs, e.toHold, e.err = b.examine(found[i])
			}
		})
	}
	wg.Wait()
	var jobs []fileJob
	inPlace := map[string]bool{}
	for i, s := range found {
		js, err := ex[i].jobs, ex[i].err
		if h := hs[s.root]; err == nil && h != nil && !inPlace[s.root] {
			err = hold(h, js, ex[i].toHold)
			if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, sstable.ErrNotRegular) {
				b.r.Log.Warn("cannot hold hard links; reading the data directory in place, so SSTables a compaction removes during the backup are left out", "root", s.root, "err", err)
				inPlace[s.root] = true
				err = nil
			}
		}
		sst := s.t.Dir + "/" + s.t.Prefix
		switch {
		case errors.Is(err, fs.ErrNotExist):
			sum.Vanished++
			b.r.Log.Warn("sstable left out: a file vanished between the scan and its hold (compaction); what replaced it is backed up next time",
				"root", s.root, "sstable", sst, "err", err)
			continue
		case errors.Is(err, sstable.ErrNotRegular):
			sum.NotRegular++
			b.r.Log.Warn("sstable left out: a file is not a regular file", "root", s.root, "sstable", sst, "err", err)
			continue
		}
		jobs = append(jobs, js...)
	}
	return jobs
}

// examine returns the jobs of one SSTable, and the files of it to hold. A
// file unchanged since the previous backup is recorded from its lstat(2)
// and neither held nor read (the record is the state at the scan; only
// metadata equal to the previous record's is taken from the path). The
// only errors are a vanished file (fs.ErrNotExist) and one that is not a
// regular file (ErrNotRegular); a file that cannot be examined is left for
// the hold or the read to report.
func (b *backupRun) examine(s foundSST) (jobs []fileJob, toHold []string, err error) {
	jobs = make([]fileJob, len(s.t.Files))
	for i, rel := range s.t.Files {
		jobs[i] = fileJob{ks: s.t.Keyspace, table: tableKey{s.t.Table, s.t.TableID}, root: s.root, rel: rel, sst: s.t.Dir + "/" + s.t.Prefix}
		full := filepath.Join(s.root, filepath.FromSlash(rel))
		fi, err := os.Lstat(full)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, nil, fmt.Errorf("%s: %w", full, fs.ErrNotExist)
		case err == nil && !fi.Mode().IsRegular():
			return nil, nil, fmt.Errorf("%s: %w (%s)", full, sstable.ErrNotRegular, sstable.TypeName(fi.Mode()))
		}
		if err == nil {
			if rec, ok := b.reuse(s.root, rel, fi); ok {
				jobs[i].reused = &rec
				continue
			}
		}
		toHold = append(toHold, rel)
	}
	return jobs, toHold, nil
}

// hold holds the files toHold of an SSTable's jobs by h, and has the jobs
// read them there.
func hold(h *watch.Holder, jobs []fileJob, toHold []string) error {
	if len(toHold) == 0 {
		return nil
	}
	links, err := h.Hold(toHold)
	if err != nil {
		return err
	}
	sh := &sstHold{h: h, links: links}
	sh.left.Store(int32(len(toHold)))
	for i := range jobs {
		if jobs[i].reused == nil {
			jobs[i].hold = sh
		}
	}
	return nil
}

// path is where the job's file is read: its hard link, or in place.
func (j fileJob) path() string {
	if j.hold != nil {
		return j.hold.links[j.rel]
	}
	return filepath.Join(j.root, filepath.FromSlash(j.rel))
}

// storeAll stores the files with threads workers, each with its own pack
// so the chunks of one file stay together (with Spread, two workers share
// two packs: index.Writer.NewPackers), big files first so the tail of the
// run is short. results[i] is jobs[i]'s. Each SSTable's links are
// released once its last file is stored.
func (b *backupRun) storeAll(ctx context.Context, jobs []fileJob, threads int) ([]fileResult, error) {
	sizes := make([]int64, len(jobs))
	for i, j := range jobs {
		if j.reused != nil {
			continue
		}
		if fi, err := os.Lstat(j.path()); err == nil {
			sizes[i] = fi.Size()
		}
	}
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(sizes[b] - sizes[a]) })
	prog := b.noteQueued(jobs, sizes)
	results := make([]fileResult, len(jobs))
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range b.w.NewPackers(threads) {
		g.Go(func() error {
			for n := next.Add(1) - 1; n < int64(len(order)) && gctx.Err() == nil; n = next.Add(1) - 1 {
				i := order[n]
				results[i] = b.oneFile(gctx, p, jobs[i], prog)
				if prog != nil {
					b.r.Stats.FilesDone.Add(1)
					prog.done(1, 0)
				}
				if h := jobs[i].hold; h != nil && h.left.Add(-1) == 0 {
					if err := h.h.Release(h.links); err != nil {
						b.r.Log.Warn("hard links not released", "sstable", jobs[i].sst, "err", err)
					}
				}
			}
			return nil
		})
	}
	g.Wait()
	return results, ctx.Err()
}

// oneFile opens and stores one file of a one-shot backup, from its hard
// link or in place, never following a symbolic link below the data
// directory nor blocking on a FIFO.
func (b *backupRun) oneFile(ctx context.Context, p *index.Packer, j fileJob, prog *Progress) fileResult {
	if j.reused != nil {
		return fileResult{file: *j.reused}
	}
	var f *os.File
	var err error
	if j.hold != nil {
		f, err = sstable.OpenFile(j.path())
	} else {
		f, err = sstable.Open(j.root, j.rel)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fileResult{gone: true}
	case errors.Is(err, sstable.ErrNotRegular):
		return fileResult{notRegular: true, err: err}
	case err != nil:
		return fileResult{err: fmt.Errorf("open %s: %w", filepath.Join(j.root, j.rel), unwrapPath(err))}
	}
	defer f.Close()
	rec, read, err := b.storeFile(ctx, p, j.root, j.rel, f, storeOptions{prog: prog})
	return fileResult{file: rec, read: read, err: err}
}

// noteQueued counts a one-shot backup's files and SSTables as queued in
// the Stats, and begins its progress: every file, and the bytes of those
// to read (sizes, by job). It returns nil without Stats.
func (b *backupRun) noteQueued(jobs []fileJob, sizes []int64) *Progress {
	st := b.r.Stats
	if st == nil {
		return nil
	}
	ssts := map[sstKey]bool{}
	var bytes int64
	for i, j := range jobs {
		ssts[sstKey{j.root, j.sst}] = true
		bytes += sizes[i]
	}
	st.FilesQueued.Add(int64(len(jobs)))
	st.SSTablesQueued.Add(int64(len(ssts)))
	prog := st.begin("backup")
	prog.plan(int64(len(jobs)), bytes)
	return prog
}

// noteOneShot counts in the Stats, once a one-shot backup has stored its
// files, its SSTables as done and what it left out or could not read.
func noteOneShot(st *Stats, jobs []fileJob, results []fileResult, sum *BackupSummary) {
	if st == nil {
		return
	}
	ssts := map[sstKey]bool{}
	failed := 0
	for i, j := range jobs {
		ssts[sstKey{j.root, j.sst}] = true
		if results[i].err != nil && !results[i].notRegular {
			failed++
		}
	}
	st.SSTablesDone.Add(int64(len(ssts)))
	st.addError(ErrorLeftOut, sum.Incomplete+sum.Vanished+sum.NotRegular)
	st.addError(ErrorFile, failed)
}

// oneShotManifests groups the stored files by keyspace and table. A
// vanished file, or one swapped for something other than a regular file,
// drops its whole SSTable (counted in sum, with a warning), and a file
// that could not be read withholds its keyspace's manifest (reported in
// sum.Failed and errs).
func (b *backupRun) oneShotManifests(jobs []fileJob, results []fileResult, keyspaces []string, at time.Time, sum *BackupSummary) ([]*manifest.Manifest, []error) {
	dropped, failed := b.dropped(jobs, results, sum)
	tables := map[string]map[tableKey][]manifest.File{}
	for i, res := range results {
		j := jobs[i]
		if res.err != nil || res.gone || dropped[sstKey{j.root, j.sst}] {
			continue
		}
		if tables[j.ks] == nil {
			tables[j.ks] = map[tableKey][]manifest.File{}
		}
		tables[j.ks][j.table] = append(tables[j.ks][j.table], res.file)
		sum.Files++
		sum.BytesTotal += res.file.Size
		sum.BytesRead += res.read
		if res.read == 0 && res.file.Size > 0 {
			sum.FilesReused++
		}
	}
	var ms []*manifest.Manifest
	var errs []error
	for _, ks := range keyspaces {
		if why := failed[ks]; why != "" {
			sum.Failed = append(sum.Failed, ks)
			errs = append(errs, fmt.Errorf("keyspace %s not backed up: %s", ks, why))
			continue
		}
		ms = append(ms, b.newManifest(ks, at, tables[ks]))
	}
	return ms, errs
}

// dropped returns the SSTables left out because a file vanished or is not
// a regular file (warned of and counted in sum), and the first error of
// each keyspace with a file that could not be read.
func (b *backupRun) dropped(jobs []fileJob, results []fileResult, sum *BackupSummary) (map[sstKey]bool, map[string]string) {
	dropped := map[sstKey]bool{}
	failed := map[string]string{}
	for i, res := range results {
		j := jobs[i]
		k := sstKey{j.root, j.sst}
		switch {
		case res.gone:
			if !dropped[k] {
				sum.Vanished++
				b.r.Log.Warn("sstable left out: a file vanished while the backup ran (compaction); what replaced it is backed up next time",
					"root", j.root, "sstable", j.sst, "file", j.rel)
			}
			dropped[k] = true
		case res.notRegular:
			sum.NotRegular++
			b.r.Log.Warn("sstable left out: a file is not a regular file", "root", j.root, "sstable", j.sst, "err", res.err)
			dropped[k] = true
		case res.err != nil && failed[j.ks] == "":
			failed[j.ks] = res.err.Error()
		}
	}
	return dropped, failed
}

// CheckDataDirs checks that every data directory exists and is a directory,
// so a bad flag fails before anything is written.
func CheckDataDirs(dirs []string) error {
	if len(dirs) == 0 {
		return errNoDataDir
	}
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("data directory %s: %w", d, unwrapPath(err))
		}
		if !fi.IsDir() {
			return fmt.Errorf("data directory %s: not a directory", d)
		}
	}
	return nil
}
