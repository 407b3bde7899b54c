package cassback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/remote"
)

// ValidateOptions chooses what validate checks.
type ValidateOptions struct {
	Name     string // one backup; else every backup of Host, or of every host
	Host     string
	Checksum bool // read every referenced chunk, every file and its Cassandra digest
	Threads  int  // concurrent reads; default 8
}

// ProblemKind says what is wrong with a file.
type ProblemKind string

// The kinds of problem.
const (
	Missing ProblemKind = "missing" // some of its data is not in the store
	Corrupt ProblemKind = "corrupt" // its data is there but wrong, or its manifest is unreadable
	// Unindexed: its data is stored, but only in packs no index file names
	// (an index file was lost): readers find it from the packs' headers,
	// slowly; cassback repair-index writes an index file for them.
	Unindexed ProblemKind = "unindexed"
)

// Problem is one thing wrong, named down to the file when it can be.
type Problem struct {
	Backup   string
	Keyspace string
	Table    string
	File     string // path below the data directory, "" for the whole backup
	Kind     ProblemKind
	What     string
}

// ValidateReport is what validate found.
type ValidateReport struct {
	Backups   []string // validated
	Files     int
	Chunks    int // distinct chunks referenced
	Packs     int // packs whose headers were read
	BytesRead int64
	Problems  []Problem
	Orphans   []chunk.ID // stored packs no index file names
	BadIndex  []string   // unreadable index files, with why
	// Damaged lists the other objects of an encrypted store that fail
	// their authentication (commit markers, sessions, the collector's
	// objects), with why; checked with Checksum only.
	Damaged       []string
	StaleSessions []gc.SessionInfo  // not renewed within the lease, or revoked
	Condemned     []gc.CondemnedSet // condemned sets waiting to be swept
	// Lone lists commit markers without their manifest: written late, by a
	// process stopped between committing a backup and marking it, after a
	// purge had removed the backup (or the manifest object was lost). No
	// reader counts them; the next purge removes them.
	Lone     []string
	Duration time.Duration
}

// OK reports whether nothing is missing or corrupt.
func (r ValidateReport) OK() bool {
	return len(r.Problems) == 0 && len(r.BadIndex) == 0 && len(r.Damaged) == 0
}

type fileRef struct {
	backup, ks, table string
	rec               *manifest.File
	digest            *manifest.File // the SSTable's Digest component, for Data.db
}

// validation is one run of Validate.
type validation struct {
	r     *Repo
	opts  ValidateOptions
	rep   ValidateReport
	files []fileRef
	trees []fileRef // each manifest's tree nodes, as a file of them
	cat   *gc.Catalog
	good  *index.Index       // the copies validate reads from
	used  map[chunk.ID][]int // pack -> files (indexes in files) using it
	prog  *Progress          // nil without Stats
	// hashes holds the hash of each committed backup's manifest object,
	// as its marker names it: the object read must be that one.
	hashes map[string]manifest.Hash
}

// Validate checks backups: every manifest decodes; every referenced chunk
// resolves to a stored pack of the indexed size; the header of every such
// pack agrees with the index; with Checksum, every chunk's BLAKE3, every
// file's BLAKE3 and each Data.db's Cassandra digest. It also lists orphan
// packs, stale sessions and open condemned sets. It writes nothing to the
// store but its read session (so a concurrent purge deletes nothing it may
// read) and the clock's probe object (gc.StoreNow).
func (r *Repo) Validate(ctx context.Context, opts ValidateOptions) (rep ValidateReport, err error) {
	start := time.Now()
	if opts.Threads <= 0 {
		opts.Threads = 8
	}
	v := &validation{r: r, opts: opts, good: index.New(), used: map[chunk.ID][]int{}, hashes: map[string]manifest.Hash{}}
	stop, err := r.readSession(ctx, cmp.Or(opts.Host, "validate"), gc.KindValidate, v.good)
	if err != nil {
		return v.rep, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	names, err := v.names(ctx)
	if err != nil {
		return v.rep, err
	}
	if err := v.readManifests(ctx, names); err != nil {
		return v.rep, err
	}
	v.beginProgress()
	if v.cat, err = gc.LoadCatalog(ctx, r.Store, true); err != nil {
		return v.rep, err
	}
	v.housekeeping(ctx)
	v.locate()
	v.checkHeaders(ctx)
	if opts.Checksum {
		r.checksumFiles(ctx, v.files, v.good, opts.Threads, &v.rep, v.problem, v.prog)
		if err := v.checkSealed(ctx); err != nil {
			return v.rep, err
		}
	} else {
		v.prog.done(int64(len(v.files)), 0)
	}
	slices.SortFunc(v.rep.Problems, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.Backup, b.Backup), strings.Compare(a.File, b.File), strings.Compare(a.What, b.What))
	})
	v.rep.Problems = slices.Compact(v.rep.Problems)
	r.Stats.addError(ErrorValidate, len(v.rep.Problems)+len(v.rep.BadIndex)+len(v.rep.Damaged))
	v.rep.Duration = time.Since(start)
	return v.rep, ctx.Err()
}

// beginProgress begins validate's progress in the Stats: every file, and
// with Checksum every byte, to check.
func (v *validation) beginProgress() {
	v.prog = v.r.Stats.begin("validate")
	if v.prog == nil {
		return
	}
	var bytes int64
	if v.opts.Checksum {
		for _, f := range v.files {
			bytes += f.rec.Size
		}
	}
	v.prog.plan(int64(len(v.files)), bytes)
}

// names returns the backups to validate: the one named (whose hash is
// known if it is committed), or every committed backup of the host or of
// every host, from one listing of each host's commit markers.
func (v *validation) names(ctx context.Context) ([]string, error) {
	st := v.r.Store
	if v.opts.Name != "" {
		h, ok, err := manifest.Committed(ctx, st, v.opts.Name)
		if err != nil {
			return nil, err
		}
		if ok {
			v.hashes[v.opts.Name] = h
		}
		return []string{v.opts.Name}, nil
	}
	hosts := []string{v.opts.Host}
	if v.opts.Host == "" {
		var err error
		if hosts, err = manifest.Hosts(ctx, st); err != nil {
			return nil, err
		}
	}
	var names []string
	for _, h := range hosts {
		if err := manifest.HostCommits(ctx, st, h, "", func(o manifest.Object) error {
			names = append(names, o.Name)
			v.hashes[o.Name] = o.Hash
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// readManifests reads every manifest and lists its stored files, each
// Data.db with the Digest component of its SSTable. It reads each table's
// tree a batch of leaves at a time (manifest.EachFile), so no manifest is
// too large to read, and lists a backup's files only once its every tree
// read well.
func (v *validation) readManifests(ctx context.Context, names []string) error {
	src := v.r.Chunks()
	for _, n := range names {
		files, tree, err := v.readManifest(ctx, n, src)
		if errors.Is(err, manifest.ErrNoBackup) && v.opts.Name == "" {
			if v.committed(ctx, n) {
				v.rep.Lone = append(v.rep.Lone, n)
			}
			continue // removed by a purge since it was listed
		}
		if err != nil {
			if v.opts.Name != "" && errors.Is(err, manifest.ErrNoBackup) {
				return err
			}
			_, ks, _, _ := manifest.ParseBackupName(n)
			v.rep.Problems = append(v.rep.Problems, Problem{Backup: n, Keyspace: ks, Kind: Corrupt, What: "manifest unreadable: " + err.Error()})
			continue
		}
		v.rep.Backups = append(v.rep.Backups, n)
		v.trees = append(v.trees, tree)
		v.files = append(v.files, files...)
	}
	v.rep.Files = len(v.files)
	return nil
}

// readManifest reads backup n and returns its stored files, and the nodes
// of its trees as a file whose chunks they are.
func (v *validation) readManifest(ctx context.Context, n string, src manifest.Chunks) ([]fileRef, fileRef, error) {
	var m *manifest.Manifest
	var err error
	if h, ok := v.hashes[n]; ok {
		m, err = manifest.CommittedHeader(ctx, v.r.Store, manifest.Commit{Name: n, Hash: h})
	} else {
		m, err = manifest.GetHeader(ctx, v.r.Store, n)
	}
	if err != nil {
		return nil, fileRef{}, err
	}
	var files []fileRef
	var nodes []chunk.Ref
	for ti := range m.Tables {
		var tf []*manifest.File
		err := m.EachFile(ctx, src, ti, func(r chunk.Ref) error {
			nodes = append(nodes, r)
			return nil
		}, func(f *manifest.File) error {
			tf = append(tf, f)
			return nil
		})
		if err != nil {
			return nil, fileRef{}, err
		}
		t := &m.Tables[ti]
		digests := map[string]*manifest.File{}
		for _, f := range tf {
			if p, err := sstable.ParsePath(f.Path); err == nil && strings.HasPrefix(p.Component, "Digest.") {
				digests[path.Dir(f.Path)+"/"+p.Prefix] = f
			}
		}
		for _, f := range tf {
			if f.Unstored {
				continue // recorded by --ignore-existing: nothing stored to check
			}
			fr := fileRef{backup: n, ks: m.Keyspace, table: t.Name, rec: f}
			if p, err := sstable.ParsePath(f.Path); err == nil && p.Component == "Data.db" {
				fr.digest = digests[path.Dir(f.Path)+"/"+p.Prefix]
			}
			files = append(files, fr)
		}
	}
	tree := fileRef{backup: n, ks: m.Keyspace, rec: &manifest.File{Path: "(the manifest's tree)", Chunks: nodes}}
	return files, tree, nil
}

// committed reports whether a marker of a backup's commit still names it.
func (v *validation) committed(ctx context.Context, name string) bool {
	_, ok, err := manifest.Committed(ctx, v.r.Store, name)
	return err == nil && ok
}

// housekeeping reports unreadable index files, orphan packs, stale
// sessions and open condemned sets.
func (v *validation) housekeeping(ctx context.Context) {
	for k, e := range v.cat.BadIndex {
		v.rep.BadIndex = append(v.rep.BadIndex, k+": "+e.Error())
	}
	slices.Sort(v.rep.BadIndex)
	v.rep.Orphans = v.cat.Orphans
	if now, err := gc.StoreNow(ctx, v.r.Store); err == nil {
		if ss, err := gc.ListSessions(ctx, v.r.Store, now, v.r.GC.WithDefaults().Lease); err == nil {
			for _, s := range ss {
				if s.Stale || s.State == gc.Revoked {
					v.rep.StaleSessions = append(v.rep.StaleSessions, s)
				}
			}
		}
	}
	if sets, _, err := gc.ListCondemned(ctx, v.r.Store, nil); err == nil {
		v.rep.Condemned = sets
	}
}

func (v *validation) problem(f fileRef, kind ProblemKind, what string) {
	v.rep.Problems = append(v.rep.Problems, Problem{Backup: f.backup, Keyspace: f.ks, Table: f.table, File: f.rec.Path, Kind: kind, What: what})
}

// locate finds a stored copy of the indexed size of every referenced
// chunk, and reports the files with chunks that have none.
func (v *validation) locate() {
	copies := map[chunk.ID][]*gc.PackState{}
	for _, p := range v.cat.Packs {
		for _, e := range p.Entries {
			copies[e.ID] = append(copies[e.ID], p)
		}
	}
	seen := map[chunk.ID]bool{}
	for i, f := range v.files {
		v.locateFile(f, copies, seen, func(p *gc.PackState) {
			// Files are located in order, so a file already listed for
			// the pack is its last (a pack of small files serves
			// thousands: searching the whole list was quadratic).
			if u := v.used[p.ID]; len(u) == 0 || u[len(u)-1] != i {
				v.used[p.ID] = append(u, i)
			}
			if v.good.PackSize(p.ID) < 0 {
				v.good.Add(index.PackRecord{ID: p.ID, Size: p.Size, Entries: p.Entries})
			}
		})
	}
	// The nodes of the manifests' trees, as a file whose chunks they are.
	for _, tr := range v.trees {
		v.locateFile(tr, copies, seen, func(*gc.PackState) {})
	}
	v.rep.Chunks = len(seen)
}

// locateFile finds a stored copy of each chunk of f, calls use with its
// pack, and reports f if a chunk has none or only in an unindexed pack.
func (v *validation) locateFile(f fileRef, copies map[chunk.ID][]*gc.PackState, seen map[chunk.ID]bool, use func(*gc.PackState)) {
	var bad []string
	var unindexed *gc.PackState
	for _, c := range f.rec.Chunks {
		seen[c.ID] = true
		p, why := storedCopy(c.ID, copies[c.ID])
		if p == nil {
			bad = append(bad, why)
			continue
		}
		if p.FromHeader && unindexed == nil {
			unindexed = p
		}
		use(p)
	}
	if len(bad) > 0 {
		v.problem(f, Missing, fmt.Sprintf("%d of %d chunks unavailable; first: %s", len(bad), len(f.rec.Chunks), bad[0]))
	}
	if unindexed != nil {
		v.problem(f, Unindexed, fmt.Sprintf("stored only in pack %s, which is in no index file (run cassback repair-index)", unindexed.ID))
	}
}

// storedCopy returns a copy of chunk id in a stored pack of the indexed
// size, one an index file names if it can, or nil and why there is none.
func storedCopy(id chunk.ID, copies []*gc.PackState) (*gc.PackState, string) {
	why := fmt.Sprintf("chunk %s is in no index file and no stored pack", id)
	var found *gc.PackState
	for _, p := range copies {
		switch {
		case !p.Stored:
			why = fmt.Sprintf("chunk %s: its pack %s is missing", id, p.ID)
		case p.StoreSize != p.Size:
			why = fmt.Sprintf("chunk %s: its pack %s has %d bytes, the index says %d (truncated?)", id, p.ID, p.StoreSize, p.Size)
		case !p.FromHeader:
			return p, ""
		case found == nil:
			found = p
		}
	}
	if found != nil {
		return found, ""
	}
	return nil, why
}

// checkHeaders reads the header of every pack in use (two ranged reads
// each) and reports the files using a pack whose header disagrees with the
// index.
func (v *validation) checkHeaders(ctx context.Context) {
	ids := slices.SortedFunc(maps.Keys(v.used), chunk.Compare)
	var mu sync.Mutex
	badPack := map[chunk.ID]string{}
	parallel(ctx, len(ids), v.opts.Threads, func(i int) {
		p := v.cat.Packs[ids[i]]
		entries, _, err := pack.ReadHeader(ctx, v.r.Store, pack.Key(p.ID))
		why := ""
		switch {
		case err != nil:
			why = fmt.Sprintf("pack %s header unreadable: %v", p.ID, err)
		case !slices.Equal(entries, p.Entries):
			why = fmt.Sprintf("pack %s header does not match the index", p.ID)
		}
		mu.Lock()
		defer mu.Unlock()
		v.rep.Packs++
		if why != "" {
			badPack[p.ID] = why
		}
	})
	for _, id := range slices.SortedFunc(maps.Keys(badPack), chunk.Compare) {
		for _, fi := range v.used[id] {
			v.problem(v.files[fi], Corrupt, badPack[id])
		}
	}
}

// checksumFiles reads every file's chunks in order and checks the file's
// BLAKE3 and, for Data.db, its Cassandra digest.
func (r *Repo) checksumFiles(ctx context.Context, files []fileRef, good *index.Index, threads int, rep *ValidateReport, problem func(fileRef, ProblemKind, string), prog *Progress) {
	var mu sync.Mutex
	parallel(ctx, len(files), max(1, threads/2), func(i int) {
		f := files[i]
		h := r.Config.Chunker.Namer.NewHasher()
		var digest []byte
		if f.digest != nil {
			var b strings.Builder
			if err := readFile(ctx, r, good, f.digest, func(p []byte) { b.Write(p) }); err == nil {
				digest = []byte(b.String())
			}
		}
		pr, pw := io.Pipe()
		var derr error
		var wg sync.WaitGroup
		if digest != nil {
			p, _ := sstable.ParsePath(f.rec.Path)
			wg.Add(1)
			go func() {
				defer wg.Done()
				derr = sstable.CheckDigest(p.Version, digest, pr)
				io.Copy(io.Discard, pr)
			}()
		}
		var n int64
		err := readFile(ctx, r, good, f.rec, func(p []byte) {
			h.Write(p)
			n += int64(len(p))
			prog.done(0, int64(len(p)))
			if digest != nil {
				pw.Write(p)
			}
		})
		pw.Close()
		wg.Wait()
		prog.done(1, 0)
		mu.Lock()
		defer mu.Unlock()
		rep.BytesRead += n
		switch {
		case err != nil:
			problem(f, Corrupt, err.Error())
		case h.Sum() != f.rec.Sum:
			problem(f, Corrupt, "file checksum (BLAKE3) does not match")
		case derr != nil:
			problem(f, Corrupt, "Cassandra digest: "+derr.Error())
		}
	})
}

// readFile streams a backed-up file's bytes in order, fetching a window of
// chunks at a time in parallel.
func readFile(ctx context.Context, r *Repo, idx *index.Index, f *manifest.File, fn func([]byte)) error {
	const window = 8
	for i := 0; i < len(f.Chunks); i += window {
		refs := f.Chunks[i:min(i+window, len(f.Chunks))]
		ids := make([]chunk.ID, len(refs))
		for j, c := range refs {
			ids[j] = c.ID
		}
		got := map[chunk.ID][]byte{}
		var mu sync.Mutex
		err := index.Fetch(ctx, r.Store, idx, ids, index.FetchOptions{Parallel: 4, Namer: r.Config.Chunker.Namer}, func(id chunk.ID, data []byte, err error) error {
			if err != nil {
				return err
			}
			mu.Lock()
			got[id] = append([]byte(nil), data...)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range refs {
			fn(got[c.ID])
		}
	}
	return nil
}

// parallel runs fn(0..n-1) on up to k goroutines, starting no more once
// ctx ends.
func parallel(ctx context.Context, n, k int, fn func(i int)) {
	var g errgroup.Group
	g.SetLimit(max(k, 1))
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { fn(i); return nil })
	}
	g.Wait()
}

// sealedPrefixes hold the objects of an encrypted store that a checksum
// validation reads whole beyond the backups' own (manifests, packs and
// index files): authentication is their only check, as nothing else reads
// a marker's body.
var sealedPrefixes = []string{"commits/", "sessions/", "gc/"}

// checkSealed reads every object under sealedPrefixes of an encrypted
// store and reports those that fail their authentication; one that is gone
// by the time it is read (a session ended, a set swept) is passed over.
func (v *validation) checkSealed(ctx context.Context) error {
	if v.r.keys == nil {
		return nil
	}
	for _, p := range sealedPrefixes {
		err := v.r.Store.List(ctx, p, func(info remote.Info) error {
			rc, err := v.r.Store.Get(ctx, info.Key, 0, -1)
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			switch {
			case errors.Is(err, remote.ErrCorrupt):
				v.rep.Damaged = append(v.rep.Damaged, err.Error())
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}
