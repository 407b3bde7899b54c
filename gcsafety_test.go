package cassback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// The regression tests of the garbage collector's safety: one per hole
// docs/design.md §4.7 names. Each runs its scenario twice: as the code is
// (it must keep every committed backup whole) and with the hole put back
// by its test-only switch (the scenario must find the loss, which is how
// the code behaved before the fix).

// scenario runs one race and returns an error describing any loss.
type scenario func(t *testing.T) error

func holeTest(t *testing.T, h hole.Hole, run scenario) {
	t.Run("fixed", func(t *testing.T) {
		if err := run(t); err != nil {
			t.Fatalf("data lost: %v", err)
		}
	})
	t.Run("hole", func(t *testing.T) {
		defer hole.Set(h, true)()
		if err := run(t); err == nil {
			t.Fatalf("with hole %s put back the scenario lost nothing: it does not test the hole", h)
		} else {
			t.Logf("with hole %s put back: %v", h, err)
		}
	})
}

// committedWhole checks every committed backup in the store: its manifest
// decodes and every chunk it names can be read back with its checksum by a
// reader with an empty cache.
func committedWhole(t *testing.T, st remote.Store) error {
	t.Helper()
	ctx := t.Context()
	var names []string
	if err := manifest.Commits(ctx, st, func(o manifest.Object) error { names = append(names, o.Name); return nil }); err != nil {
		return err
	}
	idx := index.New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		return err
	}
	for _, n := range names {
		m, err := manifest.Get(ctx, st, n, ChunksOf(st))
		if err != nil {
			return fmt.Errorf("committed backup %s: %w", n, err)
		}
		var ids []chunk.ID
		for ref := range m.Refs() {
			ids = append(ids, ref.ID)
		}
		if !allKnownIn(idx, ids) {
			idx.RebuildOrphans(ctx, st)
		}
		var bad []string
		var mu sync.Mutex
		err = index.Fetch(ctx, st, idx, ids, index.FetchOptions{}, func(id chunk.ID, _ []byte, err error) error {
			if err != nil {
				mu.Lock()
				bad = append(bad, err.Error())
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			return fmt.Errorf("committed backup %s: %d chunks unreadable, first: %s", n, len(bad), bad[0])
		}
	}
	return nil
}

func allKnownIn(idx *index.Index, ids []chunk.ID) bool {
	for _, id := range ids {
		if !idx.Has(id) {
			return false
		}
	}
	return true
}

// frozenClock is a writer's clock that stands still: its heartbeat never
// fires and its own fence always passes, as for a process stopped (SIGSTOP,
// a suspended VM) between two of its steps while the store's clock runs on.
type frozenClock struct{ at time.Time }

func (c frozenClock) Now() time.Time { return c.at }
func (c frozenClock) Sleep(ctx context.Context, _ time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

// lease is a store-time lease short enough to expire within a test.
const testLease = 100 * time.Millisecond

// pauseOpts are protocol options for a writer that will be paused.
func pauseOpts(skew time.Duration) gc.Options {
	return gc.Options{Heartbeat: 10 * time.Millisecond, Lease: testLease, Grace: -1, NewPackMargin: -1, RepackThreshold: 1,
		Clock: frozenClock{at: time.Now().Add(skew)}}
}

// purgeOpts are protocol options for a purge that may revoke a writer
// paused for longer than testLease.
var purgeOpts = gc.Options{Heartbeat: 10 * time.Millisecond, Lease: testLease, Grace: -1, NewPackMargin: -1, RepackThreshold: 1}

func pastLease() { time.Sleep(3 * testLease) }

// hooked runs before(key) once, when a Put of a key with the given prefix
// has started and before it lands: the writer is stopped mid-request.
type hooked struct {
	remote.Store
	prefix string
	once   sync.Once
	before func(key string)
}

func (h *hooked) hook(key string) {
	if strings.HasPrefix(key, h.prefix) {
		h.once.Do(func() { h.before(key) })
	}
}

func (h *hooked) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	h.hook(key)
	return h.Store.Put(ctx, key, data, size)
}

func (h *hooked) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	h.hook(key)
	return h.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
}

// smallNode generates a few MB of node data once per test.
func smallNode(t *testing.T, seed uint64) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: seed, TotalBytes: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	return data
}

func repoOn(t *testing.T, st remote.Store, o gc.Options) *Repo {
	t.Helper()
	r, err := Open(t.Context(), st, Options{Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	nc := r.GC.NoConditional
	r.GC = o
	r.GC.NoConditional = nc
	return r
}

func localStore(t *testing.T) remote.Store {
	t.Helper()
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// writerOpts are protocol options for a repo whose backups are not
// paused: a lease long enough for any backup here.
var writerOpts = gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 1}

// purgeAll purges host (everything) with purgeOpts, so a writer stopped
// for longer than testLease is stale to it.
func purgeAll(t *testing.T, r *Repo, host string) (PurgeResult, error) {
	t.Helper()
	nc := r.GC.NoConditional
	saved := r.GC
	r.GC = purgeOpts
	r.GC.NoConditional = nc
	defer func() { r.GC = saved }()
	return r.Purge(t.Context(), PurgeOptions{Host: host, Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "purger"})
}

// Hole 1: the dedup index was read when the store was opened, before the
// backup's session existed. A purge that condemned, swept and cleared its
// set in that window was never seen: a node replaced from its backup
// deduplicated against deleted packs.
func TestHole1IndexBeforeSession(t *testing.T) {
	holeTest(t, hole.IndexBeforeSession, func(t *testing.T) error {
		ctx := t.Context()
		data := smallNode(t, 31)
		st := localStore(t)
		old := repoOn(t, st, writerOpts)
		if _, err := old.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "old"}); err != nil {
			t.Fatal(err)
		}
		replacement := repoOn(t, st, writerOpts) // opened: with the hole, the index is read now
		if res, err := purgeAll(t, old, "old"); err != nil || res.GC.Deleted == 0 {
			t.Fatalf("purge of old: %v, deleted %d packs; want old's packs deleted", err, res.GC.Deleted)
		}
		if _, err := replacement.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "new"}); err != nil {
			t.Fatal(err)
		}
		return committedWhole(t, st)
	})
}

// pausedWriter is a backup session that deduplicated against the one pack
// of an unreferenced chunk, and was then stopped for longer than its lease.
type pausedWriter struct {
	st   remote.Store
	sess *gc.Session
	ref  chunk.Ref
	data []byte
}

// startPaused stores an unreferenced chunk (host "old"), registers a
// writer session with the given options, and lets it find the chunk.
func startPaused(t *testing.T, st remote.Store, r *Repo, o gc.Options) *pausedWriter {
	t.Helper()
	data := bytes.Repeat([]byte("needed later"), 800)
	ref := storeChunk(t, r, index.New(), "old", data)
	sess, _, err := gc.StartSession(t.Context(), st, "w", gc.KindBackup, o)
	if err != nil {
		t.Fatal(err)
	}
	idx := index.New()
	if _, err := idx.Load(t.Context(), st, ""); err != nil || !idx.Has(ref.ID) {
		t.Fatalf("the writer does not see the chunk: %v", err)
	}
	return &pausedWriter{st: st, sess: sess, ref: ref, data: data}
}

// liveDuring runs fn while the writer renews its session every few
// milliseconds, as a heartbeat would (and acknowledges nothing). Not
// Session.Heartbeat: it sleeps on the writer's clock, which pauseOpts
// freezes, so it would never renew, and the session would go stale
// whenever fn took longer than testLease (a loaded machine).
func (w *pausedWriter) liveDuring(t *testing.T, fn func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := w.sess.Renew(ctx); err != nil {
				if ctx.Err() != nil {
					err = nil
				}
				done <- err
				return
			}
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-time.After(testLease / 10):
			}
		}
	}()
	fn()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("the writer's renewals: %v", err)
	}
}

// resume renews (as a heartbeat would on waking), checks its fence and
// commits a manifest naming the chunk, as a backup does.
func (w *pausedWriter) resume(t *testing.T) {
	ctx := t.Context()
	if _, err := w.sess.Renew(ctx); err != nil {
		t.Logf("writer's renewal after the pause: %v", err)
		return
	}
	if err := w.sess.Check(); err != nil {
		t.Logf("writer's fence after the pause: %v", err)
		return
	}
	m := manifestOf(w.sess, "w", time.Now(), w.data, []chunk.Ref{w.ref})
	h, err := storeManifest(ctx, w.st, m)
	if err != nil {
		t.Fatal(err)
	}
	c := []manifest.Commit{{Name: m.Name, Hash: h}}
	if hole.On(hole.CommitUnfenced) {
		manifest.PutCommits(ctx, w.st, c, w.sess.ID())
		return
	}
	if err := w.sess.Commit(ctx, c, nil); err != nil {
		t.Logf("writer's commit after the pause: %v", err)
		manifest.Delete(ctx, w.st, m.Name)
	}
}

// Hole 2: sessions were revoked only at the start of a purge; one that went
// stale during the mark was skipped at sweep time without being revoked,
// then renewed, passed its fence and committed a manifest naming a swept
// pack.
func TestHole2StaleNotRevoked(t *testing.T) {
	holeTest(t, hole.StaleNotRevoked, func(t *testing.T) error {
		st := localStore(t)
		r := repoOn(t, st, writerOpts)
		w := startPaused(t, st, r, pauseOpts(0))
		// Live (renewing, acknowledging nothing) during the first purge,
		// however slow the machine; then it stops.
		var res PurgeResult
		var err error
		w.liveDuring(t, func() { res, err = purgeAll(t, r, "nobody") })
		if err != nil || res.GC.Condemned != 1 || res.GC.Deleted != 0 {
			t.Fatalf("first purge: %v, %+v; want the pack condemned, waiting for the live writer", err, res.GC)
		}
		pastLease() // the writer is stopped; its session goes stale
		if _, err := purgeAll(t, r, "nobody"); err != nil {
			t.Fatal(err)
		}
		w.resume(t)
		return committedWhole(t, st)
	})
}

// noCAS hides a store's conditional writes, as a server without them would.
type noCAS struct{ remote.Store }

// Hole 3: on a store without atomic conditional writes, sessions fell back
// to plain PUTs: a purge "revoked" a stale writer, the writer's plain
// renewal overwrote the revocation, and it committed a manifest naming the
// pack the purge had swept.
func TestHole3NoConditionalWrites(t *testing.T) {
	holeTest(t, hole.PlainFallback, func(t *testing.T) error {
		st := noCAS{localStore(t)}
		r := repoOn(t, st, writerOpts)
		if !r.GC.NoConditional {
			t.Fatal("the probe took a store without conditional writes for one with them")
		}
		o := pauseOpts(0)
		o.NoConditional = true // as the config says
		w := startPaused(t, st, r, o)
		w.sess.Renew(t.Context()) // learns nothing yet; its object is plain
		_, err := purgeAll(t, r, "nobody")
		if !hole.On(hole.PlainFallback) && !errors.Is(err, gc.ErrNeedExclusive) {
			t.Fatalf("purge on a store without conditional writes: %v, want ErrNeedExclusive", err)
		}
		pastLease()
		purgeAll(t, r, "nobody")
		w.resume(t)
		return committedWhole(t, st)
	})
}

// The store's config, written at creation, says whether it has conditional
// writes; a process never decides for itself. One that finds conditional
// writes refused where the config promises them stops with an error
// instead of writing its session plainly over a purge's revocation, and
// one that finds them on a store created without them still needs
// --exclusive to purge.
func TestConditionalRecordedAtCreation(t *testing.T) {
	ctx := t.Context()
	data := smallNode(t, 71)

	st := localStore(t)
	repoOn(t, st, writerOpts)
	r := repoOn(t, noCAS{st}, writerOpts)
	if r.GC.NoConditional {
		t.Fatal("a process that finds no conditional writes overrode the store's config")
	}
	_, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h"})
	if err == nil || !strings.Contains(err.Error(), "conditional writes") {
		t.Fatalf("backup where the config promises conditional writes and the store refuses them: %v, want an error naming them", err)
	}
	if hosts, err := manifest.Hosts(ctx, st); err != nil || len(hosts) > 0 {
		t.Fatalf("backups committed without conditional writes: %v %v", hosts, err)
	}

	plain := localStore(t)
	repoOn(t, noCAS{plain}, writerOpts)
	r = repoOn(t, plain, writerOpts)
	if !r.GC.NoConditional {
		t.Fatal("a store created without conditional writes was treated as having them")
	}
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := purgeAll(t, r, "h"); !errors.Is(err, gc.ErrNeedExclusive) {
		t.Fatalf("purge of a store created without conditional writes: %v, want ErrNeedExclusive", err)
	}
}

// A reader whose session a purge revoked, or revoked and then forgot,
// while it was stopped learns so when it ends, even if its heartbeat never
// wrote after the revocation: the failures it met may be the purge's
// doing. A backup learns of revocation from its commit; its end is quiet.
func TestReaderLearnsOfRevocationAtEnd(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	revoke := func(key string) {
		rc, err := st.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte(`"state":"live"`), []byte(`"state":"revoked"`), 1)
		if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	forget := func(key string) {
		revoke(key)
		st.Delete(ctx, key)
	}
	for _, c := range []struct {
		kind  gc.Kind
		purge func(string)
		want  error
	}{
		{gc.KindRestore, revoke, gc.ErrRevoked},
		{gc.KindValidate, forget, gc.ErrRevoked},
		{gc.KindRestore, func(string) {}, nil},
		{gc.KindBackup, forget, nil},
	} {
		s, _, err := gc.StartSession(ctx, st, "h", c.kind, writerOpts)
		if err != nil {
			t.Fatal(err)
		}
		c.purge(s.Key())
		if err := s.End(ctx); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s session: End = %v, want %v", c.kind, err, c.want)
		}
	}
}

// A session whose process died (it stopped renewing) is revoked by the
// next purge even when no sweep needs it; the purge after withdraws the
// backup it never committed, so what that backup named can be collected,
// and one two leases later forgets the session.
func TestDeadSessionSettled(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	data := bytes.Repeat([]byte("never committed"), 600)
	ref := storeChunk(t, r, index.New(), "d", data)
	s, _, err := gc.StartSession(ctx, st, "d", gc.KindBackup, pauseOpts(0))
	if err != nil {
		t.Fatal(err)
	}
	name := putManifest(t, st, s.ID(), "d", time.Now(), data, []chunk.Ref{ref})
	pastLease()
	res, err := purgeAll(t, r, "nobody")
	if err != nil || !slices.Contains(res.GC.RevokedSessions, s.Key()) {
		t.Fatalf("first purge: %v, revoked %v; want %s revoked", err, res.GC.RevokedSessions, s.Key())
	}
	res, err = purgeAll(t, r, "nobody")
	if err != nil || !slices.Contains(res.GC.Withdrawn, name) {
		t.Fatalf("second purge: %v, withdrew %v; want %s", err, res.GC.Withdrawn, name)
	}
	pastLease()
	if _, err := purgeAll(t, r, "nobody"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, s.Key()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the dead session is still there two leases after its revocation: %v", err)
	}
}

// Hole 4: purge skipped an unreadable index file and judged the packs it
// named as unindexed, condemning and deleting packs that manifests use.
func TestHole4LostIndexFile(t *testing.T) {
	holeTest(t, hole.SkipBadIndex, func(t *testing.T) error {
		ctx := t.Context()
		st := localStore(t)
		r := repoOn(t, st, writerOpts)
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{smallNode(t, 41)}, Host: "a"}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{smallNode(t, 42)}, Host: "b"}); err != nil {
			t.Fatal(err)
		}
		var aIndex []string
		st.List(ctx, "index/a/", func(i remote.Info) error { aIndex = append(aIndex, i.Key); return nil })
		if len(aIndex) == 0 {
			t.Fatal("host a wrote no index file")
		}
		flip(t, st, aIndex[0], 20) // damaged: does not decode
		if _, err := purgeAll(t, r, "b"); err != nil {
			t.Fatal(err)
		}
		return committedWhole(t, st)
	})
}

// Hole 5: the purge lease was never renewed and was released by an
// unconditional delete: a purge that ran longer than the lease was taken
// over, went on deleting, and then freed its successor's lease, letting a
// third purge run beside the second.
func TestHole5TwoPurgers(t *testing.T) {
	holeTest(t, hole.LeaseUnfenced, func(t *testing.T) error {
		ctx := t.Context()
		st := localStore(t)
		r := repoOn(t, st, writerOpts)
		storeChunk(t, r, index.New(), "old", bytes.Repeat([]byte("dead"), 500))
		a, err := gc.AcquireLease(ctx, st, "a", purgeOpts, false)
		if err != nil {
			t.Fatal(err)
		}
		c := &gc.Collector{Store: st, Config: r.Config, Opts: purgeOpts, Host: "a", Lease: a}
		plan, err := c.Plan(ctx)
		if err != nil || len(plan.Condemn) != 1 {
			t.Fatalf("plan: %v, %d to condemn", err, len(plan.Condemn))
		}
		pastLease() // a stops; its lease goes stale
		b, err := gc.AcquireLease(ctx, st, "b", purgeOpts, false)
		if err != nil {
			t.Fatalf("the stale lease was not taken over: %v", err)
		}
		defer b.Release(ctx)
		var problems []string
		rep, err := plan.Execute(ctx) // a wakes up
		if err == nil || rep.Condemned+rep.Deleted > 0 {
			problems = append(problems, fmt.Sprintf("the purge that lost its lease went on: err %v, condemned %d, deleted %d", err, rep.Condemned, rep.Deleted))
		}
		a.Release(ctx)
		if third, err := gc.AcquireLease(ctx, st, "c", purgeOpts, false); err == nil {
			third.Release(ctx)
			problems = append(problems, "a third purge took the lease while the second held it")
		}
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
		return nil
	})
}

// Hole 6: a session whose start was "not before" a condemned set, judged by
// clocks, was exempt from acknowledging it; a writer whose clock ran ahead
// was exempt from a set it had never seen, and committed a manifest naming
// a swept pack.
func TestHole6ClockExemption(t *testing.T) {
	holeTest(t, hole.ClockExemption, func(t *testing.T) error {
		st := localStore(t)
		r := repoOn(t, st, writerOpts)
		o := pauseOpts(time.Hour) // its clock is an hour ahead
		o.Lease = time.Hour       // and it is never stale
		w := startPaused(t, st, r, o)
		// The purge's lease is an hour too: the writer is never stale to it,
		// however slow the machine, so only its clock can exempt it.
		r.GC = purgeOpts
		r.GC.Lease = time.Hour
		if _, err := r.Purge(t.Context(), PurgeOptions{Host: "nobody", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "purger"}); err != nil {
			t.Fatal(err)
		}
		w.resume(t)
		return committedWhole(t, st)
	})
}

// Hole 7: the fence was checked once, then manifests were PUT; a writer
// stopped between its fence check and the end of its manifest PUT was
// revoked and its packs swept, and its manifest counted anyway.
func TestHole7CommitAfterRevocation(t *testing.T) {
	holeTest(t, hole.CommitUnfenced, func(t *testing.T) error {
		ctx := t.Context()
		data := smallNode(t, 51)
		base := localStore(t)
		old := repoOn(t, base, writerOpts)
		if _, err := old.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "old"}); err != nil {
			t.Fatal(err)
		}
		// The replacement deduplicates every chunk against old's packs,
		// passes its fence and starts its manifest PUT; then it stops: old's
		// backups are purged, its session goes stale, and a second purge
		// revokes it and sweeps; then the PUT lands.
		st := &hooked{Store: base, prefix: "manifests/new/"}
		st.before = func(string) {
			if _, err := purgeAll(t, old, "old"); err != nil {
				t.Error(err)
			}
			pastLease()
			if _, err := purgeAll(t, old, "old"); err != nil {
				t.Error(err)
			}
		}
		w := repoOn(t, st, pauseOpts(0))
		_, err := w.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "new"})
		t.Logf("the stopped backup: %v", err)
		return committedWhole(t, base)
	})
}

// Hole 8: purge kept the last listed key of a keyspace as its newest
// backup; a planted object dated 2099 made it delete the only real backup.
func TestHole8NewestByKey(t *testing.T) {
	holeTest(t, hole.NewestByKey, func(t *testing.T) error {
		ctx := t.Context()
		st := localStore(t)
		r := repoOn(t, st, writerOpts)
		sum, err := r.Backup(ctx, BackupOptions{DataDirs: []string{smallNode(t, 61)}, Host: "h"})
		if err != nil {
			t.Fatal(err)
		}
		for _, real := range sum.Manifests {
			_, ks, _, _ := manifest.ParseBackupName(real)
			planted := manifest.BackupName(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), ks, "h")
			key, _ := manifest.Key(planted)
			st.Put(ctx, key, strings.NewReader(""), 0)
			manifest.PutCommits(ctx, st, []manifest.Commit{{Name: planted, Hash: manifest.HashOf(nil)}}, "")
		}
		res, err := r.Purge(ctx, PurgeOptions{Host: "h", Before: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), Holder: "p"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("removed %d, kept %d, skipped %d", len(res.Manifests), len(res.Kept), len(res.Skipped))
		for _, real := range sum.Manifests {
			if _, err := manifest.Get(ctx, st, real, ChunksOf(st)); err != nil {
				return fmt.Errorf("the only real backup of its keyspace was removed: %w", err)
			}
		}
		return nil
	})
}

// manifestOf is a manifest of one file of data made of refs, by session s.
func manifestOf(s *gc.Session, host string, at time.Time, data []byte, refs []chunk.Ref) *manifest.Manifest {
	m := &manifest.Manifest{Format: manifest.FormatVersion, Host: host, Keyspace: "ks", Time: at.UTC().Truncate(time.Microsecond), Session: s.ID()}
	m.Name = manifest.BackupName(m.Time, "ks", host)
	m.Tables = []manifest.Table{{Name: "t", ID: strings.Repeat("ab", 16), Files: []manifest.File{{
		Path: "ks/t-" + strings.Repeat("ab", 16) + "/nb-1-big-Data.db", Size: int64(len(data)), Mode: 0o644,
		MTime: at.UTC(), Sum: chunk.Sum(data), Chunks: refs,
	}}}}
	return m
}

// TestDamagedIndexFiles: one of a host's index files is deleted and another
// bit-flipped. A purge of another host deletes no pack a manifest uses; a
// node with an empty cache restores the host byte-identical; validate names
// the damaged file and the unindexed packs; repair-index mends the store
// and purge runs again.
func TestDamagedIndexFiles(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	var nodes []*nodegen.Node
	var dirs []string
	for i := range 2 {
		d := filepath.Join(t.TempDir(), "data")
		n, err := nodegen.Generate(d, nodegen.Config{Seed: uint64(70 + i), TotalBytes: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		nodes, dirs = append(nodes, n), append(dirs, d)
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{smallNode(t, 79)}, Host: "b"}); err != nil {
		t.Fatal(err)
	}
	var aIndex []string // one a backup: its packs of file chunks and of its manifests' trees
	st.List(ctx, "index/a/", func(i remote.Info) error {
		aIndex = append(aIndex, i.Key)
		return nil
	})
	if len(aIndex) != 2 {
		t.Fatalf("host a has %d index files, want one a backup, 2", len(aIndex))
	}
	st.Delete(ctx, aIndex[0])
	flip(t, st, aIndex[1], 40)
	packsBefore := countKeys(t, st, "packs/")

	res, err := purgeAll(t, r, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GC.Blocked) == 0 || res.GC.Deleted != 0 {
		t.Errorf("purge with a damaged index file: blocked %v, deleted %d packs; want it blocked, nothing deleted", res.GC.Blocked, res.GC.Deleted)
	}
	if got := countKeys(t, st, "packs/"); got != packsBefore {
		t.Errorf("packs: %d before the purge, %d after; want none deleted", packsBefore, got)
	}

	// A node with an empty cache restores host a's latest backup.
	fresh := repoOn(t, st, writerOpts)
	ms, err := Select(ctx, st, "a", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	if _, err := fresh.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatalf("restore with damaged index files: %v", err)
	}
	sameFiles(t, dirs[1], dst, notSystem(nodes[1].LiveFiles))

	rep, err := fresh.Validate(ctx, ValidateOptions{Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.BadIndex) != 1 || !strings.Contains(rep.BadIndex[0], aIndex[1]) {
		t.Errorf("validate's unreadable index files: %v, want %s", rep.BadIndex, aIndex[1])
	}
	unindexed := 0
	for _, p := range rep.Problems {
		if p.Kind == Unindexed {
			unindexed++
		} else {
			t.Errorf("validate: %+v, want only unindexed files", p)
		}
	}
	if unindexed == 0 || rep.OK() {
		t.Errorf("validate found %d unindexed files, OK %v; want some, not OK", unindexed, rep.OK())
	}

	fix, err := fresh.RepairIndex(ctx, "t", false)
	if err != nil || len(fix.Removed) != 1 || len(fix.Reindexed) == 0 {
		t.Fatalf("repair-index: %v, %+v", err, fix)
	}
	if rep, err := fresh.Validate(ctx, ValidateOptions{Checksum: true}); err != nil || !rep.OK() {
		t.Fatalf("validate after repair-index: %v, %+v %v", err, rep.Problems, rep.BadIndex)
	}
	if res, err := purgeAll(t, r, "b"); err != nil || len(res.GC.Blocked) > 0 {
		t.Fatalf("purge after repair-index: %v, blocked %v", err, res.GC.Blocked)
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
}

// treeIndexFile returns the one index file of host's packs of manifest
// trees.
func treeIndexFile(t *testing.T, st remote.Store, host string) string {
	t.Helper()
	var trees []string
	st.List(t.Context(), "index/"+host+"/", func(i remote.Info) error {
		if indexesTrees(t, st, i.Key) {
			trees = append(trees, i.Key)
		}
		return nil
	})
	if len(trees) != 1 {
		t.Fatalf("host %s has %d index files of tree packs, want 1", host, len(trees))
	}
	return trees[0]
}

// indexesTrees reports whether an index file names a pack of manifest
// trees (a commit's index file names its data packs too).
func indexesTrees(t *testing.T, st remote.Store, key string) bool {
	t.Helper()
	recs, err := index.ReadFile(t.Context(), st, key)
	if err != nil || len(recs) == 0 {
		t.Fatalf("index file %s: %v", key, err)
	}
	for _, rec := range recs {
		rc, err := st.Get(t.Context(), pack.Key(rec.ID), rec.Size-pack.TrailerSize, pack.TrailerSize)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if pack.IsTreePack(tr) {
			return true
		}
	}
	return false
}

// A damaged index file of a manifest tree's pack costs no backup: readers
// index the pack from its header, as they do a pack of file chunks, and
// validate names the file (seed 15081 of the simulator's long mode: its
// final validate called the manifest unreadable).
func TestDamagedTreeIndexFile(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	d := smallNode(t, 81)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	tree := treeIndexFile(t, st, "a")
	flip(t, st, tree, 40)

	fresh := repoOn(t, st, writerOpts)
	rep, err := fresh.Validate(ctx, ValidateOptions{Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.BadIndex) != 1 || !strings.Contains(rep.BadIndex[0], tree) {
		t.Errorf("validate's unreadable index files: %v, want %s", rep.BadIndex, tree)
	}
	for _, p := range rep.Problems {
		if p.Kind != Unindexed {
			t.Errorf("validate: %+v, want only unindexed packs", p)
		}
	}
	ms, err := Select(ctx, st, "a", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restore")
	if _, err := fresh.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatalf("restore with the tree pack's index file damaged: %v", err)
	}
}
