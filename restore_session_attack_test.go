package cassback

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// Attacks on restore as it reads each table's tree under its session, a
// batch of leaves at a time (restore.go: Restore, restoreSource; select.go:
// Select returns headers only): purges that repack and sweep tree and data
// packs between Select and Restore or while a restore waits between two
// batches of leaves, a restore stopped past its lease, a tree pack lost, a
// restore cancelled between batches, forged headers. What must hold: a
// restore whose session is live restores byte-identical files; one whose
// session was revoked ends with an error saying so; none ever writes wrong
// bytes or leaves a file out without saying so.

// rsaWide is the number of files of a wide table, each a leaf of its own:
// three batches of leaves (64, 64, 22).
const rsaWide = 150

// rsaData is a data folder of files backed up by the tests, by keyspace.
type rsaData struct {
	dir   string
	paths map[string][]string // keyspace -> paths below dir, sorted
}

// rsaNames returns n paths in table t of keyspace ks of files that each
// end their leaf (the low 6 bits of the BLAKE3 of path, NUL and root are
// zero, as manifest's leafEnds has it), so that each is a leaf of its own.
func rsaNames(ks string, n int) []string {
	var out []string
	for gen := 1; len(out) < n; gen++ {
		p := fmt.Sprintf("%s/t-%s/nb-%d-big-Data.db", ks, tbl, gen)
		if h := chunk.Sum([]byte(p + "\x00/data")); h[0]&63 == 0 {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// rsaFiles writes the files of each keyspace once (so every backup of
// them records the same leaves): reps lines of its own path each.
func rsaFiles(t *testing.T, files map[string]int, reps map[string]int) *rsaData {
	t.Helper()
	d := &rsaData{dir: t.TempDir(), paths: map[string][]string{}}
	for ks, n := range files {
		d.paths[ks] = rsaNames(ks, n)
		for i, rel := range d.paths[ks] {
			p := filepath.Join(d.dir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, bytes.Repeat([]byte(rel+"\n"), reps[ks]+i%7), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

// rsaCommit stores the files of the keyspaces through b and commits one
// manifest of each, in one commit (so one pack of trees holds them all);
// it returns their names in the keyspaces' order.
func rsaCommit(t *testing.T, b *backupRun, d *rsaData, kss ...string) []string {
	t.Helper()
	ctx := t.Context()
	p := b.w.NewPacker()
	var ms []*manifest.Manifest
	for _, ks := range kss {
		var recs []manifest.File
		for _, rel := range d.paths[ks] {
			f, err := os.Open(filepath.Join(d.dir, filepath.FromSlash(rel)))
			if err != nil {
				t.Fatal(err)
			}
			rec, _, err := b.storeFile(ctx, p, "/data", rel, f, storeOptions{})
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rec)
		}
		ms = append(ms, b.newManifest(ks, time.Now(), map[tableKey][]manifest.File{{"t", tbl}: recs}))
	}
	names, err := b.commit(ctx, ms, nil)
	if err != nil || len(names) != len(kss) {
		t.Fatalf("commit: %v %v", names, err)
	}
	out := make([]string, len(kss))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// rsaBackup backs up the keyspaces of d as host a in one run.
func rsaBackup(t *testing.T, r *Repo, d *rsaData, kss ...string) []string {
	t.Helper()
	b, err := r.beginBackup(t.Context(), BackupOptions{Host: "a", Threads: 1}, kss, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.end(t.Context())
	return rsaCommit(t, b, d, kss...)
}

// rsaLeaves returns the leaves of the (only) table of a stored backup, in
// order, after checking that the tree has one leaf a file, under one inner
// node or more (a level of leaves ends where a leaf's ID says so: about
// one in 32, so one time in a hundred a root holds all 150).
func rsaLeaves(t *testing.T, st remote.Store, name string, files int) []chunk.Ref {
	t.Helper()
	m, err := manifest.GetHeader(t.Context(), st, name)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []chunk.Ref
	n := 0
	err = m.EachFile(t.Context(), ChunksOf(st), 0, func(r chunk.Ref) error {
		nodes = append(nodes, r)
		return nil
	}, func(*manifest.File) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if n != files || len(nodes) < files+1 {
		t.Fatalf("%s: %d files and %d nodes; want %d files, each a leaf, under a root", name, n, len(nodes), files)
	}
	return nodes[len(nodes)-files:]
}

// rsaLocate returns where the index files of st place a chunk.
func rsaLocate(t *testing.T, st remote.Store, id chunk.ID) index.Location {
	t.Helper()
	idx := index.New()
	if _, err := idx.Load(t.Context(), st, ""); err != nil {
		t.Fatal(err)
	}
	loc, ok := idx.Lookup(id)
	if !ok {
		t.Fatalf("chunk %s in no index file", id)
	}
	return loc
}

func rsaStored(t *testing.T, st remote.Store, p chunk.ID) bool {
	t.Helper()
	_, err := st.Stat(t.Context(), pack.Key(p))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// rsaRoot decodes a stored manifest object of one table.
func rsaRoot(t *testing.T, st remote.Store, name string) forgedRoot {
	t.Helper()
	key, _ := manifest.Key(name)
	rc, err := st.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	var ro forgedRoot
	if err := json.NewDecoder(zr).Decode(&ro); err != nil || len(ro.Tables) != 1 {
		t.Fatalf("decode %s: %v", name, err)
	}
	return ro
}

// rsaStore holds, once armed, the first Get that gate matches until
// release is closed (or the request's context ends): a restore stopped
// between two of its requests. It can fail Stat of chosen keys, and counts
// the listings of each prefix.
type rsaStore struct {
	remote.Store
	mu      sync.Mutex
	gate    func(key string, off, n int64) bool
	hit     chan struct{}
	release chan struct{}
	statErr func(key string) error
	onList  func(prefix string) // called before each listing, from its caller
	lists   map[string]int
}

func newRSAStore(st remote.Store) *rsaStore {
	return &rsaStore{Store: st, hit: make(chan struct{}), release: make(chan struct{}), lists: map[string]int{}}
}

// holdRange arms the store to hold the first Get of pack p whose range
// covers the chunk at loc.
func (s *rsaStore) holdRange(loc index.Location) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := pack.Key(loc.Pack)
	at := int64(loc.Off)
	s.gate = func(k string, off, n int64) bool {
		return k == key && off <= at && (n < 0 || at < off+n)
	}
}

func (s *rsaStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.mu.Lock()
	g := s.gate
	held := g != nil && g(key, off, n)
	if held {
		s.gate = nil
	}
	s.mu.Unlock()
	if held {
		close(s.hit)
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Get(ctx, key, off, n)
}

func (s *rsaStore) Stat(ctx context.Context, key string) (remote.Info, error) {
	s.mu.Lock()
	f := s.statErr
	s.mu.Unlock()
	if f != nil {
		if err := f(key); err != nil {
			return remote.Info{}, err
		}
	}
	return s.Store.Stat(ctx, key)
}

func (s *rsaStore) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	s.mu.Lock()
	s.lists[prefix]++
	f := s.onList
	s.mu.Unlock()
	if f != nil {
		f(prefix)
	}
	return s.Store.List(ctx, prefix, fn)
}

func (s *rsaStore) listed(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists[prefix]
}

func (s *rsaStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	return s.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
}

type rsaOutcome struct {
	res RestoreResult
	err error
}

// rsaRestore starts a restore of ms into dst by r, in batches of 16 files
// (so files are written between two batches of leaves).
func rsaRestore(ctx context.Context, r *Repo, ms []*manifest.Manifest, dst string) chan rsaOutcome {
	done := make(chan rsaOutcome, 1)
	go func() {
		res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true, BatchFiles: 16})
		done <- rsaOutcome{res, err}
	}()
	return done
}

// rsaWaitHeld waits until the restore's request is held, failing if the
// restore ends first.
func rsaWaitHeld(t *testing.T, s *rsaStore, done chan rsaOutcome) {
	t.Helper()
	select {
	case <-s.hit:
	case o := <-done:
		t.Fatalf("the restore ended before it read its second batch of leaves: %v", o.err)
	case <-time.After(60 * time.Second):
		t.Fatalf("the restore never read its second batch of leaves")
	}
}

func rsaWait(t *testing.T, done chan rsaOutcome) rsaOutcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(90 * time.Second):
		t.Fatalf("the restore hangs")
		return rsaOutcome{}
	}
}

// rsaCheck checks what a restore left in dst: no temporary file, every
// file byte-identical to its source, and, when all, every file of want.
// It returns how many files dst holds.
func rsaCheck(t *testing.T, d *rsaData, dst string, want []string, all bool) int {
	t.Helper()
	var got []string
	err := filepath.WalkDir(dst, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		rel = filepath.ToSlash(rel)
		if strings.HasSuffix(rel, ".tmp") {
			t.Errorf("temporary file left: %s", rel)
			return nil
		}
		got = append(got, rel)
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(d.dir, filepath.FromSlash(rel)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("BREAK: restored %s is not its source's bytes (%v)", rel, err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	slices.Sort(got)
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("BREAK: restored %s, which the backup does not hold", g)
		}
	}
	if all && !slices.Equal(got, want) {
		t.Errorf("BREAK: restored %d files, want the backup's %d", len(got), len(want))
	}
	return len(got)
}

// rsaTwo commits keyspaces ks (a wide table) and ks2 (more files, larger)
// in one run of host a, so that one tree pack and one data pack hold both:
// once ks2's backup is removed, both packs are mostly dead and a purge
// with a low repack threshold repacks them.
func rsaTwo(t *testing.T, r *Repo) (*rsaData, string, chunk.ID, chunk.ID) {
	t.Helper()
	d := rsaFiles(t, map[string]int{"ks": rsaWide, "ks2": 2 * rsaWide}, map[string]int{"ks": 20, "ks2": 120})
	names := rsaBackup(t, r, d, "ks", "ks2")
	leaves := rsaLeaves(t, r.Store, names[0], rsaWide)
	tp := rsaLocate(t, r.Store, leaves[0].ID).Pack
	m, err := manifest.Get(t.Context(), r.Store, names[0], ChunksOf(r.Store))
	if err != nil {
		t.Fatal(err)
	}
	dp := rsaLocate(t, r.Store, m.Tables[0].Files[0].Chunks[0].ID).Pack
	if rsaLocate(t, r.Store, rsaLeaves(t, r.Store, names[1], 2*rsaWide)[0].ID).Pack != tp {
		t.Fatalf("the two keyspaces' trees are in different packs: the attack misses")
	}
	return d, names[0], tp, dp
}

// rsaPurgeKS2 removes ks2's backup and repacks what it leaves sparse, with
// the options o, purging until the tree pack tp is gone or n purges ran;
// it returns what the purges did.
func rsaPurgeKS2(t *testing.T, st remote.Store, o gc.Options, tp chunk.ID, n int) []gc.Report {
	t.Helper()
	rp := repoOn(t, st, o)
	var reps []gc.Report
	for i := range n {
		res, err := rp.Purge(t.Context(), PurgeOptions{Host: "a", Keyspaces: []string{"ks2"}, Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: fmt.Sprintf("p%d", i)})
		if err != nil {
			t.Fatalf("purge %d: %v", i, err)
		}
		t.Logf("purge %d: removed %v; %+v", i, res.Manifests, res.GC)
		reps = append(reps, res.GC)
		if !rsaStored(t, st, tp) {
			break
		}
	}
	return reps
}

// repackOpts are a purge's options that repack any pack with a dead
// chunk and sweep at once; the lease is the default (30 min), so every
// session of a test stays live.
var repackOpts = gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 0.01}

// Attack 1. A restore selects a backup (its header), then a purge runs to
// completion before it restores: it repacks the backup's tree pack and
// data pack (another keyspace's backup removed), condemns and sweeps them;
// or it removes the backup itself and sweeps everything. The restore must
// restore every file byte-identical, or fail saying the backup is gone.
func TestRestoreSessionAttackSelectThenPurge(t *testing.T) {
	t.Run("repacked", func(t *testing.T) {
		ctx := t.Context()
		st := localStore(t)
		r := repoOn(t, st, writerOpts)
		d, name, tp, dp := rsaTwo(t, r)
		ms, err := Select(ctx, st, "a", "", []string{"ks"}, time.Now())
		if err != nil || len(ms) != 1 || ms[0].Name != name {
			t.Fatalf("select: %v %v", ms, err)
		}
		rsaPurgeKS2(t, st, repackOpts, tp, 3)
		if rsaStored(t, st, tp) || rsaStored(t, st, dp) {
			t.Fatalf("the tree pack (%v) or data pack (%v) was not swept: the attack misses", rsaStored(t, st, tp), rsaStored(t, st, dp))
		}
		dst := filepath.Join(t.TempDir(), "r")
		res, err := repoOn(t, st, writerOpts).Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true, BatchFiles: 16})
		if err != nil {
			t.Fatalf("BREAK: restore after the purge repacked and swept its packs: %v", err)
		}
		if len(res.Restored) != rsaWide {
			t.Errorf("restored %d files, want %d", len(res.Restored), rsaWide)
		}
		rsaCheck(t, d, dst, d.paths["ks"], true)
	})
	t.Run("removed", func(t *testing.T) {
		ctx := t.Context()
		st := localStore(t)
		r := repoOn(t, st, writerOpts)
		d, name, tp, _ := rsaTwo(t, r)
		ms, err := Select(ctx, st, "a", name, nil, time.Time{})
		if err != nil || len(ms) != 1 {
			t.Fatalf("select: %v %v", ms, err)
		}
		rp := repoOn(t, st, repackOpts)
		res, err := rp.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p"})
		if err != nil || !slices.Contains(res.Manifests, name) || rsaStored(t, st, tp) {
			t.Fatalf("purge --purge-latest: %v, removed %v, tree pack stored %v: the attack misses", err, res.Manifests, rsaStored(t, st, tp))
		}
		dst := filepath.Join(t.TempDir(), "r")
		out, err := repoOn(t, st, writerOpts).Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
		t.Logf("restore: %v", err)
		if err == nil {
			t.Fatalf("BREAK: restore of a removed backup succeeded (%d files restored)", len(out.Restored))
		}
		if !errors.Is(err, manifest.ErrNoBackup) || !strings.Contains(err.Error(), name) {
			t.Errorf("restore of a removed backup: %q; want it to say that %s is gone", err, name)
		}
		if n := rsaCheck(t, d, dst, d.paths["ks"], false); n != 0 {
			t.Errorf("restore of a removed backup wrote %d files", n)
		}
	})
}

// Attack 2. A restore waits between two batches of leaves (its read of the
// second batch held) while a purge removes another keyspace's backup,
// repacks the tree pack holding the next batch and the data pack, and
// condemns them. The restore's session is live and has not acknowledged
// the set, so the sweep must wait; the restore then completes, every file
// byte-identical. Once it ended, the next purge sweeps.
func TestRestoreSessionAttackPurgeBetweenBatches(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	d, name, tp, dp := rsaTwo(t, r)
	leaves := rsaLeaves(t, st, name, rsaWide)
	ms, err := Select(ctx, st, "a", "", []string{"ks"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	gs := newRSAStore(st)
	gs.holdRange(rsaLocate(t, st, leaves[64].ID))
	dst := filepath.Join(t.TempDir(), "r")
	done := rsaRestore(ctx, repoOn(t, gs, writerOpts), ms, dst)
	rsaWaitHeld(t, gs, done)
	reps := rsaPurgeKS2(t, st, repackOpts, tp, 2)
	if reps[0].Repacked == 0 || reps[0].Condemned == 0 {
		t.Fatalf("the purge repacked %d and condemned %d packs: the attack misses", reps[0].Repacked, reps[0].Condemned)
	}
	if !rsaStored(t, st, tp) || !rsaStored(t, st, dp) {
		t.Fatalf("BREAK: a purge swept the tree pack (stored %v) or data pack (stored %v) of a live restore that had not acknowledged their set", rsaStored(t, st, tp), rsaStored(t, st, dp))
	}
	close(gs.release)
	o := rsaWait(t, done)
	if o.err != nil {
		t.Fatalf("BREAK: restore with a live session failed after a purge repacked its packs: %v", o.err)
	}
	rsaCheck(t, d, dst, d.paths["ks"], true)
	rsaPurgeKS2(t, st, repackOpts, tp, 2)
	if rsaStored(t, st, tp) {
		t.Errorf("the repacked tree pack is not swept once the restore ended")
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
}

// Attack 2, the sweep a live restore allows. A writer W deduplicates a
// backup's nodes and data against packs a purge condemns meanwhile (W has
// not heard of the set) and commits k1, whose tree and data are then only
// in condemned packs. A restore of k1 begins (its session acknowledges the
// set at once; its index knows k1's nodes and chunks only in the condemned
// packs) and waits: between two batches of leaves, or reading the data of
// its second batch of files. A writer that began after the set stores the
// same files again in new packs, and a purge sweeps the set, keeping those
// copies: the packs the restore was reading are deleted under it, as the
// protocol allows. The restore must find the new copies (read the index
// files written since) and restore every file, also with --fail-if-corrupt
// (a chunk moved is not a chunk missing).
func TestRestoreSessionAttackSweepOfAcknowledgedSet(t *testing.T) {
	for _, held := range []string{"tree", "data", "data, fail if corrupt"} {
		t.Run(held, func(t *testing.T) {
			ctx := t.Context()
			st := localStore(t)
			o := gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 1}
			r := repoOn(t, st, o)
			d := rsaFiles(t, map[string]int{"ks": rsaWide}, map[string]int{"ks": 20})
			k0 := rsaBackup(t, r, d, "ks")[0]
			leaves := rsaLeaves(t, st, k0, rsaWide)
			m0, err := manifest.Get(ctx, st, k0, ChunksOf(st))
			if err != nil {
				t.Fatal(err)
			}
			t0 := rsaLocate(t, st, leaves[64].ID)
			// The file restored in the second batch of 16.
			d0 := rsaLocate(t, st, m0.Tables[0].Files[20].Chunks[0].ID)
			w, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			p1, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p1"})
			if err != nil || p1.GC.Condemned == 0 || p1.GC.Deleted != 0 {
				t.Fatalf("purge --purge-latest with W live: %v %+v; want packs condemned, none deleted", err, p1.GC)
			}
			k1 := rsaCommit(t, w, d, "ks")[0]
			w.end(ctx)
			if w.metaDup.Load() == 0 || w.w.Stats().Nodes.Load() != 0 || w.w.Stats().ChunksNew.Load() != 0 {
				t.Fatalf("W stored %d nodes and %d chunks: it did not dedup against the condemned packs; the attack misses", w.w.Stats().Nodes.Load(), w.w.Stats().ChunksNew.Load())
			}
			if l := rsaLeaves(t, st, k1, rsaWide); l[64] != leaves[64] {
				t.Fatalf("k1's leaves are not k0's: the attack misses")
			}
			ms, err := Select(ctx, st, "a", k1, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			gs := newRSAStore(st)
			if held == "tree" {
				gs.holdRange(t0)
			} else {
				gs.holdRange(d0)
			}
			dst := filepath.Join(t.TempDir(), "r")
			done := make(chan rsaOutcome, 1)
			go func() {
				res, err := repoOn(t, gs, o).Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true, BatchFiles: 16, FailIfCorrupt: strings.Contains(held, "fail")})
				done <- rsaOutcome{res, err}
			}()
			rsaWaitHeld(t, gs, done)
			w2, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			rsaCommit(t, w2, d, "ks")
			w2.end(ctx)
			if w2.w.Stats().Nodes.Load() == 0 || w2.w.Stats().ChunksNew.Load() == 0 {
				t.Fatalf("W2 stored %d nodes and %d chunks: the attack misses", w2.w.Stats().Nodes.Load(), w2.w.Stats().ChunksNew.Load())
			}
			p2, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p2"})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("sweep with the restore live: %+v", p2.GC)
			if rsaStored(t, st, t0.Pack) || rsaStored(t, st, d0.Pack) {
				t.Fatalf("the condemned tree pack (stored %v) or data pack (stored %v) was not swept: the attack misses", rsaStored(t, st, t0.Pack), rsaStored(t, st, d0.Pack))
			}
			close(gs.release)
			out := rsaWait(t, done)
			if out.err != nil {
				t.Fatalf("BREAK: restore with a live session failed after a sweep its session allowed: %v", out.err)
			}
			rsaCheck(t, d, dst, d.paths["ks"], true)
			if err := committedWhole(t, st); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Attack 3. A restore is stopped between two batches of leaves for longer
// than the session lease (its clock frozen: its heartbeat never renews). A
// purge revokes its session and repacks and sweeps the packs it reads, or
// removes the backup and sweeps everything; or the store fails the
// restore's last look at its session object. Resumed, the restore must end
// with an error saying its session was revoked, having written no wrong
// byte.
func TestRestoreSessionAttackRevokedBetweenBatches(t *testing.T) {
	for _, how := range []string{"repacked", "removed", "end unconfirmed"} {
		t.Run(how, func(t *testing.T) {
			ctx := t.Context()
			st := localStore(t)
			r := repoOn(t, st, writerOpts)
			d, name, tp, _ := rsaTwo(t, r)
			leaves := rsaLeaves(t, st, name, rsaWide)
			ms, err := Select(ctx, st, "a", name, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			gs := newRSAStore(st)
			gs.holdRange(rsaLocate(t, st, leaves[64].ID))
			dst := filepath.Join(t.TempDir(), "r")
			done := rsaRestore(ctx, repoOn(t, gs, pauseOpts(0)), ms, dst)
			rsaWaitHeld(t, gs, done)
			pastLease()
			o := purgeOpts
			o.RepackThreshold = repackOpts.RepackThreshold
			var reps []gc.Report
			if how == "removed" {
				res, err := repoOn(t, st, o).Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p"})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("purge: removed %v; %+v", res.Manifests, res.GC)
				reps = append(reps, res.GC)
			} else {
				reps = rsaPurgeKS2(t, st, o, tp, 3)
			}
			if len(reps[0].RevokedSessions) == 0 || rsaStored(t, st, tp) {
				t.Fatalf("the purge revoked %v and the tree pack is stored: %v; the attack misses", reps[0].RevokedSessions, rsaStored(t, st, tp))
			}
			if how == "end unconfirmed" {
				gs.mu.Lock()
				gs.statErr = func(key string) error {
					if strings.HasPrefix(key, "sessions/") {
						return errors.New("503 slow down (injected)")
					}
					return nil
				}
				gs.mu.Unlock()
			}
			close(gs.release)
			out := rsaWait(t, done)
			t.Logf("restore: %d restored, %d failed; err: %v", len(out.res.Restored), len(out.res.Failed), out.err)
			if out.err == nil {
				t.Fatalf("BREAK: a restore whose session was revoked ended without error (%d files restored)", len(out.res.Restored))
			}
			// Revoked, or (its last look at its session failed) not known
			// not to be.
			if (how != "end unconfirmed" && !errors.Is(out.err, gc.ErrRevoked)) || !strings.Contains(out.err.Error(), "revoked") {
				t.Errorf("BREAK: a restore whose session was revoked fails without saying so: %v", out.err)
			}
			rsaCheck(t, d, dst, d.paths["ks"], false)
		})
	}
}

// Attack 4. The pack of a backup's tree is lost outside any purge: before
// the restore, or while it waits between two batches of leaves. The
// restore must fail, naming the backup, the table and the node it cannot
// read, within a bound, having read the store's list of packs no more than
// a few times; what it restored before is byte-identical.
func TestRestoreSessionAttackLostTreePack(t *testing.T) {
	for _, when := range []string{"before", "between batches"} {
		t.Run(when, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			st := localStore(t)
			r := repoOn(t, st, writerOpts)
			d := rsaFiles(t, map[string]int{"ks": rsaWide}, map[string]int{"ks": 20})
			name := rsaBackup(t, r, d, "ks")[0]
			leaves := rsaLeaves(t, st, name, rsaWide)
			loc := rsaLocate(t, st, leaves[64].ID)
			ms, err := Select(ctx, st, "a", name, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			gs := newRSAStore(st)
			dst := filepath.Join(t.TempDir(), "r")
			var out rsaOutcome
			if when == "before" {
				if err := st.Delete(ctx, pack.Key(loc.Pack)); err != nil {
					t.Fatal(err)
				}
				out = rsaWait(t, rsaRestore(ctx, repoOn(t, gs, writerOpts), ms, dst))
			} else {
				gs.holdRange(loc)
				done := rsaRestore(ctx, repoOn(t, gs, writerOpts), ms, dst)
				rsaWaitHeld(t, gs, done)
				if err := st.Delete(ctx, pack.Key(loc.Pack)); err != nil {
					t.Fatal(err)
				}
				close(gs.release)
				out = rsaWait(t, done)
			}
			t.Logf("restore: %d restored; err: %v; pack listings %d", len(out.res.Restored), out.err, gs.listed("packs/"))
			if ctx.Err() != nil {
				t.Fatalf("BREAK: the restore did not end within the bound")
			}
			if out.err == nil {
				t.Fatalf("BREAK: restore with its tree pack lost succeeded (%d files restored)", len(out.res.Restored))
			}
			msg := out.err.Error()
			for _, w := range []string{name, "table t"} {
				if !strings.Contains(msg, w) {
					t.Errorf("restore error %q does not name %q", msg, w)
				}
			}
			// The node it could not read: the root first, or one of the
			// second batch of leaves.
			nodes := leaves[64:128]
			if when == "before" {
				nodes = []chunk.Ref{rsaRoot(t, st, name).Tables[0].Root}
			}
			if !slices.ContainsFunc(nodes, func(n chunk.Ref) bool { return strings.Contains(msg, n.ID.String()) }) {
				t.Errorf("restore error %q names no node it could not read", msg)
			}
			if n := gs.listed("packs/"); n > 3 {
				t.Errorf("BREAK: the restore listed the store's packs %d times for one lost pack", n)
			}
			// Every file read before the lost batch is restored: the first
			// batch's leaves but the last, whose file the reader holds until
			// the next leaf shows it does not go on there.
			n := rsaCheck(t, d, dst, d.paths["ks"], false)
			if when == "between batches" && n < 63 {
				t.Errorf("BREAK: %d files restored of the 63 read before the lost batch; the others were dropped unreported (%d failed)", n, len(out.res.Failed))
			}
		})
	}
}

// Attack 5a. A restore is cancelled while it waits between two batches of
// leaves. It must end at once with the cancellation, leave no temporary
// file, every file it restored byte-identical, and end its session.
func TestRestoreSessionAttackCancelBetweenBatches(t *testing.T) {
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	d := rsaFiles(t, map[string]int{"ks": rsaWide}, map[string]int{"ks": 20})
	name := rsaBackup(t, r, d, "ks")[0]
	leaves := rsaLeaves(t, st, name, rsaWide)
	ms, err := Select(t.Context(), st, "a", name, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	gs := newRSAStore(st)
	gs.holdRange(rsaLocate(t, st, leaves[64].ID))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dst := filepath.Join(t.TempDir(), "r")
	done := rsaRestore(ctx, repoOn(t, gs, writerOpts), ms, dst)
	rsaWaitHeld(t, gs, done)
	cancel()
	out := rsaWait(t, done)
	t.Logf("restore: %d restored; err: %v", len(out.res.Restored), out.err)
	if !errors.Is(out.err, context.Canceled) {
		t.Errorf("cancelled restore: %v, want context.Canceled", out.err)
	}
	rsaCheck(t, d, dst, d.paths["ks"], false)
	if n := countKeys(t, st, "sessions/"); n != 0 {
		t.Errorf("the cancelled restore left %d session objects", n)
	}
}

// Attack 5b. A forged manifest object gives a table more or fewer files,
// or other bytes, than its tree holds. The restore must fail saying so,
// not succeed; what it wrote is the tree's files, byte-identical.
func TestRestoreSessionAttackForgedCounts(t *testing.T) {
	for _, c := range []struct {
		what         string
		files, bytes int
	}{{"one file more", 1, 0}, {"one file fewer", -1, 0}, {"one byte more", 0, 1}, {"one byte fewer", 0, -1}} {
		t.Run(c.what, func(t *testing.T) {
			ctx := t.Context()
			st := localStore(t)
			r := repoOn(t, st, writerOpts)
			d := rsaFiles(t, map[string]int{"ks": rsaWide}, map[string]int{"ks": 20})
			name := rsaBackup(t, r, d, "ks")[0]
			ro := rsaRoot(t, st, name)
			ro.Time = ro.Time.Add(time.Microsecond)
			ro.Name = manifest.BackupName(ro.Time, ro.Keyspace, ro.Host)
			ro.Tables[0].Files += c.files
			ro.Tables[0].Bytes += int64(c.bytes)
			if err := manifest.Put(ctx, st, ro.Name, gz(t, ro)); err != nil {
				t.Fatal(err)
			}
			commitStored(t, st, ro.Name, ro.Session)
			ms, err := Select(ctx, st, "a", ro.Name, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "r")
			out := rsaWait(t, rsaRestore(ctx, repoOn(t, st, writerOpts), ms, dst))
			t.Logf("restore: %d restored, %d failed; err: %v", len(out.res.Restored), len(out.res.Failed), out.err)
			if out.err == nil {
				t.Fatalf("BREAK: restore of a manifest whose header does not match its tree succeeded")
			}
			if !strings.Contains(out.err.Error(), "header") {
				t.Errorf("restore error %q does not say the tree does not match the header", out.err)
			}
			rsaCheck(t, d, dst, d.paths["ks"], false)
		})
	}
}

// Attack 5c. Files whose existing copies differ are moved aside as they
// are planned, a batch of leaves at a time; then a later batch of leaves
// cannot be read (its pack lost). A file moved aside must not silently
// vanish: each is restored, or listed among the failed files.
func TestRestoreSessionAttackMovedAsideThenTreeLost(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	d := rsaFiles(t, map[string]int{"ks": rsaWide}, map[string]int{"ks": 20})
	name := rsaBackup(t, r, d, "ks")[0]
	leaves := rsaLeaves(t, st, name, rsaWide)
	loc := rsaLocate(t, st, leaves[64].ID)
	ms, err := Select(ctx, st, "a", name, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "r")
	// An older, different copy of files of the first batch of leaves.
	for _, rel := range d.paths["ks"][:48] {
		p := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("an older copy"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gs := newRSAStore(st)
	gs.holdRange(loc)
	// Batches of 512 files: the whole first batch of leaves is planned
	// (moved aside) and not yet restored when the second cannot be read.
	done := make(chan rsaOutcome, 1)
	go func() {
		res, err := repoOn(t, gs, writerOpts).Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
		done <- rsaOutcome{res, err}
	}()
	rsaWaitHeld(t, gs, done)
	if err := st.Delete(ctx, pack.Key(loc.Pack)); err != nil {
		t.Fatal(err)
	}
	close(gs.release)
	out := rsaWait(t, done)
	t.Logf("restore: moved %d, restored %d, failed %d; err: %v", len(out.res.Moved), len(out.res.Restored), len(out.res.Failed), out.err)
	if out.err == nil {
		t.Fatalf("restore with a batch of leaves lost succeeded")
	}
	rsaCheck(t, d, dst, d.paths["ks"], false)
	for _, mv := range out.res.Moved {
		_, err := os.Stat(filepath.Join(dst, filepath.FromSlash(mv.Path)))
		failed := slices.ContainsFunc(out.res.Failed, func(f FileOutcome) bool { return f.Path == mv.Path })
		if err != nil && !failed {
			t.Errorf("BREAK: %s was moved aside and then neither restored nor listed as failed", mv.Path)
		}
	}
}

// Attack 5d. The data pack of a wide table is lost outside any purge. Each
// batch of files meets chunks in no stored pack, and the restore looks for
// other copies by reading the index files written since and the headers
// of every unindexed pack. Once a look found nothing new, or left a chunk
// missing, looking again for each later batch costs a listing of every
// pack in the store per batch (a keyspace of 800,000 files is 1,563
// batches) and cannot find what a live session protects: a copy a purge
// keeps is indexed before the pack it replaces is deleted. The store is
// quiet, or busy: another host writes an index file each time the restore
// lists them. The restore must fail, naming the files, with a bounded
// number of listings.
func TestRestoreSessionAttackLostDataPackListings(t *testing.T) {
	for _, busy := range []bool{false, true} {
		t.Run(fmt.Sprintf("busy=%v", busy), func(t *testing.T) {
			ctx := t.Context()
			st := localStore(t)
			r := repoOn(t, st, writerOpts)
			d := rsaFiles(t, map[string]int{"ks": rsaWide}, map[string]int{"ks": 20})
			name := rsaBackup(t, r, d, "ks")[0]
			m, err := manifest.Get(ctx, st, name, ChunksOf(st))
			if err != nil {
				t.Fatal(err)
			}
			dp := rsaLocate(t, st, m.Tables[0].Files[0].Chunks[0].ID).Pack
			if err := st.Delete(ctx, pack.Key(dp)); err != nil {
				t.Fatal(err)
			}
			ms, err := Select(ctx, st, "a", name, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			gs := newRSAStore(st)
			var busyErr error
			if busy {
				n := 0
				gs.onList = func(prefix string) {
					if prefix != "index/" || busyErr != nil {
						return
					}
					n++
					w, err := index.NewWriter(ctx, st, index.New(), r.Config, index.WriterOptions{Host: "b"})
					if err == nil {
						data := fmt.Appendf(nil, "host b's chunk %d", n)
						_, err = w.NewPacker().Add(ctx, chunk.Sum(data), data)
					}
					if err == nil {
						err = w.Sync(ctx)
					}
					busyErr = err
				}
			}
			dst := filepath.Join(t.TempDir(), "r")
			out := rsaWait(t, rsaRestore(ctx, repoOn(t, gs, writerOpts), ms, dst))
			t.Logf("restore: %d restored, %d failed; err: %v; listings of packs/ %d, of index/ %d", len(out.res.Restored), len(out.res.Failed), out.err, gs.listed("packs/"), gs.listed("index/"))
			if busyErr != nil {
				t.Fatal(busyErr)
			}
			if !errors.Is(out.err, ErrRestoreFailed) || len(out.res.Failed) != rsaWide {
				t.Errorf("restore with its data pack lost: %d of %d files failed, err %v; want every file failed and ErrRestoreFailed", len(out.res.Failed), rsaWide, out.err)
			}
			if n := gs.listed("packs/"); n > 2 {
				t.Errorf("BREAK: the restore listed every pack of the store %d times for one lost pack (once a batch of %d files)", n, 16)
			}
			rsaCheck(t, d, dst, d.paths["ks"], false)
		})
	}
}

// noDelete is rsaStore refusing to delete session objects.
type noDelete struct{ *rsaStore }

func (s noDelete) Delete(ctx context.Context, key string) error {
	if strings.HasPrefix(key, "sessions/") {
		return errors.New("403 access denied (injected)")
	}
	return s.rsaStore.Delete(ctx, key)
}

// A restore whose session was live to the end, but whose session object
// the store refuses to remove, succeeds: the object is harmless (a purge
// removes it once stale), unlike a session that cannot be confirmed live.
func TestRestoreSessionLeftBehindIsNotAFailure(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	d, name, _, _ := rsaTwo(t, r)
	ms, err := Select(ctx, st, "a", name, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "r")
	res, err := repoOn(t, noDelete{newRSAStore(st)}, pauseOpts(0)).Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
	if err != nil {
		t.Fatalf("restore failed because its session object stayed: %v", err)
	}
	if n := countKeys(t, st, "sessions/"); n == 0 {
		t.Fatalf("no session object left: the store's refusal was not met (%d restored)", len(res.Restored))
	}
	rsaCheck(t, d, dst, d.paths["ks"], false)
}
