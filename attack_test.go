package cassback

// Regression tests from an adversarial review of the GC protocol: each
// reproduces one way the first version of v2 lost data or got stuck, and
// ends by checking the invariant (a committed backup validates with
// --checksum from an empty cache) or that the store keeps working.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

const tbl = "abababababababababababababababab"

// oneFile writes data to a temp file and returns it opened.
func oneFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nb-1-big-Data.db")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// backupOne runs the engine's own backup path (beginBackup, storeFile,
// commit) for one file of data on host, and returns the committed name.
func backupOne(t *testing.T, r *Repo, host string, data []byte) (string, error) {
	t.Helper()
	ctx := t.Context()
	b, err := r.beginBackup(ctx, BackupOptions{Host: host, Threads: 1}, []string{"ks"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.end(ctx)
	p := b.w.NewPacker()
	rel := "ks/t-" + tbl + "/nb-1-big-Data.db"
	rec, _, err := b.storeFile(ctx, p, "/data", rel, oneFile(t, data), storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := b.newManifest("ks", time.Now(), map[tableKey][]manifest.File{{"t", tbl}: {rec}})
	names, err := b.commit(ctx, []*manifest.Manifest{m}, nil)
	if len(names) != 1 {
		return "", err
	}
	return names[0], err
}

func mustValidate(t *testing.T, r *Repo, name string) {
	t.Helper()
	rep, err := r.Validate(t.Context(), ValidateOptions{Name: name, Checksum: true})
	if err != nil || !rep.OK() {
		t.Fatalf("INVARIANT BROKEN: committed backup %s does not validate: err=%v problems=%+v", name, err, rep.Problems)
	}
}

func committed(t *testing.T, st remote.Store, name string) bool {
	_, ok, err := manifest.Committed(t.Context(), st, name)
	return err == nil && ok
}

// A1. A writer paused between its pack PUT and its index-file PUT is
// revoked and its pack swept; it wakes and PUTs the index file (W3(a)
// comes before the fence and is not fenced). The index file now names a
// deleted pack; a later writer on another host deduplicates against it
// and commits a backup whose chunk is gone.
func TestAttackLateIndexFileOfRevokedWriter(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	short := gc.Options{Heartbeat: time.Hour, Lease: 50 * time.Millisecond, Grace: -1, NewPackMargin: -1}
	r.GC = short // the heartbeat never fires: the process is "SIGSTOPped"
	data := bytes.Repeat([]byte("streamed sstable "), 4000)

	// W1 on host a: session, upload the pack (PUT+Stat), no index file yet.
	w1, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := w1.w.NewPacker()
	rel := "ks/t-" + tbl + "/nb-1-big-Data.db"
	rec, _, err := w1.storeFile(ctx, p, "/data", rel, oneFile(t, data), storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond) // paused past the lease

	// Purge: the pack is an orphan holding nothing referenced; W1 is stale,
	// is revoked by CAS, and the pack is deleted.
	res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p"})
	if err != nil || res.GC.Deleted != 1 || len(res.GC.RevokedSessions) != 1 {
		t.Fatalf("purge: %v deleted=%d revoked=%v", err, res.GC.Deleted, res.GC.RevokedSessions)
	}

	// W1 wakes past its fence check and writes its index file, naming the
	// deleted pack (commit checks the fence first; a stop right after that
	// check gets here).
	if err := w1.w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	w1.end(ctx)
	_ = rec
	if n := countKeys(t, r.Store, "index/"); n != 1 {
		t.Fatalf("%d index files, want the late one", n)
	}

	// W2 on host b, much later, with the same file (streamed SSTable).
	r.GC = noWait
	name, err := backupOne(t, r, "b", data)
	if err != nil || !committed(t, r.Store, name) {
		t.Fatalf("W2: %v", err)
	}
	mustValidate(t, r, name)
}

// hookStore runs a hook before the first Delete of a key with a prefix.
type hookStore struct {
	*local.Store
	mu     sync.Mutex
	prefix string
	hook   func()
}

func (h *hookStore) Delete(ctx context.Context, key string) error {
	h.mu.Lock()
	f := h.hook
	if f != nil && strings.HasPrefix(key, h.prefix) {
		h.hook = nil
	} else {
		f = nil
	}
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.Store.Delete(ctx, key)
}

func hookRepo(t *testing.T) (*Repo, *hookStore) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(dir, 0o755)
	ls, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs := &hookStore{Store: ls}
	r, err := Open(t.Context(), hs, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	return r, hs
}

// A2. Journal recovery during a sweep, no pause needed. Host a's writer
// crashed after uploading pack X (journaled, not indexed); a purge
// condemned X. While a later purge sweeps (after its catalog load, before
// its index rewrite), host a's next backup starts: it sees the set,
// excludes X, but its journal recovery Stats X (still there) and PUTs an
// index file naming X. The sweep deletes X and rewrites only the index
// files of its catalog. After the set is closed, any writer deduplicates
// against X.
func TestAttackJournalRecoveryDuringSweep(t *testing.T) {
	ctx := t.Context()
	r, hs := hookRepo(t)
	data := bytes.Repeat([]byte("compacted then streamed "), 3000)

	// W0: upload + journal, then kill -9 (no index file).
	w0, err := index.NewWriter(ctx, r.Store, index.New(), r.Config, index.WriterOptions{Host: "a", Journal: r.journalPath("a")})
	if err != nil {
		t.Fatal(err)
	}
	p := w0.NewPacker()
	p.Add(ctx, chunk.Sum(data), data)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// P1 condemns the orphan; grace keeps the set open.
	r.GC.Grace = time.Hour
	if res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p"}); err != nil || res.GC.Condemned != 1 {
		t.Fatalf("P1: %v %+v", err, res.GC)
	}
	r.GC.Grace = -1

	// P2 sweeps; just before its first pack delete, host a's backup starts
	// and recovers its journal (the engine's beginBackup).
	hs.prefix = "packs/"
	hs.hook = func() {
		b, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
		if err != nil {
			t.Error(err)
			return
		}
		b.end(ctx)
	}
	res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p"})
	if err != nil || res.GC.Deleted != 1 {
		t.Fatalf("P2: %v %+v", err, res.GC)
	}
	if setKeys(t, r.Store) != 0 {
		t.Fatalf("want the set closed")
	}

	// W2 on host b dedups against the recovered index file.
	name, err := backupOne(t, r, "b", data)
	if err != nil || !committed(t, r.Store, name) {
		t.Fatalf("W2: %v", err)
	}
	mustValidate(t, r, name)
}

// A3. Continuous backup carries live SSTable records from commit to
// commit without looking them up again. Its keyspace's newest manifest is
// removed (purge --purge-latest); the purge condemns the pack; the idle
// session acknowledges the set (every reference it made before it learned
// of the set IS in a manifest it committed — one that is gone); the sweep
// deletes the pack; the next manifest of the keyspace names the carried
// record. The continuous backup's own commit code runs here, without the
// watcher.
func TestAttackCarriedRecordAfterPurgeLatest(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	data := filepath.Join(t.TempDir(), "data")
	sst := func(gen int, content string) string {
		rel := fmt.Sprintf("ks/t-%s/nb-%d-big-", tbl, gen)
		os.MkdirAll(filepath.Join(data, "ks", "t-"+tbl), 0o755)
		os.WriteFile(filepath.Join(data, rel+"Data.db"), bytes.Repeat([]byte(content), 3000), 0o644)
		return rel + "Data.db"
	}
	opts := ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "a", Threads: 1}}.withDefaults()
	c := &continuous{opts: opts, learned: map[string]time.Time{}, items: map[uint64]*item{}, live: map[sstKey]*liveSST{},
		dirty: map[string]bool{}, keyspaces: map[string]bool{}, synced: map[string]bool{data: true}, scanned: map[string]bool{}}
	var err error
	if c.b, err = r.beginBackup(ctx, opts.BackupOptions, nil, time.Now(), c.learn); err != nil {
		t.Fatal(err)
	}
	defer c.b.end(ctx)
	pk := c.b.w.NewPacker()
	add := func(rel string) {
		f, err := os.Open(filepath.Join(data, rel))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rec, _, err := c.b.storeFile(ctx, pk, data, rel, f, storeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.live[sstKey{data, rel}] = &liveSST{ks: "ks", table: tableKey{"t", tbl}, files: []manifest.File{rec}}
		c.dirty["ks"] = true
	}
	add(sst(1, "static keyspace "))
	if err := c.commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Operator: purge --purge-latest on host a (cut-off after the backup).
	res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Minute), PurgeLatest: true, Holder: "p"})
	// Two packs condemned: the SSTable's, and the one of the manifest's tree.
	if err != nil || len(res.Manifests) != 1 || res.GC.Condemned != 2 || res.GC.Deleted != 0 {
		t.Fatalf("purge: %v %v %+v", err, res.Manifests, res.GC)
	}
	// Heartbeat: learn the set and exclude its packs; then an idle commit
	// acknowledges it, and the next renewal writes the acknowledgement.
	fresh, err := c.b.sess.s.Renew(ctx)
	if err != nil || len(fresh) != 1 {
		t.Fatal(err, fresh)
	}
	c.b.idx.Exclude(fresh[0].Packs)
	c.learn(fresh)
	time.Sleep(time.Millisecond)
	if err := c.commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.b.sess.s.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	purgeNow(t, r, "nobody")
	// A flush elsewhere in the keyspace: a new manifest with every live
	// SSTable, the carried one included.
	add(sst(2, "new flush "))
	if err := c.commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// listHookStore also runs a hook before the nth List of a prefix.
type listHookStore struct {
	*hookStore
	lmu     sync.Mutex
	lprefix string
	lnth    int
	lhook   func()
}

func (h *listHookStore) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	h.lmu.Lock()
	var f func()
	if h.lhook != nil && prefix == h.lprefix {
		h.lnth--
		if h.lnth == 0 {
			f, h.lhook = h.lhook, nil
		}
	}
	h.lmu.Unlock()
	if f != nil {
		f()
	}
	return h.hookStore.List(ctx, prefix, fn)
}

func putManifest(t *testing.T, st remote.Store, session, host string, at time.Time, data []byte, refs []chunk.Ref) string {
	t.Helper()
	m := &manifest.Manifest{Format: manifest.FormatVersion, Host: host, Keyspace: "ks", Time: at.UTC().Truncate(time.Microsecond), Session: session}
	m.Name = manifest.BackupName(m.Time, "ks", host)
	m.Tables = []manifest.Table{{Name: "t", ID: tbl, Files: []manifest.File{{
		Path: "ks/t-" + tbl + "/nb-1-big-Data.db", Size: int64(len(data)), Mode: 0o644,
		MTime: at.UTC(), Sum: chunk.Sum(data), Chunks: refs,
	}}}}
	if err := StoreManifest(t.Context(), st, m); err != nil {
		t.Fatal(err)
	}
	return m.Name
}

// A5. Two purgers. P_a renews its lease, then is paused just before it
// deletes pack X of set C (its fresh mark found X unreferenced; the only
// session that used X was revoked). P_b takes over the stale lease and
// sweeps C too; a revoked writer's doomed manifest (PUT after P_b's
// settle, before its fresh mark) makes P_b resurrect X and close C. X is
// now an ordinary pack: a new writer deduplicates against it and commits.
// P_a wakes and its DELETE lands.
func TestAttackStalePurgerDeletesResurrectedPack(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(dir, 0o755)
	ls, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs := &listHookStore{hookStore: &hookStore{Store: ls}}
	r, err := Open(ctx, hs, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	short := gc.Options{Heartbeat: time.Hour, Lease: 50 * time.Millisecond, Grace: -1, NewPackMargin: -1}
	r.GC = short
	// P_a's pause is the whole process's: its lease keep-alive stops too.
	r.spawn = func(ctx context.Context, name string, fn func(context.Context)) func() {
		if name == "purge-lease" {
			return func() {}
		}
		return goSpawn(ctx, name, fn)
	}
	data := bytes.Repeat([]byte("resurrect me "), 3000)
	ref := storeChunk(t, r, index.New(), "old", data) // pack X, unreferenced

	// W_r registers and dedups against X, then is paused.
	wr, _, err := gc.StartSession(ctx, r.Store, "r", gc.KindBackup, short)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)

	var w3name string
	hs.prefix = "packs/"
	hs.hook = func() { // P_a is paused here, lease renewed, DELETE X not yet sent
		time.Sleep(80 * time.Millisecond)
		hs.lprefix, hs.lnth = "sessions/", 2
		hs.lhook = func() { // inside P_b's sweep, before its fresh mark
			putManifest(t, r.Store, wr.ID(), "r", time.Now(), data, []chunk.Ref{ref})
		}
		res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "pb"})
		// P_a's doom list binds P_b: X is never brought back, and the set
		// stays open (a revoked writer's manifest names X: nothing is
		// deleted until that manifest is withdrawn).
		if err != nil || res.GC.Resurrected != 0 || setKeys(t, r.Store) == 0 {
			t.Errorf("P_b: %v %+v", err, res.GC)
		}
		// W_r wakes: its commit fails (revoked), it withdraws its manifest.
		objs := []manifest.Commit{}
		manifest.Objects(ctx, r.Store, func(o manifest.Object) error { objs = append(objs, manifest.Commit{Name: o.Name}); return nil })
		if err := wr.Commit(ctx, objs, nil); err == nil {
			t.Error("revoked writer committed")
		}
		for _, o := range objs {
			manifest.Delete(ctx, r.Store, o.Name)
		}
		// A new writer on host c dedups against X (it exists, no set names it).
		r.GC = noWait
		name, err := backupOne(t, r, "c", data)
		if err != nil || !committed(t, r.Store, name) {
			t.Errorf("W3: %v", err)
		}
		w3name = name
	}
	// P_a: condemns X, revokes W_r, fresh mark: X unreferenced, delete X.
	res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "pa"})
	t.Logf("P_a: %v deleted=%d", err, res.GC.Deleted)
	mustValidate(t, r, w3name)
}

func packOf(t *testing.T, r *Repo, id chunk.ID) chunk.ID {
	idx := index.New()
	idx.Load(t.Context(), r.Store, "")
	loc, _ := idx.Lookup(id)
	return loc.Pack
}

// lostStore applies one chosen PutIf and then reports a transient timeout
// (the answer is lost), after running a hook: the writer is paused before
// its retry.
type lostStore struct {
	*local.Store
	mu    sync.Mutex
	match func(key string, data []byte) bool
	hook  func()
}

func (l *lostStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	etag, err := l.Store.PutIf(ctx, key, data, ifMatch)
	l.mu.Lock()
	var f func()
	if err == nil && l.match != nil && l.match(key, data) {
		f, l.match = l.hook, nil
	}
	l.mu.Unlock()
	if f != nil {
		f()
		return "", remote.Transient(fmt.Errorf("read tcp: i/o timeout"))
	}
	return etag, err
}

// A6. The commit CAS lands, its answer is lost, the writer is paused in the
// retry layer's backoff past its lease. A purge revokes it (by CAS on the
// landed object, which lists the backup as committed) and writes the
// backup's marker (it is committed). The retry gets 412; the object is not
// the writer's bytes, so the writer concludes "revoked" and withdraws the
// manifest — marker first, then manifest. A backup that counted is gone.
func TestAttackLostCommitAnswerThenRevoked(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(dir, 0o755)
	ls, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	lost := &lostStore{Store: ls}
	st := remote.WithRetry(lost, remote.RetryOptions{Attempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	r, err := Open(ctx, st, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	storeChunk(t, r, index.New(), "old", bytes.Repeat([]byte("dead"), 500)) // something to sweep
	data := bytes.Repeat([]byte("committed then lost "), 2000)
	var countedInBetween bool
	var mname string
	lost.match = func(key string, b []byte) bool {
		return strings.HasPrefix(key, "sessions/w/") && strings.Contains(string(b), `"committed":["`)
	}
	lost.hook = func() {
		time.Sleep(80 * time.Millisecond) // paused past the lease
		r.GC = gc.Options{Heartbeat: time.Hour, Lease: 50 * time.Millisecond, Grace: -1, NewPackMargin: -1}
		res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p"})
		if err != nil || len(res.GC.RevokedSessions) != 1 {
			t.Errorf("purge: %v %+v", err, res.GC)
		}
		manifest.Objects(ctx, r.Store, func(o manifest.Object) error { mname = o.Name; return nil })
		countedInBetween = mname != "" && committed(t, r.Store, mname)
		r.GC = noWait
	}
	_, err = backupOne(t, r, "w", data)
	t.Logf("writer: %v", err)
	if !countedInBetween {
		t.Fatal("setup: backup was not counted after the purge")
	}
	_, merr := r.Store.Stat(ctx, "manifests/w/ks/"+mname)
	if !committed(t, r.Store, mname) || merr != nil {
		t.Fatalf("COUNTED BACKUP DISAPPEARED: %s was committed (session CAS landed, purge wrote its marker) and is now gone (marker=%v, manifest err=%v)",
			mname, committed(t, r.Store, mname), merr)
	}
}

// L-a. One damaged condemned-set shard (bit rot on a local store, or a
// planted key) stops every backup, restore and purge.
func TestAttackDamagedShardStopsEverything(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	r.GC.Grace = time.Hour
	storeChunk(t, r, index.New(), "old", bytes.Repeat([]byte("dead"), 500))
	if res := purgeNow(t, r, "x"); res.Condemned != 1 {
		t.Fatalf("%+v", res)
	}
	var shard string
	r.Store.List(ctx, "gc/condemned/", func(i remote.Info) error {
		if !strings.HasSuffix(i.Key, "/set") && i.Key != "gc/condemned/generation" {
			shard = i.Key
		}
		return nil
	})
	r.Store.Put(ctx, shard, strings.NewReader("{garbage"), 8)
	_, berr := backupOne2(t, r, "b", []byte("x"))
	_, perr := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p"})
	if berr != nil || perr != nil {
		t.Fatalf("STORE STUCK: backup: %v; purge: %v", berr, perr)
	}
}

func backupOne2(t *testing.T, r *Repo, host string, data []byte) (string, error) {
	b, err := r.beginBackup(t.Context(), BackupOptions{Host: host, Threads: 1}, []string{"ks"}, time.Now(), nil)
	if err != nil {
		return "", err
	}
	b.end(t.Context())
	return "", nil
}
