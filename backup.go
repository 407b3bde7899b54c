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
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
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
	BytesNew    int64 // chunk bytes uploaded
	ChunksNew   int64
	ChunksDup   int64
	Packs       int64
	Manifests   []string // backup names written
	Failed      []string // keyspaces whose manifest was not written, with why
	Duration    time.Duration
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
	ks    string
	table tableKey
	root  string // data directory
	rel   string // path below it
	sst   string // the SSTable's directory and prefix, which identify it in root
}

type fileResult struct {
	file manifest.File
	err  error
	gone bool  // vanished before it could be read (compacted away)
	read int64 // bytes read (0 when reused)
}

// Backup scans the data directories, stores every complete SSTable and
// writes one manifest per keyspace. A keyspace with a file that could not be
// read gets no manifest and is reported in Failed (the error is non-nil);
// other keyspaces still complete.
func (r *Repo) Backup(ctx context.Context, opts BackupOptions) (sum BackupSummary, err error) {
	start := time.Now()
	opts = opts.withDefaults()
	if err := CheckDataDirs(opts.DataDirs); err != nil {
		return sum, err
	}
	jobs, keyspaces, err := r.scan(opts)
	if err != nil {
		return sum, err
	}
	b, err := r.beginBackup(ctx, opts, keyspaces, opts.Now(), nil)
	if err != nil {
		return sum, err
	}
	defer func() {
		if eerr := b.end(ctx); eerr != nil && err == nil {
			err = eerr
		}
	}()
	results, err := b.storeAll(ctx, jobs, opts.Threads)
	if err != nil {
		return sum, err
	}
	ms, errs := b.oneShotManifests(jobs, results, keyspaces, opts.Now(), &sum)
	sum.Manifests, err = b.commit(ctx, ms, nil)
	st := b.w.Stats()
	sum.BytesNew, sum.ChunksNew, sum.ChunksDup, sum.Packs = st.BytesNew.Load(), st.ChunksNew.Load(), st.ChunksDup.Load(), st.Packs.Load()
	sum.Duration = time.Since(start)
	return sum, errors.Join(append(errs, err)...)
}

// scan lists the component files of every complete SSTable in the data
// directories, and the keyspaces they belong to.
func (r *Repo) scan(opts BackupOptions) ([]fileJob, []string, error) {
	var jobs []fileJob
	keyspaces := map[string]bool{}
	for _, root := range opts.DataDirs {
		res, err := sstable.Scan(root, sstable.ScanOptions{ExcludeKeyspaces: opts.ExcludeKeyspaces, IncludeSystem: opts.IncludeSystem})
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", root, err)
		}
		for _, s := range res.Skipped {
			r.Log.Debug("skipped", "path", s.Path, "reason", s.Reason)
		}
		for _, t := range res.SSTables {
			keyspaces[t.Keyspace] = true
			for _, f := range t.Files {
				jobs = append(jobs, fileJob{ks: t.Keyspace, table: tableKey{t.Table, t.TableID}, root: root, rel: f, sst: t.Dir + "/" + t.Prefix})
			}
		}
	}
	return jobs, slices.Sorted(maps.Keys(keyspaces)), nil
}

// storeAll stores the files with threads workers, each with its own pack
// so the chunks of one file stay together, big files first so the tail of
// the run is short. results[i] is jobs[i]'s.
func (b *backupRun) storeAll(ctx context.Context, jobs []fileJob, threads int) ([]fileResult, error) {
	sizes := make([]int64, len(jobs))
	for i, j := range jobs {
		if fi, err := os.Lstat(filepath.Join(j.root, j.rel)); err == nil {
			sizes[i] = fi.Size()
		}
	}
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(sizes[b] - sizes[a]) })
	results := make([]fileResult, len(jobs))
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range threads {
		g.Go(func() error {
			p := b.w.NewPacker()
			for n := next.Add(1) - 1; n < int64(len(order)) && gctx.Err() == nil; n = next.Add(1) - 1 {
				i := order[n]
				results[i] = b.oneFile(gctx, p, jobs[i])
			}
			return nil
		})
	}
	g.Wait()
	return results, ctx.Err()
}

// oneFile opens and stores one file of a one-shot backup.
func (b *backupRun) oneFile(ctx context.Context, p *index.Packer, j fileJob) fileResult {
	full := filepath.Join(j.root, filepath.FromSlash(j.rel))
	f, err := os.Open(full)
	if errors.Is(err, fs.ErrNotExist) {
		return fileResult{gone: true}
	}
	if err != nil {
		return fileResult{err: fmt.Errorf("open %s: %w", full, unwrapPath(err))}
	}
	defer f.Close()
	rec, read, err := b.storeFile(ctx, p, j.root, j.rel, f, storeOptions{})
	return fileResult{file: rec, read: read, err: err}
}

// oneShotManifests groups the stored files by keyspace and table. A
// vanished file drops its whole SSTable, and a file that could not be read
// withholds its keyspace's manifest (reported in sum.Failed and errs).
func (b *backupRun) oneShotManifests(jobs []fileJob, results []fileResult, keyspaces []string, at time.Time, sum *BackupSummary) ([]*manifest.Manifest, []error) {
	type sstKey struct{ root, sst string }
	gone := map[sstKey]bool{}
	failed := map[string]string{}
	for i, res := range results {
		j := jobs[i]
		switch {
		case res.gone:
			gone[sstKey{j.root, j.sst}] = true
		case res.err != nil && failed[j.ks] == "":
			failed[j.ks] = res.err.Error()
		}
	}
	tables := map[string]map[tableKey][]manifest.File{}
	for i, res := range results {
		j := jobs[i]
		if res.err != nil || res.gone || gone[sstKey{j.root, j.sst}] {
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
