package cassback

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
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

type fileJob struct {
	ks, table, tableID string
	root, rel          string // data directory and path below it
	prefix             string // SSTable identity within its directory
}

type fileResult struct {
	job  fileJob
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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Threads <= 0 {
		opts.Threads = 4
	}
	if err := CheckDataDirs(opts.DataDirs); err != nil {
		return sum, err
	}
	var jobs []fileJob
	keyspaces := map[string]bool{}
	for _, root := range opts.DataDirs {
		res, err := sstable.Scan(root, sstable.ScanOptions{ExcludeKeyspaces: opts.ExcludeKeyspaces, IncludeSystem: opts.IncludeSystem})
		if err != nil {
			return sum, fmt.Errorf("scan %s: %w", root, err)
		}
		for _, s := range res.Skipped {
			r.Log.Debug("skipped", "path", s.Path, "reason", s.Reason)
		}
		for _, t := range res.SSTables {
			keyspaces[t.Keyspace] = true
			for _, f := range t.Files {
				jobs = append(jobs, fileJob{ks: t.Keyspace, table: t.Table, tableID: t.TableID, root: root, rel: f, prefix: t.Dir + "/" + t.Prefix})
			}
		}
	}
	sess, err := r.startSession(ctx, opts.Host, gc.KindBackup)
	if err != nil {
		return sum, err
	}
	defer func() {
		if eerr := sess.end(ctx); eerr != nil && err == nil {
			err = eerr
		}
	}()
	// The fast path: files unchanged since this host's last manifest.
	prev := map[string]manifest.File{}
	for ks := range keyspaces {
		name, err := manifest.Latest(ctx, r.Store, opts.Host, ks, opts.Now())
		if err != nil {
			return sum, err
		}
		if name == "" {
			continue
		}
		m, err := manifest.Get(ctx, r.Store, name)
		if err != nil {
			r.Log.Warn("previous manifest unreadable; reading every file", "backup", name, "err", err)
			continue
		}
		for _, t := range m.Tables {
			for _, f := range t.Files {
				prev[f.Root+"\x00"+f.Path] = f
			}
		}
	}

	w, err := index.NewWriter(ctx, r.Store, r.Index, r.Config, index.WriterOptions{Host: opts.Host, PackSize: opts.PackSize, Journal: r.journalPath(opts.Host)})
	if err != nil {
		return sum, err
	}
	// Big files first, so the tail of the run is short.
	results := make([]fileResult, len(jobs))
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

	// Every chunking goroutine holds a buffer of one maximal chunk (16 MiB):
	// spread the cores over the workers rather than give each worker all of
	// them, so memory stays about Threads × (pack + chunk buffer).
	r.splitPar = max(1, runtime.GOMAXPROCS(0)/opts.Threads)
	owners := &ownerCache{users: map[uint32]string{}, groups: map[uint32]string{}}
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for range opts.Threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := w.NewPacker()
			for {
				mu.Lock()
				if next == len(order) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				i := order[next]
				next++
				mu.Unlock()
				res := r.backupFile(ctx, p, jobs[i], prev, owners)
				results[i] = res
				mu.Lock()
				if res.err == nil && !res.gone {
					sum.Files++
					sum.BytesTotal += res.file.Size
					sum.BytesRead += res.read
					if res.read == 0 && res.file.Size > 0 {
						sum.FilesReused++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	if err := w.Sync(ctx); err != nil {
		return sum, err
	}
	st := w.Stats()
	sum.BytesNew, sum.ChunksNew, sum.ChunksDup, sum.Packs = st.BytesNew.Load(), st.ChunksNew.Load(), st.ChunksDup.Load(), st.Packs.Load()

	// Group results by keyspace; a vanished file drops its whole SSTable, and
	// a file that could not be read withholds its keyspace's manifest.
	gone := map[string]bool{}
	failed := map[string][]string{}
	for _, res := range results {
		switch {
		case res.gone:
			gone[res.job.root+"\x00"+res.job.prefix] = true
		case res.err != nil:
			failed[res.job.ks] = append(failed[res.job.ks], res.err.Error())
		}
	}
	tables := map[string]map[string]*manifest.Table{} // keyspace -> table name+id -> table
	for ks := range keyspaces {
		tables[ks] = map[string]*manifest.Table{}
	}
	for _, res := range results {
		if res.err != nil || res.gone || gone[res.job.root+"\x00"+res.job.prefix] {
			continue
		}
		tk := res.job.table + "\x00" + res.job.tableID
		t := tables[res.job.ks][tk]
		if t == nil {
			t = &manifest.Table{Name: res.job.table, ID: res.job.tableID}
			tables[res.job.ks][tk] = t
		}
		t.Files = append(t.Files, res.file)
	}
	// Fence: a session the collector revoked (this process was paused past
	// its lease) must not write manifests that may name deleted packs.
	if err := sess.check(); err != nil {
		return sum, err
	}
	now := opts.Now().UTC().Truncate(time.Microsecond)
	var errs []error
	for _, ks := range slices.Sorted(maps.Keys(keyspaces)) {
		if msgs := failed[ks]; len(msgs) > 0 {
			sum.Failed = append(sum.Failed, ks)
			errs = append(errs, fmt.Errorf("keyspace %s not backed up: %s", ks, msgs[0]))
			continue
		}
		m := &manifest.Manifest{
			Format: manifest.FormatVersion, Name: manifest.BackupName(now, ks, opts.Host), Host: opts.Host,
			Keyspace: ks, Time: now, CassandraVersion: opts.CassandraVersion, Tables: []manifest.Table{},
		}
		for _, t := range tables[ks] {
			m.Tables = append(m.Tables, *t)
		}
		m.Sort()
		if err := manifest.Put(ctx, r.Store, m); err != nil {
			errs = append(errs, err)
			continue
		}
		sum.Manifests = append(sum.Manifests, m.Name)
		r.Log.Info("manifest written", "backup", m.Name, "tables", len(m.Tables))
	}
	sum.Duration = time.Since(start)
	return sum, errors.Join(errs...)
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

// backupFile stores one component file, or reuses its previous record when
// path, size, mtime and inode are unchanged and its chunks are still stored.
func (r *Repo) backupFile(ctx context.Context, p *index.Packer, j fileJob, prev map[string]manifest.File, owners *ownerCache) fileResult {
	res := fileResult{job: j}
	full := filepath.Join(j.root, filepath.FromSlash(j.rel))
	f, err := os.Open(full)
	if errors.Is(err, fs.ErrNotExist) {
		res.gone = true
		return res
	}
	if err != nil {
		res.err = fmt.Errorf("open %s: %w", full, unwrapPath(err))
		return res
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		res.err = fmt.Errorf("stat %s: %w", full, err)
		return res
	}
	if !fi.Mode().IsRegular() {
		res.err = fmt.Errorf("%s: not a regular file", full)
		return res
	}
	rec := manifest.File{Path: j.rel, Root: j.root, Size: fi.Size(), Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UTC()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		rec.UID, rec.GID, rec.Inode = sys.Uid, sys.Gid, sys.Ino
		rec.User, rec.Group = owners.names(sys.Uid, sys.Gid)
	}
	if old, ok := prev[j.root+"\x00"+j.rel]; ok && old.Size == rec.Size && old.MTime.Equal(rec.MTime) && old.Inode == rec.Inode && rec.Inode != 0 && r.allKnown(old.Chunks) {
		rec.Sum, rec.Chunks = old.Sum, old.Chunks
		res.file = rec
		return res
	}
	cf, err := chunk.Split(ctx, f, rec.Size, r.Config.Chunker, r.splitPar, func(c chunk.Chunk) error {
		_, err := p.Add(ctx, c.ID, c.Data)
		return err
	})
	if err != nil {
		res.err = fmt.Errorf("read %s: %w", full, err)
		return res
	}
	rec.Sum, rec.Chunks = cf.Sum, cf.Chunks
	res.read = rec.Size
	if rec.Chunks == nil {
		rec.Chunks = []chunk.Ref{}
	}
	res.file = rec
	return res
}

func (r *Repo) allKnown(refs []chunk.Ref) bool {
	for _, c := range refs {
		if !r.Index.Has(c.ID) {
			return false
		}
	}
	return true
}

// ownerCache resolves uid and gid to names once each.
type ownerCache struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

func (o *ownerCache) names(uid, gid uint32) (string, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	u, ok := o.users[uid]
	if !ok {
		if x, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
			u = x.Username
		}
		o.users[uid] = u
	}
	g, ok := o.groups[gid]
	if !ok {
		if x, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
			g = x.Name
		}
		o.groups[gid] = g
	}
	return u, g
}

// unwrapPath drops the path from a *fs.PathError, for messages that name the
// path themselves.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
