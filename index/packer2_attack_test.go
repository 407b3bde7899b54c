package index

// Attacks on 7dc29b1 (the fix of f00f479's off-lock uploads): Flush waits
// for every upload off the lock, full packs go up under the lock while a
// Flush waits (p.flushing), a failed Packer's Flush returns its error, and
// Sync rewrites the journal under w.mu.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// concurrentSyncs sets up two Syncs of one Writer called at once: S1's
// index file names {A}; S2, called while S1 wrote it, had two ways to go
// wrong: run beside S1 and write one naming {A,B}, then drop two records
// from pending when S1 had dropped one (a pack made durable meanwhile lost,
// or a panic). Syncs now take turns: S2 waits for S1, then writes {B}.
// Between S1's end and S2's, between runs (it may add packs).
func concurrentSyncs(t *testing.T, between func(w *Writer, p *Packer)) (w *Writer, st *holdStore, journal string, s2 error) {
	t.Helper()
	ctx := t.Context()
	journal = filepath.Join(t.TempDir(), "journal")
	st = newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10, Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	mustAdd(t, p, randBytes(21, 50<<10)) // A
	st.armIndex.Store(true)
	sync1 := make(chan error, 1)
	go func() { sync1 <- w.Sync(ctx) }()
	h1 := st.next(t, "S1's index file {A}")
	mustAdd(t, p, randBytes(22, 50<<10)) // B
	sync2 := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				sync2 <- fmt.Errorf("panic: %v", r)
			}
		}()
		sync2 <- w.Sync(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // S2 goes as far as it can while S1 writes
	h1.release <- nil
	if err := <-sync1; err != nil {
		t.Fatal(err)
	}
	h2 := st.next(t, "S2's index file")
	st.armIndex.Store(false)
	between(w, p)
	h2.release <- nil
	return w, st, journal, <-sync2
}

// TestAttackConcurrentSyncsDropPendingPack: Sync takes a snapshot of
// w.pending, writes the index file, then drops len(snapshot) records from
// the head of w.pending. Two Syncs at once (a commit and another caller,
// or two commits) overlap their snapshots, so the later drops records the
// earlier already dropped: a pack made durable in between (C) is dropped
// unindexed, and the journal is rewritten without it. The next Sync
// returns nil with chunk c (reported stored before it began) in no index
// file, and a crash loses C's record: c is uploaded again at best, or a
// manifest names it.
func TestAttackConcurrentSyncsDropPendingPack(t *testing.T) {
	ctx := t.Context()
	c := randBytes(23, 50<<10)
	w, st, journal, err := concurrentSyncs(t, func(w *Writer, p *Packer) {
		mustAdd(t, p, c)
		if err := p.Flush(ctx); err != nil { // C is durable: pending [B, C]
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !durableIndexed(t, st, chunk.Sum(c)) {
		t.Error("Sync returned nil, and chunk c, reported stored before it began (its pack durable), is in no index file")
	}
	// Crash: the next Writer recovers from the journal.
	idx := New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(ctx, st, idx, testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10, Journal: journal}); err != nil {
		t.Fatal(err)
	}
	if !durableIndexed(t, st, chunk.Sum(c)) {
		t.Error("after a crash and recovery, pack C (durable) is named by no index file: the journal lost its record")
	}
}

// TestAttackConcurrentSyncsPanic: the same overlap with no pack made
// durable in between: w.pending is [B] and S2 slices it from 2. A panic
// in a commit kills a continuous backup.
func TestAttackConcurrentSyncsPanic(t *testing.T) {
	_, _, _, err := concurrentSyncs(t, func(*Writer, *Packer) {})
	if err != nil {
		t.Fatalf("the second of two concurrent Syncs: %v", err)
	}
}

// TestAttackSyncMissesAddTreeUpload: AddTree (beside=false) uploads its
// tree pack with no Packer's lock held, after placing its nodes. An Add of
// a chunk equal to a node (a file whose bytes are a node, or a node passed
// through Add, as StoreManifest does) deduplicates against the claim; a
// Sync begun after it neither waits for the claim (placed) nor for the
// upload (no Packer holds it), so it returns nil while the only copy is
// still in flight. If that PUT fails, the deduplicated chunk is in no
// durable pack although a Sync after its Add returned nil.
func TestAttackSyncMissesAddTreeUpload(t *testing.T) {
	ctx := t.Context()
	st := newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	n := randBytes(31, 4<<10)
	st.armed.Store(true)
	treed := make(chan error, 1)
	go func() { treed <- w.AddTree(ctx, []chunk.ID{chunk.Sum(n)}, [][]byte{n}, false) }()
	h := st.next(t, "the tree pack")
	st.armed.Store(false)
	if ok, err := p.Add(ctx, chunk.Sum(n), n); ok || err != nil {
		t.Fatalf("Add of a chunk equal to a node in flight: %v, %v; want a dedup (false, nil)", ok, err)
	}
	synced := make(chan error, 1)
	go func() { synced <- w.Sync(ctx) }()
	select {
	case err := <-synced:
		h.release <- errors.New("injected: the tree pack's PUT fails")
		terr := <-treed
		if err == nil {
			t.Fatalf("Sync returned nil while the only pack of chunk n (deduplicated by an Add before the Sync) was uploading; "+
				"that PUT then failed (AddTree: %v): n in a durable indexed pack: %v", terr, durableIndexed(t, st, chunk.Sum(n)))
		}
	case <-time.After(2 * time.Second):
		h.release <- nil
		if err := <-synced; err != nil {
			t.Fatal(err)
		}
		if err := <-treed; err != nil {
			t.Fatal(err)
		}
	}
}

// TestAttackFlushIgnoresCanceledContext: a Sync whose context is canceled
// while its Flush waits (on the cond) for an upload off the lock, made
// with another context (a worker's), does not return until that upload
// ends: Flush never looks at its context while it waits. (Before f00f479
// Flush blocked the same way on the lock held by the upload; in continuous
// mode the workers' context is a child of the committer's, so a cancel
// reaches both. A liveness wart, not a safety bug.)
func TestAttackFlushIgnoresCanceledContext(t *testing.T) {
	ctx := t.Context()
	st := newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	mustAdd(t, p, randBytes(41, 100<<10))
	mustAdd(t, p, randBytes(42, 100<<10))
	st.armed.Store(true)
	added := goAdd(ctx, p, randBytes(43, 100<<10)) // uploads the full pack, off the lock
	h := st.next(t, "the full pack")
	st.armed.Store(false)
	sctx, cancel := context.WithCancel(ctx)
	synced := make(chan error, 1)
	go func() { synced <- w.Sync(sctx) }()
	time.Sleep(100 * time.Millisecond) // Sync's Flush waits on the cond
	cancel()
	select {
	case err := <-synced:
		h.release <- nil
		if err == nil {
			t.Error("a canceled Sync returned nil before the upload it waited for ended")
		}
	case <-time.After(3 * time.Second):
		h.release <- nil
		t.Errorf("Sync, its context canceled, still waits 3 s later for an upload of another context (it returned %v once that ended)", <-synced)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
}

// slowStore delays each pack PUT by up to max (pseudo-random; one in four
// by up to 20 max), and fails the failAt-th, so that off-lock uploads
// overlap Flushes and Syncs.
type slowStore struct {
	remote.Store
	mu     sync.Mutex
	r      *rand.Rand
	max    time.Duration
	failAt int64 // the pack PUT that fails, counting from 1; 0: none
	puts   atomic.Int64
}

func (s *slowStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if strings.HasPrefix(key, "packs/") {
		s.mu.Lock()
		d := time.Duration(s.r.Int64N(int64(s.max)))
		if s.r.IntN(4) == 0 {
			d *= 20 // now and then a slow one, which outlasts a Sync
		}
		s.mu.Unlock()
		fail := s.puts.Add(1) == s.failAt
		time.Sleep(d)
		if fail {
			return errors.New("injected PUT failure")
		}
	}
	return s.Store.Put(ctx, key, data, size)
}

// stressChunk returns distinct chunk data: seed and n in its first bytes,
// 2-12 KiB.
func stressChunk(seed, n uint64) []byte {
	r := rand.New(rand.NewPCG(seed, n))
	b := make([]byte, 2<<10+r.IntN(10<<10))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	binary.LittleEndian.PutUint64(b, seed)
	binary.LittleEndian.PutUint64(b[8:], n)
	return b
}

// durableChecker tells which chunks the index files of st name in a pack
// st holds; it loads the files written since its last call only.
type durableChecker struct {
	st    remote.Store
	idx   *Index
	packs map[chunk.ID]bool
}

func newDurableChecker(st remote.Store) *durableChecker {
	return &durableChecker{st: st, idx: New(), packs: map[chunk.ID]bool{}}
}

// missing returns the ids in no durable indexed pack.
func (d *durableChecker) missing(t *testing.T, ids []chunk.ID) (missing []chunk.ID) {
	t.Helper()
	ctx := context.Background()
	if _, err := d.idx.Load(ctx, d.st, ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		loc, ok := d.idx.lookup(id)
		if ok {
			there, done := d.packs[loc.Pack]
			if !done {
				_, err := d.st.Stat(ctx, pack.Key(loc.Pack))
				there = err == nil
				d.packs[loc.Pack] = there
			}
			ok = there
		}
		if !ok {
			missing = append(missing, id)
		}
	}
	return missing
}

// TestAttackSpreadContinuousSyncs: continuous backup on an encrypted store:
// workers (several, sharing one Spreading Packer, and another Packer) add
// without pause while the committer Syncs again and again, and a commit's
// tree nodes go beside (AddTree, beside=true). Each Sync must end (no
// deadlock: Flush ends while callers keep filling packs), and when it
// returns nil every chunk an Add reported (stored or deduplicated) before
// it began, and every node of an AddTree that returned before it began, is
// in a durable pack an index file names. A crash at the end loses no
// durable pack's record. Workers add flat out (Syncs then last long and
// must end however many packs fill meanwhile), or pause between Adds
// (Syncs are short, and a pack uploading off the lock when Flush lets go
// holds chunks reported before the Sync began).
func TestAttackSpreadContinuousSyncs(t *testing.T) {
	for _, pause := range []time.Duration{0, 500 * time.Microsecond} {
		for _, fail := range []bool{false, true} {
			seeds := uint64(3)
			if pause == 0 {
				seeds = 2 // long runs
			}
			for seed := range seeds {
				t.Run(fmt.Sprintf("pause%v/fail%v/%d", pause, fail, seed), func(t *testing.T) { spreadStress(t, seed, fail, pause) })
			}
		}
	}
}

// shmDir returns a temporary folder on tmpfs if there is one (the journal's
// fsyncs cost nothing there), else t.TempDir().
func shmDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "cassback-attack-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func spreadStress(t *testing.T, seed uint64, fail bool, pause time.Duration) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	journal := filepath.Join(shmDir(t), "journal")
	mem := remotetest.NewMemory()
	st := &slowStore{Store: mem, r: rand.New(rand.NewPCG(seed, 99)), max: 2 * time.Millisecond}
	if fail {
		st.failAt = int64(600 + 900*seed)
		if pause > 0 {
			st.failAt = int64(150 + 150*seed)
		}
	}
	opts := WriterOptions{Host: "h", PackSize: 48 << 10, Journal: journal, Spread: true}
	w, err := NewWriter(ctx, st, New(), testConfig(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	ps := w.NewPackers(4) // two shared Packers
	var (
		mu       sync.Mutex
		reported []chunk.ID
		stop     atomic.Bool
		failed   atomic.Bool
		wg       sync.WaitGroup
	)
	note := func(ids ...chunk.ID) {
		mu.Lock()
		reported = append(reported, ids...)
		mu.Unlock()
	}
	for i, p := range append(ps, ps...) { // two goroutines a worker: a file's segments
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := uint64(0); !stop.Load(); n++ {
				d := stressChunk(seed*1000+uint64(i), n)
				if n%7 == 3 { // a chunk another worker adds too
					d = stressChunk(seed*1000+77, n/7)
				}
				_, err := p.Add(ctx, chunk.Sum(d), d)
				if err != nil {
					failed.Store(true)
					return
				}
				note(chunk.Sum(d))
				if pause > 0 {
					time.Sleep(time.Duration(n%4) * pause)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // a commit's tree nodes, beside the chunks
		defer wg.Done()
		for n := uint64(0); !stop.Load(); n++ {
			a, b := stressChunk(seed*1000+500, n), stressChunk(seed*1000+501, n)
			ids := []chunk.ID{chunk.Sum(a), chunk.Sum(b)}
			if err := w.AddTree(ctx, ids, [][]byte{a, b}, true); err != nil {
				failed.Store(true)
				return
			}
			note(ids...)
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	check, checked := newDurableChecker(mem), 0
	for i := range 40 {
		mu.Lock()
		before := append([]chunk.ID(nil), reported[checked:]...)
		mu.Unlock()
		synced := make(chan error, 1)
		go func() { synced <- w.Sync(ctx) }()
		var err error
		select {
		case err = <-synced:
		case <-time.After(60 * time.Second):
			cancel()
			t.Fatalf("Sync %d has not returned after 60 s while workers keep adding (deadlock?)", i)
		}
		if err != nil {
			if !fail {
				t.Fatalf("Sync %d: %v", i, err)
			}
			if err2 := w.Sync(ctx); err2 == nil {
				t.Fatalf("Sync %d failed (%v), and the next returned nil: not sticky", i, err)
			}
			break
		}
		if missing := check.missing(t, before); len(missing) > 0 {
			t.Fatalf("Sync %d returned nil, and %d of %d chunks reported before it began (and after the last Sync began) are in no durable indexed pack (first %s)",
				i, len(missing), len(before), missing[0])
		}
		checked += len(before)
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d chunks reported, %d packs, %d index files", len(reported), w.Stats().Packs.Load(), w.Stats().IndexFiles.Load())
	// Crash: the Writer is dropped. The next one recovers every pack the
	// journal (or an index file) names; no durable pack's record is lost.
	idx := New()
	if _, err := idx.Load(ctx, mem, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(ctx, mem, idx, testConfig(t), opts); err != nil {
		t.Fatal(err)
	}
	var keys []string
	mem.List(ctx, "packs/", func(i remote.Info) error { keys = append(keys, i.Key); return nil })
	named := map[string]bool{}
	mem.List(ctx, "index/", func(i remote.Info) error {
		r, err := mem.Get(ctx, i.Key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		recs, err := DecodeFile(b)
		if err != nil {
			t.Fatalf("index file %s: %v", i.Key, err)
		}
		for _, rec := range recs {
			named[pack.Key(rec.ID)] = true
		}
		return nil
	})
	for _, k := range keys {
		if !named[k] {
			t.Errorf("after a crash and recovery the durable pack %s is named by no index file (its journal record is lost)", k)
		}
	}
}

// TestAttackFlushLeavesNoLockedUploads: once a Flush has returned (nil, or
// a Packer's error), its Packer uploads full packs off the lock again: a
// p.flushing left counted would make every later upload hold the Packer's
// lock for its PUT, stalling the worker sharing it (a performance bug, not
// a safety one).
func TestAttackFlushLeavesNoLockedUploads(t *testing.T) {
	ctx := t.Context()
	st := newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	// A Flush that waits for an upload off the lock, and one that does not.
	mustAdd(t, p, randBytes(51, 100<<10))
	mustAdd(t, p, randBytes(52, 100<<10))
	st.armed.Store(true)
	added := goAdd(ctx, p, randBytes(53, 100<<10))
	h := st.next(t, "the first full pack")
	st.armed.Store(false)
	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(ctx) }()
	time.Sleep(100 * time.Millisecond)
	h.release <- nil
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, p, randBytes(54, 100<<10))
	mustAdd(t, p, randBytes(55, 100<<10))
	st.armed.Store(true)
	added = goAdd(ctx, p, randBytes(56, 100<<10))
	h = st.next(t, "the next full pack")
	st.armed.Store(false)
	done := goAdd(ctx, p, randBytes(57, 10<<10))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Error("after a Flush, an Add waits for another caller's upload of a full pack: uploads hold the Packer's lock")
	}
	h.release <- nil
	if err := <-added; err != nil {
		t.Fatal(err)
	}
}
