package cassback

// Attacks on a writer's compaction of its host's index files
// (index/compact.go, Writer.Compact): the merged file is written from the
// files the writer holds (its cache first), and the old ones deleted. Each
// test ends by checking what a purge, a reader or a later backup relies
// on: every committed backup readable (committedWhole), no index file
// naming a pack the store does not hold.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
)

// caRun is one session of continuous backup of host a driven step by step
// (as TestAttackCarriedRecordAfterPurgeLatest does): SSTables are added by
// hand, commits are asked for, and the writer compacts after each commit
// as backupRun.commit has it do.
type caRun struct {
	t    *testing.T
	r    *Repo
	data string
	c    *continuous
	pk   *index.Packer
}

func caStart(t *testing.T, r *Repo, data string) *caRun { return caStartHost(t, r, data, "a") }

func caStartHost(t *testing.T, r *Repo, data, host string) *caRun {
	t.Helper()
	opts := ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: host, Threads: 1}}.withDefaults()
	c := &continuous{opts: opts, learned: map[string]time.Time{}, items: map[uint64]*item{}, live: map[sstKey]*liveSST{},
		dirty: map[string]bool{}, keyspaces: map[string]bool{}, synced: map[string]bool{data: true}, scanned: map[string]bool{}}
	var err error
	if c.b, err = r.beginBackup(t.Context(), opts.BackupOptions, nil, time.Now(), c.learn); err != nil {
		t.Fatal(err)
	}
	return &caRun{t: t, r: r, data: data, c: c, pk: c.b.w.NewPacker()}
}

// sst writes the Data.db of SSTable generation gen (content repeated) and
// returns its path below the data directory.
func (a *caRun) sst(gen int, content string) string {
	rel := fmt.Sprintf("ks/t-%s/nb-%d-big-Data.db", tbl, gen)
	p := filepath.Join(a.data, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err == nil {
		return rel // written by an earlier session: unchanged
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		a.t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Repeat([]byte(content), 3000), 0o644); err != nil {
		a.t.Fatal(err)
	}
	return rel
}

// add stores (or reuses, if unchanged since the previous manifest) one
// SSTable's file and makes it live.
func (a *caRun) add(rel string) manifest.File {
	a.t.Helper()
	f, err := os.Open(filepath.Join(a.data, filepath.FromSlash(rel)))
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	rec, _, err := a.c.b.storeFile(a.t.Context(), a.pk, a.data, rel, f, storeOptions{})
	if err != nil {
		a.t.Fatal(err)
	}
	a.c.live[sstKey{a.data, rel}] = &liveSST{ks: "ks", table: tableKey{"t", tbl}, files: []manifest.File{rec}}
	a.c.dirty["ks"] = true
	return rec
}

// commit commits (recovering carried files and acknowledging learned
// sets as continuous.commit does), then compacts.
func (a *caRun) commit() {
	a.t.Helper()
	if err := a.c.commit(a.t.Context()); err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.c.b.w.Compact(a.t.Context()); err != nil {
		a.t.Fatal(err)
	}
}

// learn is a heartbeat: it lists the condemned sets, excludes the packs
// of new ones and notes them to acknowledge.
func (a *caRun) learn() {
	a.t.Helper()
	fresh, err := a.c.b.sess.s.Renew(a.t.Context())
	if err != nil {
		a.t.Fatal(err)
	}
	for _, s := range fresh {
		a.c.b.idx.Exclude(s.Packs)
	}
	a.c.learn(fresh)
	time.Sleep(time.Millisecond) // learned strictly before the next commit's items
}

func (a *caRun) end() {
	if err := a.c.b.end(a.t.Context()); err != nil {
		a.t.Fatal(err)
	}
}

// purgeLatest is the operator's purge --purge-latest of host a: every
// backup of a goes, the newest too.
func purgeLatest(t *testing.T, r *Repo) PurgeResult { return purgeLatestOf(t, r, "a") }

func purgeLatestOf(t *testing.T, r *Repo, host string) PurgeResult {
	t.Helper()
	res, err := r.Purge(t.Context(), PurgeOptions{Host: host, Before: time.Now().Add(time.Minute), PurgeLatest: true, Holder: "p"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// phantomPacks returns the packs some index file names that the store
// does not hold, with the file naming each.
func phantomPacks(t *testing.T, st remote.Store) map[chunk.ID]string {
	t.Helper()
	ctx := t.Context()
	stored := map[chunk.ID]bool{}
	if err := st.List(ctx, "packs/", func(i remote.Info) error {
		id, err := chunk.ParseID(filepath.Base(i.Key))
		if err == nil && pack.Key(id) == i.Key {
			stored[id] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := st.List(ctx, "index/", func(i remote.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	out := map[chunk.ID]string{}
	for _, k := range keys {
		recs, err := index.ReadFile(ctx, st, k)
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		for _, p := range recs {
			if !stored[p.ID] {
				out[p.ID] = k
			}
		}
	}
	return out
}

// A continuous writer compacts after a purge swept a set it acknowledged:
// the sweep deleted the set's packs and the index file naming them (F1),
// but the writer still counts F1 among its small files and holds it in
// its cache, so Compact merges F1's records — the swept pack — into the
// new file. The index now names a pack that is gone, with no purge left
// to drop it (its set is closed). Then the operator purges the host's
// backups again (purge --purge-latest) while a new session of the host
// carries the file over: recover asked whether the file's chunks were
// still stored outside the condemned packs (then by Index.Has), the stale
// entry said yes, the file was not stored again, the session acknowledged,
// the sweep deleted the only copy, and the next manifest named a chunk
// that exists nowhere. Compaction now merges no file gone from the store.
func TestCompactionAttackSweptPackResurrectedFromCache(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	r.compactAt = 2
	data := filepath.Join(t.TempDir(), "data")

	a := caStart(t, r, data)
	carried := a.sst(1, "carried sstable ")
	a.add(carried)
	a.commit() // B1; index file F1 names pack P1 (the file's chunk) and B1's tree pack
	f1 := keysOf(t, r.Store, "index/a/")
	if len(f1) != 1 {
		t.Fatalf("index files after the first commit: %v", f1)
	}

	// purge --purge-latest: B1 goes, its packs are condemned (set C1).
	if res := purgeLatest(t, r); res.GC.Condemned == 0 || res.GC.Deleted != 0 {
		t.Fatalf("first purge: %+v", res.GC)
	}
	// The writer learns C1; its next commit stores the carried file again
	// (P2) and acknowledges C1; the next purge sweeps C1: P1 and F1 go.
	a.learn()
	a.commit()
	if rep := purgeNow(t, r, "nobody"); rep.Deleted == 0 {
		t.Fatalf("the sweep of C1 deleted nothing: %+v", rep)
	}
	if _, err := r.Store.Stat(ctx, f1[0]); err == nil {
		t.Fatalf("the sweep left %s, which names only swept packs", f1[0])
	}
	if ph := phantomPacks(t, r.Store); len(ph) != 0 {
		t.Fatalf("after the sweep the index names packs that are gone: %v", ph)
	}

	// A flush of three SSTables: the writer's third index file; it has
	// more than CompactAt (2) small files and merges all but the largest.
	for g := 2; g <= 4; g++ {
		a.add(a.sst(g, fmt.Sprintf("flush %d ", g)))
	}
	a.commit()
	if ph := phantomPacks(t, r.Store); len(ph) != 0 {
		t.Errorf("BROKEN: compaction put packs the sweep deleted back into the index: %v", ph)
	}
	a.end()

	// A new session of host a (a restart) carries the file over from its
	// latest manifest; then the operator purges the host's backups again.
	a2 := caStart(t, r, data)
	defer a2.end()
	a2.add(carried)
	a2.commit()
	purgeLatest(t, r)
	a2.learn()
	a2.commit()                                         // recover: are the carried file's chunks stored outside the condemned packs?
	if _, err := a2.c.b.sess.s.Renew(ctx); err != nil { // writes the acknowledgement
		t.Fatal(err)
	}
	purgeNow(t, r, "nobody")
	a2.add(a2.sst(5, "later flush "))
	a2.commit() // a manifest with every live SSTable, the carried one too
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// keysOf lists the keys under prefix.
func keysOf(t *testing.T, st remote.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(t.Context(), prefix, func(i remote.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// getHookStore runs a hook once, before the first Get of a key with a
// prefix (then the Get goes on).
type getHookStore struct {
	*local.Store
	mu     sync.Mutex
	prefix string
	ranged bool // only Gets at an offset past 0 (a bucket, not a head)
	hook   func()
}

func (h *getHookStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	h.mu.Lock()
	f := h.hook
	if f != nil && strings.HasPrefix(key, h.prefix) && (!h.ranged || off > 0) {
		h.hook = nil
	} else {
		f = nil
	}
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.Store.Get(ctx, key, off, n)
}

func (h *getHookStore) arm(prefix string, fn func()) {
	h.mu.Lock()
	h.prefix, h.ranged, h.hook = prefix, false, fn
	h.mu.Unlock()
}

// armBucket arms the hook for the first read of a bucket (at an offset
// past the head) of a file under prefix.
func (h *getHookStore) armBucket(prefix string, fn func()) {
	h.mu.Lock()
	h.prefix, h.ranged, h.hook = prefix, true, fn
	h.mu.Unlock()
}

func (h *getHookStore) armed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hook != nil
}

// caHookRepo opens a repo on a local store through a getHookStore, and
// returns the bare local store too (for actors the hook must not see).
func caHookRepo(t *testing.T) (*Repo, *getHookStore, *local.Store) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs := &getHookStore{Store: raw}
	r, err := Open(t.Context(), hs, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	return r, hs, raw
}

// compactor returns a writer of host (another process of it: its own
// view, loaded now, and its own cache) on st, that compacts above 2 small
// files.
func compactor(t *testing.T, r *Repo, st remote.Store, host string) *index.Writer {
	t.Helper()
	cache := filepath.Join(t.TempDir(), "compactor-cache")
	x := index.New()
	if _, err := x.Load(t.Context(), st, cache); err != nil {
		t.Fatal(err)
	}
	w, err := index.NewWriter(t.Context(), st, x, r.Config, index.WriterOptions{Host: host, CompactAt: 2, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Validate lists the index files, then reads them one by one; a writer of
// host a compacts between the two (continuous backup does after every
// commit). The files it merged are gone when validate gets them and the
// merged one was not listed: validate must not report the host's backups
// as stored in packs no index file names (exit status 1).
func TestCompactionAttackValidateDuringCompaction(t *testing.T) {
	ctx := t.Context()
	r, hs, raw := caHookRepo(t)
	r.compactAt = 100 // the backups themselves do not compact
	var names []string
	for i := range 3 {
		n, err := backupOne(t, r, "a", bytes.Repeat([]byte(fmt.Sprintf("sstable %d ", i)), 2000))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	w := compactor(t, r, raw, "a")
	hs.arm("index/a/", func() {
		cs, err := w.Compact(ctx)
		if err != nil || cs.Merged == 0 {
			t.Errorf("compaction under validate: %+v, %v", cs, err)
		}
	})
	rep, err := r.Validate(ctx, ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backups) != len(names) {
		t.Fatalf("validated %v, want %v", rep.Backups, names)
	}
	if !rep.OK() {
		t.Errorf("BROKEN: validate fails while the store is whole: a writer's compaction deleted index files between its listing and its reads: %+v", rep.Problems)
	}
	// And the store is whole indeed.
	if err := committedWhole(t, raw); err != nil {
		t.Fatal(err)
	}
	if rep, err := r.Validate(ctx, ValidateOptions{Checksum: true}); err != nil || !rep.OK() {
		t.Fatalf("validate after the compaction: %v %+v", err, rep.Problems)
	}
}

// A writer of host a is stopped inside its compaction, after its reads
// and its listing, before it writes the merged file — long enough that a
// purge revokes its session and sweeps a set the writer never learned of
// (the compactor here has no session at all: the purge ignores it as it
// ignores a revoked one). It then writes the merged file, naming the
// packs the sweep deleted: a stale entry, as a revoked writer's late file
// can hold. The design says W1's check covers such entries (a writer
// checks that a pack is stored before it deduplicates against it). But a
// continuous backup's recover does not deduplicate: it asked the index
// alone whether a carried file's chunks were still stored outside the
// condemned packs (Index.Has), and the stale entry said yes. Host b's
// carried file was then not stored again, b acknowledged, the sweep
// deleted its only copy, and b's next manifest named a chunk stored
// nowhere. Recover now checks the packs (Writer.Stored).
func TestCompactionAttackRevokedCompactorStaleEntry(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	r.compactAt = 100 // the backups do not compact: the compactor below does
	dataB := filepath.Join(t.TempDir(), "data-b")

	// Host b's continuous backup starts; then host a backs up the same
	// SSTable (a clone), and b stores it too, unaware of a's index file,
	// in one pack with another SSTable: two copies of its chunk, b's the
	// one a purge keeps (its pack holds more referenced chunks).
	b := caStartHost(t, r, dataB, "b")
	shared := b.sst(1, "shared sstable ")
	for i, content := range []string{"shared sstable ", "a only 1 ", "a only 2 "} {
		if _, err := backupOne(t, r, "a", bytes.Repeat([]byte(content), 3000)); err != nil {
			t.Fatalf("backup %d of a: %v", i, err)
		}
	}
	other := b.sst(2, "b only ")
	b.add(shared)
	b.add(other)
	b.commit()

	// Another process of host a, with a's three index files (the shared
	// chunk's first copy among them).
	faulty := remotetest.NewFaulty(r.Store)
	ca := compactor(t, r, faulty, "a")

	// purge --purge-latest of host a: a's packs are condemned; b learns of
	// the set and acknowledges it.
	if res := purgeLatestOf(t, r, "a"); res.GC.Condemned == 0 {
		t.Fatalf("purge of a condemned nothing: %+v", res.GC)
	}
	b.learn()
	b.commit()
	if _, err := b.c.b.sess.s.Renew(ctx); err != nil {
		t.Fatal(err)
	}

	// a's compaction stops before its write; the sweep runs.
	resume, done := holdCompaction(t, faulty, ca)
	if rep := purgeNow(t, r, "nobody"); rep.Deleted == 0 {
		t.Errorf("the sweep of a's set deleted nothing: %+v", rep)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	faulty.SetHook(nil)
	ph := phantomPacks(t, r.Store)
	t.Logf("stale entries after the stopped compaction: %d", len(ph))

	// b restarts: the shared SSTable is carried from b's latest manifest
	// (the other one was compacted away by Cassandra). Then the operator
	// purges b's backups (purge --purge-latest); b learns of the set.
	b.end()
	b2 := caStartHost(t, r, dataB, "b")
	defer b2.end()
	b2.add(shared)
	b2.commit()
	purgeLatestOf(t, r, "b")
	b2.learn()
	b2.commit() // recover: is the shared chunk stored outside the condemned packs?
	if _, err := b2.c.b.sess.s.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	purgeNow(t, r, "nobody")
	b2.add(b2.sst(3, "later flush "))
	b2.commit()
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// reqHookStore runs a hook once, before the at-th request (Get, Stat,
// List, Put, Delete) on index files, or listing of the packs.
type reqHookStore struct {
	*remotetest.Memory
	mu   sync.Mutex
	n    int
	at   int
	hook func()
}

func (h *reqHookStore) before(key string) {
	if !strings.HasPrefix(key, "index/") && key != "packs/" {
		return
	}
	h.mu.Lock()
	h.n++
	var f func()
	if h.n == h.at {
		f = h.hook
	}
	h.mu.Unlock()
	if f != nil {
		f()
	}
}

func (h *reqHookStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	h.before(key)
	return h.Memory.Get(ctx, key, off, n)
}

func (h *reqHookStore) Stat(ctx context.Context, key string) (remote.Info, error) {
	h.before(key)
	return h.Memory.Stat(ctx, key)
}

func (h *reqHookStore) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	h.before(prefix)
	return h.Memory.List(ctx, prefix, fn)
}

func (h *reqHookStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	h.before(key)
	return h.Memory.Put(ctx, key, data, size)
}

func (h *reqHookStore) Delete(ctx context.Context, key string) error {
	h.before(key)
	return h.Memory.Delete(ctx, key)
}

// cloneMemory copies every object of st into a new in-memory store.
func cloneMemory(t *testing.T, st *remotetest.Memory) *remotetest.Memory {
	t.Helper()
	ctx := t.Context()
	out := remotetest.NewMemory()
	var keys []string
	if err := st.List(ctx, "", func(i remote.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		rc, err := st.Get(ctx, k, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := out.Put(ctx, k, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// A purge removes host a's two older backups (of ten) and sweeps what
// they alone held (their tree packs, a data pack; one data pack stays,
// host b's backup deduplicated against it), then merges a's index files
// (step 6: a has 8 or more), while another process of host a compacts
// a's ten index files from its cache — before the purge's k-th request
// on index files (or listing of the packs), for every k: between the mark's listing of
// the index files and its reads, between its reads and its listing of
// the packs, during the sweep's fresh mark, its pack deletions and its
// rewrite of the files naming them, during its merge of index files. The
// compactor has no session (the purge ignores it, as a revoked one), so
// its merged file may name packs the sweep deleted. Whatever the
// interleaving: no committed backup loses a chunk, and the next purge is
// not blocked and leaves a store that validates.
func TestCompactionAttackPurgeDuringCompactionHolds(t *testing.T) {
	ctx := t.Context()
	tmpl := remotetest.NewMemory()
	r0, err := Open(ctx, tmpl, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r0.GC = noWait
	r0.compactAt = 100
	var cutoff time.Time
	for i := range 10 {
		data := bytes.Repeat([]byte(fmt.Sprintf("sstable of a, generation %d ", i)), 2000)
		if _, err := backupOne(t, r0, "a", data); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := backupOne(t, r0, "b", data); err != nil { // a clone of a's first
				t.Fatal(err)
			}
		}
		if i == 1 {
			time.Sleep(2 * time.Millisecond)
			cutoff = time.Now()
			time.Sleep(2 * time.Millisecond)
		}
	}
	if n := len(keysOf(t, r0.Store, "index/a/")); n != 10 {
		t.Fatalf("host a has %d index files, want 10", n)
	}

	requests, merged := 0, 0
	for k := 1; ; k++ {
		raw := cloneMemory(t, tmpl)
		ca := compactor(t, r0, raw, "a")
		fired := false
		hs := &reqHookStore{Memory: raw, at: k, hook: func() {
			fired = true
			cs, err := ca.Compact(ctx)
			if err != nil {
				t.Errorf("k=%d: compaction: %v", k, err)
			}
			merged += cs.Merged
		}}
		r, err := Open(ctx, hs, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		r.GC = noWait
		res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: cutoff, Holder: "p"})
		if err != nil {
			t.Fatalf("k=%d: purge: %v", k, err)
		}
		if len(res.Manifests) != 2 {
			t.Fatalf("k=%d: purge removed %v", k, res.Manifests)
		}
		if !fired {
			// No compaction: the purge deletes and rewrites a's files.
			if res.GC.Deleted == 0 || res.GC.IndexRewritten == 0 || res.GC.IndexMerged == 0 {
				t.Fatalf("the purge alone deleted %d packs, rewrote %d index files and merged %d: the scenario misses a step", res.GC.Deleted, res.GC.IndexRewritten, res.GC.IndexMerged)
			}
			requests = k - 1
			break
		}
		rep := purgeNow(t, r, "nobody")
		if len(rep.Blocked) > 0 {
			t.Fatalf("k=%d: the next purge is blocked: %v", k, rep.Blocked)
		}
		if err := committedWhole(t, raw); err != nil {
			t.Fatalf("k=%d: INVARIANT BROKEN after the next purge: %v", k, err)
		}
		if k%3 != 0 {
			continue // validate every third time: the test runs in bounded time
		}
		if v, err := r.Validate(ctx, ValidateOptions{}); err != nil || !v.OK() || len(v.Backups) != 9 {
			t.Fatalf("k=%d: validate: %v %v %+v", k, err, v.Backups, v.Problems)
		}
	}
	if merged < requests {
		t.Fatalf("%d purges, %d index files compacted under them", requests, merged)
	}
	t.Logf("the purge makes %d requests on index files (and lists of packs); a compaction before each held (%d files merged away)", requests, merged)
}

// Host b's backup deduplicated against host a's pack (a clone). A reader
// of b's backup (a restore, from an empty cache) knows a's index files by
// their heads; a writer of host a compacts them away after the reader
// listed them and before it reads the bucket that places the shared
// chunk. The restore must still restore the file (it finds the pack from
// its header), and another clone's backup, whose lookup meets a file
// compacted away the same way, must still commit a backup whose every
// chunk is stored (uploading again is fine; naming a gone pack is not).
func TestCompactionAttackLazyHeadCompactedAwayHolds(t *testing.T) {
	ctx := t.Context()
	shared := bytes.Repeat([]byte("a cloned node's sstable "), 3000)
	// setup: a backs up the shared SSTable and two others (three small
	// index files), b deduplicates against a's pack; the hook, on the
	// first bucket read of a's files, compacts them.
	setup := func() (*Repo, *getHookStore, *local.Store, string) {
		r, hs, raw := caHookRepo(t)
		r.compactAt = 100
		for i := range 3 {
			data := shared
			if i > 0 {
				data = bytes.Repeat([]byte(fmt.Sprintf("a only %d ", i)), 3000)
			}
			if _, err := backupOne(t, r, "a", data); err != nil {
				t.Fatal(err)
			}
		}
		nameB, err := backupOne(t, r, "b", shared)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(keysOf(t, raw, "index/b/")); n != 1 {
			t.Fatalf("host b has %d index files", n)
		}
		before := keysOf(t, raw, "index/a/")
		hs.armBucket("index/a/", func() {
			cs, err := compactor(t, r, raw, "a").Compact(ctx)
			if err != nil || cs.Merged != len(before) {
				t.Errorf("a's compaction: %+v, %v; want all %d files merged", cs, err, len(before))
			}
		})
		return r, hs, raw, nameB
	}

	t.Run("restore", func(t *testing.T) {
		r, hs, raw, nameB := setup()
		m, err := manifest.Get(ctx, raw, nameB, ChunksOf(raw))
		if err != nil {
			t.Fatal(err)
		}
		rr, err := Open(ctx, hs, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		rr.GC = r.GC
		dst := t.TempDir()
		if _, err := rr.Restore(ctx, []*manifest.Manifest{m}, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
			t.Fatalf("restore of b's backup with a's files compacted away under it: %v", err)
		}
		if hs.armed() {
			t.Fatal("the restore read no bucket of a's files: the scenario did not happen")
		}
		got, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash("ks/t-"+tbl+"/nb-1-big-Data.db")))
		if err != nil || !bytes.Equal(got, shared) {
			t.Fatalf("restored file: %d bytes, %v; want the shared SSTable", len(got), err)
		}
	})

	t.Run("backup", func(t *testing.T) {
		r, hs, raw, _ := setup()
		rc, err := Open(ctx, hs, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		rc.GC, rc.compactAt = r.GC, 100
		nameC, err := backupOne(t, rc, "c", shared)
		if err != nil {
			t.Fatal(err)
		}
		if hs.armed() {
			t.Fatal("c's backup read no bucket of a's files: the scenario did not happen")
		}
		if err := committedWhole(t, raw); err != nil {
			t.Fatalf("INVARIANT BROKEN: %v", err)
		}
		if v, err := r.Validate(ctx, ValidateOptions{Name: nameC, Checksum: true}); err != nil || !v.OK() {
			t.Fatalf("validate %s: %v %+v", nameC, err, v.Problems)
		}
	})
}

// A compaction stopped between its listing and its write while a purge
// sweeps the packs of the files it merges (its session revoked, or none)
// writes a merged file naming those packs: stale entries. A purge's
// merge takes the union of the files' records, so before purges rewrote
// index files naming packs the store no longer holds (§4.3 step 6), they
// stayed for good (and every new session's writer checked each such pack
// again; recover trusted them: see
// TestCompactionAttackRevokedCompactorStaleEntry).
func TestCompactionAttackStaleEntryOutlivesPurges(t *testing.T) {
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	r.compactAt = 100
	for i := range 3 {
		if _, err := backupOne(t, r, "a", bytes.Repeat([]byte(fmt.Sprintf("old sstable %d ", i)), 3000)); err != nil {
			t.Fatal(err)
		}
	}
	faulty := remotetest.NewFaulty(r.Store)
	ca := compactor(t, r, faulty, "a")
	resume, done := holdCompaction(t, faulty, ca)
	if res := purgeLatest(t, r); res.GC.Deleted == 0 {
		t.Fatalf("the purge deleted nothing: %+v", res.GC)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stale := phantomPacks(t, r.Store)
	if len(stale) == 0 {
		t.Fatal("no stale entry: the scenario did not happen")
	}
	// Host a goes on (8 backups: its files are merged by the next purge).
	for i := range 8 {
		if _, err := backupOne(t, r, "a", bytes.Repeat([]byte(fmt.Sprintf("new sstable %d ", i)), 3000)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		rep := purgeNow(t, r, "nobody")
		t.Logf("purge: merged %d index files, rewrote %d", rep.IndexMerged, rep.IndexRewritten)
	}
	if ph := phantomPacks(t, r.Store); len(ph) > 0 {
		t.Errorf("BROKEN: %d stale entries (packs the store no longer holds) outlive two purges that merged the host's index files: %v", len(ph), ph)
	}
}

// holdCompaction runs ca's Compact until its first write of one of host
// a's index files, which it holds until resume is closed; done then gets
// Compact's error.
func holdCompaction(t *testing.T, faulty *remotetest.Faulty, ca *index.Writer) (resume chan struct{}, done chan error) {
	t.Helper()
	reached := make(chan struct{})
	resume, done = make(chan struct{}), make(chan error, 1)
	var once sync.Once
	faulty.SetHook(func(op remotetest.Op, key string) error {
		if op == remotetest.OpPut && strings.HasPrefix(key, "index/a/") {
			once.Do(func() { close(reached); <-resume })
		}
		return nil
	})
	go func() { _, err := ca.Compact(t.Context()); done <- err }()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("the compaction wrote nothing: %v", err)
	}
	return resume, done
}
