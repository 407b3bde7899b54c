package cassback

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/remote"
)

// A backup run is what one-shot and continuous backup share: a session in
// the store, the deduplicating writer, the previous record of every file
// of this host, and how to store one file and commit manifests. The two
// drivers (Backup, Continuous) only decide which files to store and when
// to commit.
type backupRun struct {
	r        *Repo
	host     string
	version  string // Cassandra version recorded in manifests
	sess     *session
	idx      *index.Index // chunks known to be stored, less condemned packs
	w        *index.Writer
	splitPar int // goroutines chunking one file
	owners   *ownerCache

	// previous lists the keyspaces of which loadPrevious found a manifest.
	previous []string

	mu    sync.Mutex
	known map[fileKey]manifest.File // last record of each file, for reuse

	// treeBeside puts a commit's tree nodes beside its file chunks when
	// they are few (index.Writer.AddTree): a continuous backup's commits
	// are many and small, and save a PUT so.
	treeBeside bool
	// trustPrevious relies on the chunks of the files of the previous
	// manifests read (loadPrevious) unless the index refutes them (names
	// them only in condemned or gone packs), so an unchanged backup lists
	// no other host's index files for a chunk another host stored. A
	// one-shot backup that acknowledged no condemned set at its start
	// (ackedAtStart) may: it read those manifests from the store after its
	// session began and acknowledges no later set, so what they reference
	// is kept until it ends (design §4.2 W1, W4, §4.4). Their trees' nodes
	// are checked as any node, so a lost tree pack is stored again
	// (trust_attack_test.go).
	trustPrevious bool
	// ackedAtStart says the session acknowledged condemned sets when it
	// began (W1): a sweep of one may delete, while the run goes on, a pack
	// holding a previous manifest's chunk that the index does not name (a
	// pack of another host whose files were not listed), so trustPrevious
	// must not be set (trust_attack_test.go).
	ackedAtStart bool

	// metaDup counts the nodes found stored (the Writer's Stats count those
	// it stores).
	metaDup atomic.Int64

	// nodes caches the nodes of the host's latest trees (nil: no cache
	// folder); liveNodes are those of the latest manifest of each
	// keyspace, read or committed, and newNodes those of manifests being
	// committed, by name.
	nodes     *nodeCache
	liveNodes map[string][]chunk.Ref
	newNodes  map[string][]chunk.Ref

	// commits memoises the host's commit markers by commit time, listed
	// once a run (markerNames).
	commitsMu sync.Mutex
	commits   map[string]*listedCommit
}

// listedCommit is what one listing of a commit's markers showed: the hash
// of each backup's manifest object, by backup name.
type listedCommit struct {
	once   sync.Once
	hashes map[string]manifest.Hash
	err    error
}

// fileKey names a file across data directories (JBOD).
type fileKey struct{ root, path string }

// tableKey names a table within a keyspace.
type tableKey struct{ name, id string }

// beginBackup registers a backup session for host; then, in this order
// (docs/design.md §4.2, W1), builds its dedup index from the index files
// listed after the condemned sets were read, without their packs; reads
// the host's latest committed manifests at or before prevAt of the given
// keyspaces (all when nil), so unchanged files are not read again; and
// opens the writer, recovering its journal. onCondemned hears of sets
// condemned later, after their packs are excluded.
func (r *Repo) beginBackup(ctx context.Context, opts BackupOptions, keyspaces []string, prevAt time.Time, onCondemned func([]gc.CondemnedSet)) (*backupRun, error) {
	b := &backupRun{r: r, host: opts.Host, version: opts.CassandraVersion, idx: index.New(),
		// Every chunking goroutine holds a buffer of one maximal chunk
		// (16 MiB): spread the cores over the workers rather than give
		// each worker all of them, so memory stays about Threads × (pack +
		// chunk buffer).
		splitPar: max(1, runtime.GOMAXPROCS(0)/opts.Threads),
		owners:   &ownerCache{users: map[uint32]string{}, groups: map[uint32]string{}},
		known:    map[fileKey]manifest.File{},
	}
	if hole.On(hole.IndexBeforeSession) && r.early != nil {
		b.idx = r.early
	} else {
		// Other hosts' index files by their filters only (index/lazy.go).
		b.idx.LoadOthersLazily(opts.Host)
		if opts.DedupScope == DedupHost {
			b.idx.OwnOnly()
		}
	}
	sess, sets, err := r.startSession(ctx, opts.Host, gc.KindBackup, func(fresh []gc.CondemnedSet) {
		b.idx.Exclude(packsOf(fresh))
		if onCondemned != nil {
			onCondemned(fresh)
		}
	})
	if err != nil {
		return nil, err
	}
	b.sess = sess
	if err := r.checkConfig(ctx, sess.s.Generation()); err != nil {
		return nil, b.abort(ctx, err)
	}
	b.idx.Exclude(packsOf(sets))
	b.ackedAtStart = len(sets) > 0
	if !hole.On(hole.IndexBeforeSession) {
		if _, err := r.loadIndexInto(ctx, b.idx); err != nil {
			return nil, b.abort(ctx, err)
		}
	}
	nm := r.Config.Chunker.Namer
	b.nodes = newNodeCache(r.CacheDir, opts.Host, nm, index.Source{Store: r.Store, Index: b.idx, Parallel: 1, Namer: nm})
	b.liveNodes, b.newNodes = map[string][]chunk.Ref{}, map[string][]chunk.Ref{}
	if err := b.loadPrevious(ctx, keyspaces, prevAt, opts.Threads); err != nil {
		return nil, b.abort(ctx, err)
	}
	b.w, err = index.NewWriter(ctx, r.Store, b.idx, r.Config, index.WriterOptions{Host: opts.Host, PackSize: opts.PackSize, Journal: r.journalPath(opts.Host), CacheDir: r.CacheDir, CompactAt: r.compactAt,
		Pad: r.hideSizes, Spread: r.hideSizes})
	if err != nil {
		return nil, b.abort(ctx, err)
	}
	return b, nil
}

// abort ends the session of a run that could not start and returns why it
// could not; a failure to end the session (it expires) is only logged.
func (b *backupRun) abort(ctx context.Context, err error) error {
	if eerr := b.sess.end(ctx); eerr != nil {
		b.r.Log.Warn("session not ended; it expires after its lease", "err", eerr)
	}
	return err
}

// loadPrevious reads the host's latest manifest at or before now of each
// keyspace (every keyspace of the host when keyspaces is nil), threads at
// once.
func (b *backupRun) loadPrevious(ctx context.Context, keyspaces []string, now time.Time, threads int) error {
	st := b.r.Store
	// Keyspaces the store lists have had a backup: the cache's word that
	// one has none is stale then (dropped since it was cached).
	listed := keyspaces == nil
	if keyspaces == nil {
		var err error
		if keyspaces, err = manifest.Keyspaces(ctx, st, b.host); err != nil {
			return err
		}
	}
	prev := make([]previous, len(keyspaces))
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range max(1, min(threads, len(keyspaces))) {
		g.Go(func() error {
			for i := next.Add(1) - 1; i < int64(len(keyspaces)); i = next.Add(1) - 1 {
				var err error
				if prev[i], err = b.previousOf(gctx, keyspaces[i], now, listed); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := range prev {
		p := &prev[i]
		if p.name == "" {
			continue
		}
		ks := keyspaces[i]
		b.previous = append(b.previous, ks)
		if t, _, _, err := manifest.ParseBackupName(p.name); err == nil {
			b.r.Stats.committed(ks, t)
		}
		if p.err != nil {
			b.r.Log.Warn("previous manifest unreadable; its files are read again", "backup", p.name, "err", p.err)
			continue
		}
		b.liveNodes[ks] = p.nodes
		for _, f := range p.files {
			b.known[fileKey{f.Root, f.Path}] = f
		}
		p.files = nil // known holds them now
	}
	return nil
}

// previous is the host's latest backup of a keyspace: its name ("": none),
// its manifest object and the nodes of its trees and its files, or why it
// could not be read.
type previous struct {
	name  string
	obj   []byte
	nodes []chunk.Ref
	files []manifest.File
	err   error
}

// readPrevious reads backup name's manifest object from the store and
// its trees from src (readPreviousFrom).
func readPrevious(ctx context.Context, st remote.Store, name string, src manifest.Chunks) previous {
	obj, err := manifest.GetObject(ctx, st, name)
	if err != nil {
		return previous{name: name, err: err}
	}
	return readPreviousFrom(ctx, name, obj, src)
}

// readPreviousFrom reads the trees of backup name, whose manifest object is
// obj, from src a batch of leaves at a time, so that a manifest of any
// size reads, and returns it as previous: its nodes and files, or why it
// could not be read (then neither).
func readPreviousFrom(ctx context.Context, name string, obj []byte, src manifest.Chunks) previous {
	p := previous{name: name, obj: obj}
	m, err := manifest.Header(name, obj)
	if err != nil {
		p.err = err
		return p
	}
	for i := range m.Tables {
		err := m.EachFile(ctx, src, i, func(n chunk.Ref) error {
			p.nodes = append(p.nodes, n)
			return nil
		}, func(f *manifest.File) error {
			p.files = append(p.files, *f)
			return nil
		})
		if err != nil {
			return previous{name: name, err: err}
		}
	}
	return p
}

// previousOf finds and reads the host's latest committed backup of
// keyspace ks at or before now: by the name the node cache keeps when it
// has one, else by listing the store (and then caches the name). The
// manifest object is read from the store, after the session began — a
// manifest there is one the collector keeps the chunks of (§4.2 W1), which
// a cached copy or name alone cannot say (it may have been purged since,
// and an index file may still name its swept packs) — unless the cache
// holds it from a moment the session's sweep generation still stands for:
// no pack was deleted since it was seen committed (W1′). The error is one
// that stops the backup; an unreadable manifest is p.err.
func (b *backupRun) previousOf(ctx context.Context, ks string, now time.Time, listed bool) (p previous, err error) {
	st := b.r.Store
	var src manifest.Chunks = index.Source{Store: st, Index: b.idx, Parallel: 1, Namer: b.r.Config.Chunker.Namer}
	gen := b.sess.s.Generation()
	if b.nodes != nil {
		src = b.nodes
		name, known := b.cachedPrevious(ks, now, listed)
		if known && name == "" {
			return p, nil
		}
		if known {
			if obj, ok := b.nodes.object(ks, name, gen); ok && b.markerNames(ctx, name, obj) {
				if p := readPreviousFrom(ctx, name, obj, src); p.err == nil {
					return p, nil
				}
			}
			if p := readPrevious(ctx, st, name, src); p.err == nil {
				b.nodes.setObject(ks, name, gen, p.obj)
				return p, nil
			}
			if ctx.Err() != nil {
				return p, ctx.Err()
			}
		}
	}
	if p.name, err = manifest.Latest(ctx, st, b.host, ks, now); err != nil || p.name == "" {
		if err == nil && b.nodes != nil {
			b.nodes.setLatest(ks, "")
		}
		return p, err
	}
	p = readPrevious(ctx, st, p.name, src)
	if p.err == nil && b.nodes != nil {
		b.nodes.setLatest(ks, p.name)
		b.nodes.setObject(ks, p.name, gen, p.obj)
	}
	return p, nil
}

// markerNames reports whether the store's markers of backup name's commit,
// listed now (once a run per commit: an unchanged backup's previous
// manifests share one), name obj as its manifest object. A cached object
// is used only then: the listing proves the backup is still in the store
// (one rolled back or copied back to an older state brings the sweep
// generation's stamp back with it, but not a backup committed since), and
// the hash in the marker's key, that the object is the one committed (a
// copy planted in the cache folder is not; generation_attack_test.go).
func (b *backupRun) markerNames(ctx context.Context, name string, obj []byte) bool {
	ts, _, ok := strings.Cut(name, "-")
	if !ok {
		return false
	}
	b.commitsMu.Lock()
	if b.commits == nil {
		b.commits = map[string]*listedCommit{}
	}
	lc := b.commits[ts]
	if lc == nil {
		lc = &listedCommit{}
		b.commits[ts] = lc
	}
	b.commitsMu.Unlock()
	lc.once.Do(func() {
		lc.hashes = map[string]manifest.Hash{}
		lc.err = manifest.HostCommits(ctx, b.r.Store, b.host, ts, func(o manifest.Object) error {
			lc.hashes[o.Name] = o.Hash
			return nil
		})
	})
	h, ok := lc.hashes[name]
	return lc.err == nil && ok && h == manifest.HashOf(obj)
}

// cachedPrevious returns the name of the host's latest committed backup
// of keyspace ks as the node cache last saw it (this host's commits write
// it), if it is at or before now, and whether the cache knows: it may know
// that there is none (unless listed: the store listed ks as having
// backups). A stale name (a newer backup written through another cache)
// costs only reads of files; one whose manifest is gone is passed over.
func (b *backupRun) cachedPrevious(ks string, now time.Time, listed bool) (string, bool) {
	name, ok := b.nodes.latest(ks)
	if !ok || name == "" {
		return "", ok && !listed
	}
	at, k, host, err := manifest.ParseBackupName(name)
	if err != nil || k != ks || host != b.host || at.After(now) {
		return "", false
	}
	return name, true
}

// storeOptions says how to store one file.
type storeOptions struct {
	// unstored records the file without reading it (continuous backup's
	// --ignore-existing) unless a previous record can be reused.
	unstored bool
	// prog, if set, counts the bytes read (one-shot backup's progress).
	prog *Progress
}

// storeFile records one open component file, rel below the data
// directory root (f may be a hard link to it): it reuses the previous
// record when path, size, mtime and inode are unchanged and every chunk is
// still stored, and otherwise reads, chunks and stores it through p. read
// is the number of bytes read (0 when reused). Errors name the file in the
// data directory.
func (b *backupRun) storeFile(ctx context.Context, p *index.Packer, root, rel string, f *os.File, o storeOptions) (rec manifest.File, read int64, err error) {
	full := filepath.Join(root, filepath.FromSlash(rel))
	fi, err := f.Stat()
	if err != nil {
		return rec, 0, fmt.Errorf("stat %s: %w", full, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return rec, 0, fmt.Errorf("%s: %w", full, sstable.ErrNotRegular)
	}
	rec, ok := b.reuse(root, rel, fi)
	if ok {
		return rec, 0, nil
	}
	if o.unstored {
		rec.Unstored = true
		b.remember(rec)
		return rec, 0, nil
	}
	st := b.r.Stats
	cf, err := chunk.Split(ctx, f, rec.Size, b.r.Config.Chunker, b.splitPar, func(c chunk.Chunk) error {
		added, err := p.Add(ctx, c.ID, c.Data)
		if err == nil && st != nil {
			st.chunk(added, len(c.Data))
			o.prog.done(0, int64(len(c.Data)))
		}
		return err
	})
	if err != nil {
		return rec, 0, fmt.Errorf("read %s: %w", full, err)
	}
	rec.Sum, rec.Chunks = cf.Sum, cf.Chunks
	if rec.Chunks == nil {
		rec.Chunks = []chunk.Ref{}
	}
	b.remember(rec)
	return rec, rec.Size, nil
}

// reuse returns the record of the file rel below root, described by fi,
// and whether it reuses the previous record: path, size, mtime and inode
// unchanged and every chunk still stored, so the content need not be read.
// A reused record is remembered.
func (b *backupRun) reuse(root, rel string, fi fs.FileInfo) (manifest.File, bool) {
	rec := b.record(root, rel, fi)
	b.mu.Lock()
	old, ok := b.known[fileKey{root, rel}]
	b.mu.Unlock()
	if !ok || !b.unchanged(old, rec) {
		return rec, false
	}
	rec.Sum, rec.Chunks, rec.Unstored = old.Sum, old.Chunks, old.Unstored
	b.remember(rec)
	return rec, true
}

// remember records the last record of a file, for reuse.
func (b *backupRun) remember(rec manifest.File) {
	b.mu.Lock()
	b.known[fileKey{rec.Root, rec.Path}] = rec
	b.mu.Unlock()
	if b.r.observe != nil {
		b.r.observe(b.sess.s.ID(), &rec)
	}
}

// record describes a file as a manifest records it, without its content.
func (b *backupRun) record(root, rel string, fi fs.FileInfo) manifest.File {
	rec := manifest.File{Path: rel, Root: root, Size: fi.Size(), Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UTC()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		rec.UID, rec.GID, rec.Inode = sys.Uid, sys.Gid, uint64(sys.Ino)
		if b.r.inode != nil {
			rec.Inode = b.r.inode(rec.Inode)
		}
		rec.User, rec.Group = b.owners.names(sys.Uid, sys.Gid)
	}
	return rec
}

// unchanged reports whether a file recorded earlier as old is the same
// file as rec (path, size, mtime and inode) and its chunks are all still
// stored, so its content need not be read again.
func (b *backupRun) unchanged(old, rec manifest.File) bool {
	if old.Size != rec.Size || !old.MTime.Equal(rec.MTime) || old.Inode != rec.Inode || rec.Inode == 0 {
		return false
	}
	return old.Unstored || b.allKnown(old.Chunks)
}

// newManifest returns the manifest of keyspace ks taken at at, holding the
// given tables' files.
func (b *backupRun) newManifest(ks string, at time.Time, tables map[tableKey][]manifest.File) *manifest.Manifest {
	at = at.UTC().Truncate(time.Microsecond)
	m := &manifest.Manifest{
		Format: manifest.FormatVersion, Name: manifest.BackupName(at, ks, b.host), Host: b.host,
		Keyspace: ks, Time: at, CassandraVersion: b.version, Tables: []manifest.Table{},
	}
	for k, files := range tables {
		m.Tables = append(m.Tables, manifest.Table{Name: k.name, ID: k.id, Files: files})
	}
	m.Sort()
	return m
}

// commit makes the manifests count (docs/design.md §4.2, W3): once every
// chunk they name is in a durable, indexed pack (Sync) and the session is
// not known to be stale (the fence, which spares useless work), it writes
// each manifest, then commits them by a compare-and-swap of the session
// object, which fails if a purge revoked the session meanwhile, and then
// writes their commit markers. Acks that these manifests make true ride on
// the same write. It returns the names committed. A manifest of a revoked
// session never counts: it is withdrawn here (or by a later purge).
func (b *backupRun) commit(ctx context.Context, ms []*manifest.Manifest, ack []string) (names []string, err error) {
	if b.r.Stats != nil {
		defer b.noteCommit(ms, time.Now(), &names, &err)
	}
	// A writer stopped past its lease learns it before it writes an index
	// file naming packs a purge may have swept meanwhile (readers check
	// packs before relying on them, but need not meet such files often).
	if err := b.sess.check(); err != nil {
		return nil, err
	}
	objs, encErr, err := b.storeTrees(ctx, ms)
	if err != nil {
		return nil, err
	}
	if err := b.w.Sync(ctx); err != nil {
		return nil, err
	}
	if b.r.observe != nil {
		b.r.observe(b.sess.s.ID(), nil)
	}
	if err := b.sess.check(); err != nil {
		return nil, err
	}
	errs := []error{encErr}
	var cs []manifest.Commit // with the hashes their marker names
	for i, m := range ms {
		if objs[i] == nil {
			continue
		}
		if err := manifest.Put(ctx, b.r.Store, m.Name, objs[i]); err != nil {
			errs = append(errs, err)
			continue
		}
		names = append(names, m.Name)
		cs = append(cs, manifest.Commit{Name: m.Name, Hash: manifest.HashOf(objs[i])})
	}
	if len(names) == 0 {
		return nil, errors.Join(errs...)
	}
	if hole.On(hole.CommitUnfenced) {
		_, err := manifest.PutCommits(ctx, b.r.Store, cs, b.sess.s.ID())
		b.sess.s.Ack(ack)
		return names, errors.Join(append(errs, err)...)
	}
	err = b.sess.s.Commit(ctx, cs, ack)
	if re, ok := errors.AsType[*gc.RevokedError](err); ok {
		// A commit that landed before the revocation counts; the rest never will.
		var lost, kept []string
		for _, c := range cs {
			if slices.Contains(re.Committed, c) {
				kept = append(kept, c.Name)
			} else {
				lost = append(lost, c.Name)
			}
		}
		b.withdraw(ctx, lost)
		manifest.PutCommits(ctx, b.r.Store, re.Committed, b.sess.s.ID()) // else a purge writes them
		return kept, fmt.Errorf("%w: %d backups written after it were withdrawn and do not count; the next backup stores them again", err, len(lost))
	}
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		b.r.Log.Info("backup committed", "backup", n)
	}
	b.cacheNodes(ms, objs, names)
	b.compact(ctx)
	return names, errors.Join(errs...)
}

// compact merges the host's small index files when there are many
// (index.Writer.Compact); a failure only costs later readers time.
func (b *backupRun) compact(ctx context.Context) {
	cs, err := b.w.Compact(ctx)
	if err != nil {
		b.r.Log.Warn("index files not compacted; the next commit tries again", "err", err)
	}
	if cs.Merged > 0 {
		b.r.Log.Debug("index files compacted", "merged", cs.Merged, "written", cs.Written)
	}
}

// cacheNodes makes the trees of the committed manifests the live ones of
// their keyspaces in the node cache, and the manifests their keyspaces'
// latest; it prunes the cache when due.
func (b *backupRun) cacheNodes(ms []*manifest.Manifest, objs [][]byte, committed []string) {
	if b.nodes == nil {
		return
	}
	// Committed (the session's compare-and-swap landed) after the session's
	// start listed its generation.
	gen := b.sess.s.Generation()
	for i, m := range ms {
		if refs, ok := b.newNodes[m.Name]; ok && slices.Contains(committed, m.Name) {
			b.liveNodes[m.Keyspace] = refs
			b.nodes.setLatest(m.Keyspace, m.Name)
			b.nodes.setObject(m.Keyspace, m.Name, gen, objs[i])
		}
		delete(b.newNodes, m.Name)
	}
	b.pruneNodes(false)
}

// pruneNodes removes from the node cache the nodes of no live tree, when
// due (or now, with force).
func (b *backupRun) pruneNodes(force bool) {
	b.nodes.prune(func() map[chunk.ID]bool {
		keep := map[chunk.ID]bool{}
		for _, refs := range b.liveNodes {
			for _, r := range refs {
				keep[r.ID] = true
			}
		}
		return keep
	}, force)
}

// storeTrees encodes the manifests and stores the nodes of their trees
// that the store lacks (an unchanged node is stored already, and costs a
// lookup) before the manifests that need them are written: in packs
// marked as holding nodes, of their own or (treeBeside) after the file
// chunks of a small open pack (index.Writer.AddTree), named by the
// commit's index file. It returns each manifest's object, nil
// for one that cannot be encoded (too large), and the errors of those;
// err is a failure to store nodes, which stops the commit.
func (b *backupRun) storeTrees(ctx context.Context, ms []*manifest.Manifest) (objs [][]byte, encErr, err error) {
	objs = make([][]byte, len(ms))
	var errs []error
	var ids []chunk.ID
	var data [][]byte
	seen := map[chunk.ID]bool{}
	for i, m := range ms {
		m.Session = b.sess.s.ID()
		obj, ns, err := manifest.Encode(m, b.r.Config.Chunker.Namer)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if b.nodes != nil {
			b.newNodes[m.Name] = slices.Clone(m.Nodes)
			for _, n := range ns {
				b.nodes.put(n.ID, n.Data)
			}
		}
		for _, n := range ns {
			if seen[n.ID] {
				continue
			}
			seen[n.ID] = true
			// A node the index offers is relied on only once its pack is
			// seen stored (a late index file of a revoked writer may name a
			// pack a sweep deleted: §4.2 W1; a tree pack lost outside any
			// purge is stored again).
			have, err := b.w.Stored(ctx, n.ID)
			if err != nil {
				return nil, nil, err
			}
			if have {
				b.metaDup.Add(1)
				continue
			}
			ids = append(ids, n.ID)
			data = append(data, n.Data)
		}
		objs[i] = obj
	}
	if len(ids) > 0 {
		if err := b.w.AddTree(ctx, ids, data, b.treeBeside); err != nil {
			return nil, nil, err
		}
	}
	return objs, errors.Join(errs...), nil
}

// chunkStats returns the writer's counts of file chunks: new chunks and
// their bytes, known chunks, and packs (tree nodes are not chunks; some
// packs hold them too).
func (b *backupRun) chunkStats() (chunksNew, bytesNew, chunksDup, packs int64) {
	st := b.w.Stats()
	return st.ChunksNew.Load(), st.BytesNew.Load(), st.ChunksDup.Load(), st.Packs.Load()
}

// noteCommit counts a commit that began at t0 in the Stats: its
// duration, the keyspaces it committed, and its failure.
func (b *backupRun) noteCommit(ms []*manifest.Manifest, t0 time.Time, names *[]string, err *error) {
	st := b.r.Stats
	now := time.Now()
	st.CommitDuration.Observe(now.Sub(t0))
	for _, m := range ms {
		if slices.Contains(*names, m.Name) {
			st.committed(m.Keyspace, now)
		}
	}
	switch {
	case errors.Is(*err, gc.ErrRevoked):
		st.addError(ErrorRevoked, 1)
	case *err != nil:
		st.addError(ErrorCommit, 1)
	}
}

// withdraw deletes manifests this session wrote but could not commit; a
// purge removes what a failure here leaves.
func (b *backupRun) withdraw(ctx context.Context, names []string) {
	for _, n := range names {
		if err := manifest.Delete(context.WithoutCancel(ctx), b.r.Store, n); err != nil {
			b.r.Log.Warn("uncommitted backup not withdrawn; a purge removes it", "backup", n, "err", err)
		}
	}
}

// end ends the session.
func (b *backupRun) end(ctx context.Context) error {
	if b.nodes != nil {
		b.pruneNodes(true)
		b.nodes.close()
	}
	return b.sess.end(ctx)
}

// allStored reports whether every chunk is in a pack the store holds
// (index.Writer.Stored): continuous backup's recover cannot trust the
// index alone, since the chunks of a file whose backups were removed are
// protected by nothing but this check.
func (b *backupRun) allStored(ctx context.Context, refs []chunk.Ref) (bool, error) {
	for _, c := range refs {
		if ok, err := b.w.Stored(ctx, c.ID); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// allKnown reports whether every chunk is stored, by the index (or, with
// trustPrevious, not refuted by it).
func (b *backupRun) allKnown(refs []chunk.Ref) bool {
	for _, c := range refs {
		if b.trustPrevious && !b.idx.Refuted(c.ID) {
			continue // a previous manifest's: kept for this run
		}
		if !b.idx.Has(c.ID) {
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
