package cassback

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
)

// RestoreOptions configures a restore. Zero values mean defaults.
type RestoreOptions struct {
	DataDir       string
	Tables        []string // only these tables; all when empty
	Threads       int      // concurrent ranged reads; default 8
	Owner, Group  string   // override the recorded owner and group
	NoChown       bool
	NoChmod       bool
	NoChecksum    bool // trust existing files of the right size; skip the whole-file check
	FailIfCorrupt bool // stop at the first corrupt or missing chunk
	BatchFiles    int  // files restored together; default 512

	prog *Progress // set by Restore when the Repo has Stats
}

// RestoreResult lists what happened to each file, for the report.
type RestoreResult struct {
	Restored []FileOutcome
	Skipped  []FileOutcome
	Moved    []FileOutcome // existing files moved aside (Reason is the new place)
	Failed   []FileOutcome
	Bytes    int64 // bytes written
}

// FileOutcome is one file's fate.
type FileOutcome struct {
	Backup string // backup name
	Path   string // path below the data directory
	Reason string
	Err    error // why it failed, for a failed file
}

// ErrRestoreFailed is returned when at least one file could not be restored.
var ErrRestoreFailed = errors.New("restore incomplete")

type restoreFile struct {
	backup string
	rec    manifest.File
	tmp    string // temporary name below the data directory
	f      *os.File
	err    error
}

// Restore writes the files of the given manifests into opts.DataDir. Each
// file is written under a temporary name and renamed into place only once
// its whole-file BLAKE3 matches; an identical existing file is skipped and
// a different one is moved to <data-dir>/../cassback-corrupt/<path>. Paths
// are resolved inside the data directory with os.Root, so no manifest entry
// can write outside it. The error wraps ErrRestoreFailed when any file
// failed, and gc.ErrRevoked when the restore's session was revoked while
// it ran (stopped past its lease), so what it had still to read was no
// longer protected.
func (r *Repo) Restore(ctx context.Context, ms []*manifest.Manifest, opts RestoreOptions) (res RestoreResult, err error) {
	if opts.Threads <= 0 {
		opts.Threads = 8
	}
	if opts.BatchFiles <= 0 {
		opts.BatchFiles = 512
	}
	for _, m := range ms {
		if err := m.Validate(); err != nil { // a manifest built by the caller, not decoded
			return res, err
		}
	}
	root, err := openTarget(opts.DataDir)
	if err != nil {
		return res, err
	}
	defer root.Close()
	uid, gid, err := lookupOwner(opts)
	if err != nil {
		return res, err
	}
	idx := index.New()
	if len(ms) > 0 && !slices.ContainsFunc(ms, func(m *manifest.Manifest) bool { return m.Host != ms[0].Host }) {
		// The host's index files whole, the others' by their heads: a
		// restore's memory grows with the host's chunks, not the fleet's.
		idx.LoadOthersLazily(ms[0].Host)
	}
	if len(ms) > 0 {
		stop, serr := r.readSession(ctx, ms[0].Host, gc.KindRestore, idx)
		if serr != nil {
			return res, serr
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	// The manifests must still exist, and the index is built, after the
	// session is registered (docs/design.md §4.2). A manifest never changes
	// once written, so seeing it stored is as good as reading it again, and
	// costs no second copy of it in memory.
	for _, m := range ms {
		if err := manifest.Exists(ctx, r.Store, m.Name); err != nil {
			return res, fmt.Errorf("backup %s was removed as the restore began: %w", m.Name, err)
		}
	}
	if _, err := r.loadIndexInto(ctx, idx); err != nil {
		return res, err
	}
	// Each table's files are read from its tree a batch at a time, through
	// the index this session protects, and restored batch by batch: a
	// restore holds one batch of files, whatever the keyspace's size.
	opts.prog = beginRestore(r.Stats, ms, opts.Tables)
	src := &restoreSource{r: r, idx: idx}
	var todo []*restoreFile
	// flush restores the files planned so far. Every one of them is
	// recorded, restored or failed, even when it stops the restore: a file
	// planned may have been moved aside already, and must not vanish from
	// the report.
	flush := func() error {
		if len(todo) == 0 {
			return nil
		}
		batch := todo
		todo = nil
		err := src.know(ctx, batch)
		if err == nil {
			err = r.restoreWithRetry(ctx, root, src, batch, opts, uid, gid)
		} else {
			failAll(batch, err)
		}
		opts.prog.done(int64(len(batch)), 0)
		res.record(batch)
		return err
	}
	for _, m := range ms {
		for i, t := range m.Tables {
			if len(opts.Tables) > 0 && !slices.Contains(opts.Tables, t.Name) {
				continue
			}
			err := m.EachFile(ctx, src, i, nil, func(f *manifest.File) error {
				rf := r.planFile(root, m.Name, f, opts, &res)
				if rf == nil {
					opts.prog.done(1, f.Size)
					return nil
				}
				if todo = append(todo, rf); len(todo) >= opts.BatchFiles {
					return flush()
				}
				return nil
			})
			if err != nil && ctx.Err() != nil {
				// The files read before the context ended are restored
				// still, or recorded as failed: some were moved aside.
				return res, errors.Join(err, flush())
			}
			if err != nil {
				// The table's tree failed (a node lost, damaged or
				// forged): the files read before are restored, the
				// table is reported failed, and the other tables go on.
				res.Failed = append(res.Failed, FileOutcome{Backup: m.Name, Path: m.Keyspace + "/" + t.Name + "/",
					Reason: "the table's file list is unreadable: " + err.Error(), Err: err})
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	// One syncfs for the whole restore instead of an fsync per file: the
	// disk sees one large flush, and a crash before it completes leaves at
	// worst files that the next restore finds different and restores again.
	if err := syncFS(opts.DataDir); err != nil {
		return res, fmt.Errorf("flush restored files to disk: %w", err)
	}
	r.Stats.addError(ErrorRestore, len(res.Failed))
	if len(res.Failed) > 0 {
		return res, fmt.Errorf("%w: %d files failed, first %s: %s", ErrRestoreFailed, len(res.Failed), res.Failed[0].Path, res.Failed[0].Reason)
	}
	return res, nil
}

// failAll fails every file of a batch that has not failed yet: none of
// them was restored.
func failAll(batch []*restoreFile, err error) {
	for _, rf := range batch {
		if rf.err == nil {
			rf.err = err
		}
	}
}

// record adds the fate of each file of a batch restoreWithRetry has done.
func (res *RestoreResult) record(batch []*restoreFile) {
	for _, rf := range batch {
		out := FileOutcome{Backup: rf.backup, Path: rf.rec.Path}
		if rf.err != nil {
			out.Reason, out.Err = rf.err.Error(), rf.err
			res.Failed = append(res.Failed, out)
			continue
		}
		out.Reason = "restored"
		res.Restored = append(res.Restored, out)
		res.Bytes += rf.rec.Size
	}
}

// beginRestore begins a restore's progress in st: the files of the
// tables restored and their bytes, as the manifests' headers count them
// (files skipped count as done at once). It returns nil without Stats.
func beginRestore(st *Stats, ms []*manifest.Manifest, tables []string) *Progress {
	prog := st.begin("restore")
	if prog == nil {
		return nil
	}
	for _, m := range ms {
		for _, t := range m.Tables {
			if len(tables) > 0 && !slices.Contains(tables, t.Name) {
				continue
			}
			files, bytes := int64(t.Count), t.Bytes
			if len(t.Files) > 0 { // a manifest built in memory, not read
				files, bytes = int64(len(t.Files)), 0
				for _, f := range t.Files {
					bytes += f.Size
				}
			}
			prog.plan(files, bytes)
		}
	}
	return prog
}

// restoreSource reads manifests' trees through a restore's index, and
// indexes orphan packs from their headers once when a chunk (a tree's
// node, or a batch's file's) is in no index file.
type restoreSource struct {
	r       *Repo
	idx     *index.Index
	rebuilt bool // the packs no index file names were indexed from their headers
	// fruitless: a look for chunks in no known pack (lookAgain) found
	// nothing new, or left one missing, so none is made again.
	fruitless bool
}

// FetchChunks reads nodes as index.Source does. A node in no pack the
// index knows (a purge swept its pack, after writing the copy it kept
// elsewhere, since the index was loaded) is looked for once more after
// reading the index files written since and the headers of unindexed
// packs (lookAgain), as restoreWithRetry does for files.
func (s *restoreSource) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	src := index.Source{Store: s.r.Store, Index: s.idx, Parallel: 1, Namer: s.r.Config.Chunker.Namer}
	unknown := 0
	for _, id := range ids {
		if !s.idx.Has(id) {
			unknown++
		}
	}
	if unknown > 0 && !s.rebuilt {
		if err := s.rebuild(ctx, unknown); err != nil {
			return err
		}
	}
	err := src.FetchChunks(ctx, ids, fn)
	if !errors.Is(err, index.ErrMissing) {
		return err
	}
	if looked, lerr := s.lookAgain(ctx); lerr != nil {
		return lerr
	} else if !looked {
		return err
	}
	err = src.FetchChunks(ctx, ids, fn)
	if errors.Is(err, index.ErrMissing) {
		s.fruitless = true // missing still: lost, not moved
	}
	return err
}

// lookAgain reads the index files written since the index was loaded and
// indexes, from their headers, the packs no index file names: where a
// chunk found in no known pack may be now. It reports whether it looked.
// Once a look found nothing new, or a chunk was still missing after one
// (fruitless), no other is made: a purge indexes the copy of a chunk it
// keeps before it deletes the pack it replaces, so a chunk in no known
// pack after a look was lost (or its backup purged under a revoked
// session), not moved, and looking again for each later batch would list
// every pack in the store for each, in vain (a keyspace of 800,000 files
// is 1,563 batches), also where other hosts write index files all the
// time.
func (s *restoreSource) lookAgain(ctx context.Context) (bool, error) {
	if s.fruitless {
		return false, nil
	}
	chunks, packs := s.idx.Len(), s.idx.Packs()
	if _, err := s.r.loadIndexInto(ctx, s.idx); err != nil {
		return true, err
	}
	if _, err := s.idx.RebuildOrphans(ctx, s.r.Store); err != nil {
		return true, err
	}
	s.rebuilt = true
	s.fruitless = s.idx.Len() == chunks && s.idx.Packs() == packs
	return true, nil
}

// know makes sure the index knows the chunks of a batch's files, or has
// read the headers of the packs no index file names.
func (s *restoreSource) know(ctx context.Context, batch []*restoreFile) error {
	if s.rebuilt {
		return nil
	}
	if n := unknownChunks(s.idx, batch); n > 0 {
		return s.rebuild(ctx, n)
	}
	return nil
}

func (s *restoreSource) rebuild(ctx context.Context, unknown int) error {
	s.rebuilt = true
	packs, err := s.idx.RebuildOrphans(ctx, s.r.Store)
	if err != nil {
		return err
	}
	s.r.Log.Warn("chunks in no index file; packs indexed from their headers (run cassback repair-index)", "chunks", unknown, "packs", packs)
	return nil
}

// readSession registers a read session (restore, validate) whose
// condemned packs idx avoids: a reader reads another copy when it knows
// one, since a condemned pack is deleted once no committed backup needs
// it. It returns a function that ends the session and reports whether it
// was revoked meanwhile. A store this process cannot write (read-only
// credentials) still reads, without that protection.
func (r *Repo) readSession(ctx context.Context, host string, kind gc.Kind, idx *index.Index) (func() error, error) {
	sess, sets, err := r.startSession(ctx, host, kind, func(fresh []gc.CondemnedSet) { idx.Avoid(packsOf(fresh)) })
	if err != nil && !errors.Is(err, fs.ErrPermission) && !errors.Is(err, syscall.EROFS) && !errors.Is(err, errors.ErrUnsupported) {
		// Revoked while it started (stopped past the lease), or a failing
		// store: reading on unprotected could meet packs a purge deletes.
		return nil, fmt.Errorf("start the %s session: %w", kind, err)
	}
	if err != nil {
		// The store refuses this process writes, is on a read-only file
		// system, or has lost the conditional writes sessions need (no
		// purge runs there then but with --exclusive, alone).
		r.Log.Warn("running without a session: a concurrent purge could delete packs it reads", "kind", kind, "err", err)
		return func() error { return nil }, nil
	}
	idx.Avoid(packsOf(sets))
	return func() error {
		err := sess.end(ctx)
		switch {
		case errors.Is(err, gc.ErrRevoked):
			return fmt.Errorf("the %s session was revoked (stopped longer than the session lease), so a purge may have deleted what it had still to read: run it again: %w", kind, err)
		case errors.Is(err, gc.ErrLeftBehind):
			// Confirmed live to the end; only its object stays.
			r.Log.Warn("session not removed; a purge removes it once stale", "kind", kind, "err", err)
			return nil
		case err != nil:
			// Its last look at its session object failed: whether a
			// purge revoked it meanwhile is not known, and a reader must
			// not report success it cannot vouch for.
			return fmt.Errorf("the %s session could not be ended, so whether a purge revoked it (and may have deleted what it had still to read) is not known: run it again: %w", kind, err)
		}
		return nil
	}, nil
}

// restoreWithRetry restores a batch; files that failed because a chunk
// was in no pack the index knows (a purge swept a pack and wrote the kept
// copy elsewhere after the index was loaded) are tried once more, after
// src looked again (lookAgain) and found something new. With
// FailIfCorrupt, a file whose chunk is still missing then stops the
// restore.
func (r *Repo) restoreWithRetry(ctx context.Context, root *os.Root, src *restoreSource, batch []*restoreFile, opts RestoreOptions, uid, gid int) error {
	if err := r.restoreBatch(ctx, root, src.idx, batch, opts, uid, gid); err != nil {
		return err
	}
	var again []*restoreFile
	for _, rf := range batch {
		if errors.Is(rf.err, index.ErrMissing) {
			again = append(again, rf)
		}
	}
	if len(again) == 0 {
		return nil
	}
	looked, err := src.lookAgain(ctx)
	if err != nil {
		for _, rf := range again {
			rf.err = err // not missing: the look for other copies failed
		}
		return err
	}
	if looked { // else an earlier look found nothing new: they stay missing
		for _, rf := range again {
			rf.err, rf.f, rf.tmp = nil, nil, ""
		}
		if err := r.restoreBatch(ctx, root, src.idx, again, opts, uid, gid); err != nil {
			return err
		}
		for _, rf := range again {
			if errors.Is(rf.err, index.ErrMissing) {
				src.fruitless = true // missing still: lost, not moved
			}
		}
	}
	if opts.FailIfCorrupt {
		for _, rf := range again {
			if rf.err != nil {
				return fmt.Errorf("restore %s: %w", rf.rec.Path, rf.err)
			}
		}
	}
	return nil
}

// unknownChunks counts the chunks of the files to restore that the index
// does not know.
func unknownChunks(idx *index.Index, todo []*restoreFile) int {
	n := 0
	for _, rf := range todo {
		for _, c := range rf.rec.Chunks {
			if !idx.Has(c.ID) {
				n++
			}
		}
	}
	return n
}

// openTarget creates the data directory if needed and opens it as a root
// that no path can leave.
func openTarget(dir string) (*os.Root, error) {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("restore target %s: not a directory", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("restore target %s: %w", dir, unwrapPath(err))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("restore target %s: %w", dir, unwrapPath(err))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("restore target %s: %w", dir, unwrapPath(err))
	}
	return root, nil
}

// planFile decides a file's fate before anything is fetched: skipped (not
// stored, or already identical) or failed (an unsafe path, an existing
// file that cannot be moved aside), both recorded in res, or to restore
// (returned).
func (r *Repo) planFile(root *os.Root, backup string, f *manifest.File, opts RestoreOptions, res *RestoreResult) *restoreFile {
	out := FileOutcome{Backup: backup, Path: f.Path}
	if f.Unstored {
		out.Reason = "not backed up (recorded by backup --ignore-existing)"
		res.Skipped = append(res.Skipped, out)
		return nil
	}
	if !safeRel(f.Path) {
		out.Reason = "path escapes the data directory"
		res.Failed = append(res.Failed, out)
		return nil
	}
	skip, reason, err := r.checkExisting(root, opts, *f)
	switch {
	case err != nil:
		out.Reason = err.Error()
		res.Failed = append(res.Failed, out)
		return nil
	case skip:
		out.Reason = reason
		res.Skipped = append(res.Skipped, out)
		return nil
	case reason != "":
		moved, err := moveAside(opts.DataDir, f.Path)
		if err != nil {
			out.Reason = "existing file differs and could not be moved aside: " + err.Error()
			res.Failed = append(res.Failed, out)
			return nil
		}
		res.Moved = append(res.Moved, FileOutcome{Backup: backup, Path: f.Path, Reason: moved})
	}
	return &restoreFile{backup: backup, rec: *f}
}

// checkExisting decides what to do with a file already at the target path:
// skip it (identical), replace it (reason set), or restore (nothing there).
func (r *Repo) checkExisting(root *os.Root, opts RestoreOptions, f manifest.File) (skip bool, reason string, err error) {
	fi, err := root.Lstat(filepath.FromSlash(f.Path))
	if errors.Is(err, fs.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	if !fi.Mode().IsRegular() {
		return false, "", fmt.Errorf("target exists and is not a regular file")
	}
	if fi.Size() == f.Size && opts.NoChecksum {
		return true, "existing file has the right size (not checksummed)", nil
	}
	if fi.Size() == f.Size {
		ef, err := root.Open(filepath.FromSlash(f.Path))
		if err != nil {
			return false, "", err
		}
		defer ef.Close()
		h := r.Config.Chunker.Namer.NewHasher()
		if _, err := io.Copy(h, ef); err != nil {
			return false, "", err
		}
		if h.Sum() == f.Sum {
			return true, "existing file is identical (checksummed)", nil
		}
	}
	return false, "existing file differs", nil
}

// moveAside moves a differing existing file to <data-dir>/../cassback-corrupt/<rel>,
// within the data directory's parent: no symlink, in the data directory or
// in the corrupt folder, can send it anywhere else.
func moveAside(dataDir, rel string) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", err
	}
	parent, err := os.OpenRoot(filepath.Dir(abs))
	if err != nil {
		return "", unwrapPath(err)
	}
	defer parent.Close()
	dst := filepath.Join("cassback-corrupt", filepath.FromSlash(rel))
	if err := mkdirNoLinks(parent, filepath.Dir(dst)); err != nil {
		return "", err
	}
	if _, err := parent.Lstat(dst); err == nil {
		dst += "." + time.Now().UTC().Format("20060102T150405.000000000")
	}
	if err := parent.Rename(filepath.Join(filepath.Base(abs), filepath.FromSlash(rel)), dst); err != nil {
		return "", unwrapPath(err)
	}
	return filepath.Join(filepath.Dir(abs), dst), nil
}

// mkdirNoLinks makes the folder dir of root and its parents, refusing any
// that exists as something other than a folder: a symlink is never
// followed.
func mkdirNoLinks(root *os.Root, dir string) error {
	cur := ""
	for _, part := range strings.Split(filepath.ToSlash(dir), "/") {
		cur = filepath.Join(cur, part)
		fi, err := root.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return unwrapPath(err)
			}
		case err != nil:
			return unwrapPath(err)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a folder (%s); it is not followed", filepath.Join(root.Name(), cur), fi.Mode().Type())
		}
	}
	return nil
}

type placement struct {
	rf  *restoreFile
	off int64
}

// restoreWindow bounds the chunk references one fetch round places: a batch's
// bookkeeping is then a few MiB however many chunks its files have (one
// Data.db of a manifest at its limit has 1.16 million).
var restoreWindow = 1 << 16 // a variable for tests

// restoreBatch fetches the chunks of a batch of files with parallel ranged
// reads, a window of references at a time, and writes each chunk at its
// offsets in every file of the window that has it.
func (r *Repo) restoreBatch(ctx context.Context, root *os.Root, idx *index.Index, batch []*restoreFile, opts RestoreOptions, uid, gid int) error {
	createTemps(root, batch)
	var err error
	for w := (window{batch: batch}); err == nil; {
		where, ids := w.next(restoreWindow)
		if len(ids) == 0 {
			break
		}
		err = r.fetchWindow(ctx, idx, where, ids, opts)
	}
	// Finish files in parallel: the whole-file hash is CPU, the fsync waits
	// on the disk, and both overlap well across files.
	var g errgroup.Group
	g.SetLimit(opts.Threads)
	for _, rf := range batch {
		if rf.f == nil {
			continue
		}
		g.Go(func() error {
			if rf.err == nil && err == nil {
				rf.err = r.finishFile(root, rf, opts, uid, gid)
			}
			rf.f.Close()
			if rf.err != nil || err != nil {
				root.Remove(rf.tmp)
			}
			return nil
		})
	}
	g.Wait()
	if err != nil {
		failAll(batch, err) // none was finished
	}
	return err
}

// fetchWindow fetches the chunks ids, each once, and writes each where it
// goes. A file whose write fails gets its err set and is written no more.
func (r *Repo) fetchWindow(ctx context.Context, idx *index.Index, where map[chunk.ID][]placement, ids []chunk.ID, opts RestoreOptions) error {
	var mu sync.Mutex
	return index.Fetch(ctx, r.Store, idx, ids, index.FetchOptions{Parallel: opts.Threads, Namer: r.Config.Chunker.Namer}, func(id chunk.ID, data []byte, err error) error {
		for _, p := range where[id] {
			mu.Lock()
			failed := p.rf.err != nil
			mu.Unlock()
			if failed {
				continue
			}
			if err == nil {
				_, err = p.rf.f.WriteAt(data, p.off)
			}
			if err == nil {
				opts.prog.done(0, int64(len(data)))
			}
			if err != nil {
				mu.Lock()
				if p.rf.err == nil {
					p.rf.err = err
				}
				mu.Unlock()
				// A chunk in no known pack may have been moved by a
				// purge: restoreWithRetry looks again before it stops.
				if opts.FailIfCorrupt && !errors.Is(err, index.ErrMissing) {
					return fmt.Errorf("restore %s: %w", p.rf.rec.Path, err)
				}
			}
		}
		return nil
	})
}

// window walks the chunk references of a batch's created files in order.
type window struct {
	batch       []*restoreFile
	file, chunk int   // the next reference
	off         int64 // its offset in its file
}

// next returns where each chunk of the next n references goes, and those
// chunks, each once; none when the batch is done.
func (w *window) next(n int) (map[chunk.ID][]placement, []chunk.ID) {
	where := map[chunk.ID][]placement{}
	var ids []chunk.ID
	for taken := 0; taken < n && w.file < len(w.batch); {
		rf := w.batch[w.file]
		if rf.f == nil || rf.err != nil || w.chunk == len(rf.rec.Chunks) {
			w.file, w.chunk, w.off = w.file+1, 0, 0
			continue
		}
		c := rf.rec.Chunks[w.chunk]
		if _, ok := where[c.ID]; !ok {
			ids = append(ids, c.ID)
		}
		where[c.ID] = append(where[c.ID], placement{rf, w.off})
		w.off += int64(c.Len)
		w.chunk++
		taken++
	}
	return where, ids
}

// testHookFolderMade runs after createTemps makes a folder: tests swap it
// for a symlink there.
var testHookFolderMade = func(dir string) {}

// createTemps creates each file's temporary file at its final size. A file
// that cannot be created gets its err set.
func createTemps(root *os.Root, batch []*restoreFile) {
	var sfx [6]byte
	rand.Read(sfx[:])
	made := map[string]error{} // each folder is created once per batch
	for _, rf := range batch {
		rel := filepath.FromSlash(rf.rec.Path)
		dir := filepath.Dir(rel)
		mkErr, done := made[dir]
		if !done {
			mkErr = root.MkdirAll(dir, 0o755)
			made[dir] = mkErr
			testHookFolderMade(dir)
		}
		if mkErr != nil {
			rf.err = fmt.Errorf("create folder: %w", unwrapPath(mkErr))
			continue
		}
		// A ".tmp" suffix is what Cassandra itself ignores and cleans up.
		rf.tmp = filepath.Join(dir, "."+filepath.Base(rel)+".cassback-"+hex.EncodeToString(sfx[:])+".tmp")
		f, err := root.OpenFile(rf.tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			rf.err = fmt.Errorf("create: %w", unwrapPath(err))
			continue
		}
		rf.f = f
		if err := f.Truncate(rf.rec.Size); err != nil {
			rf.err = fmt.Errorf("size: %w", err)
		}
	}
}

// finishFile checks a fully written temporary file and renames it into place.
func (r *Repo) finishFile(root *os.Root, rf *restoreFile, opts RestoreOptions, uid, gid int) error {
	f := rf.f
	if !opts.NoChecksum {
		h := r.Config.Chunker.Namer.NewHasher()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, rf.rec.Size)); err != nil {
			return err
		}
		if h.Sum() != rf.rec.Sum {
			return fmt.Errorf("restored file checksum mismatch")
		}
	}
	if !opts.NoChmod {
		if err := f.Chmod(fs.FileMode(rf.rec.Mode).Perm()); err != nil {
			return err
		}
	}
	if !opts.NoChown {
		u, g := uid, gid
		if u < 0 {
			u = int(rf.rec.UID)
			if rf.rec.User != "" {
				if x, err := user.Lookup(rf.rec.User); err == nil {
					u, _ = strconv.Atoi(x.Uid)
				}
			}
		}
		if g < 0 {
			g = int(rf.rec.GID)
			if rf.rec.Group != "" {
				if x, err := user.LookupGroup(rf.rec.Group); err == nil {
					g, _ = strconv.Atoi(x.Gid)
				}
			}
		}
		if err := f.Chown(u, g); err != nil {
			return err
		}
	}
	rel := filepath.FromSlash(rf.rec.Path)
	if err := setMTime(root, rf.tmp, f, rf.rec.MTime); err != nil {
		return err
	}
	if err := root.Rename(rf.tmp, rel); err != nil {
		return unwrapPath(err)
	}
	return nil
}

// lookupOwner resolves opts.Owner and opts.Group; -1 means "as recorded".
func lookupOwner(opts RestoreOptions) (int, int, error) {
	uid, gid := -1, -1
	if opts.NoChown {
		return uid, gid, nil
	}
	if opts.Owner != "" {
		u, err := user.Lookup(opts.Owner)
		if err != nil {
			return 0, 0, fmt.Errorf("owner %q: no such user", opts.Owner)
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if opts.Group != "" {
		g, err := user.LookupGroup(opts.Group)
		if err != nil {
			return 0, 0, fmt.Errorf("group %q: no such group", opts.Group)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// safeRel reports whether p is a clean relative slash path inside its root.
func safeRel(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return false
	}
	if path.Clean(p) != p {
		return false
	}
	for _, s := range strings.Split(p, "/") {
		if s == ".." || s == "." {
			return false
		}
	}
	return true
}
