package index

// Attacks on f00f479: a Packer uploads a full pack off its lock (uploadFull)
// while its other callers go on adding, and Flush waits only for the
// uploads begun before it; with Spread two workers share a Packer.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/random"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// hold is one pack PUT held by a holdStore: send nil on release to let it
// go on, an error to fail it.
type hold struct {
	key     string
	release chan error
}

// holdStore holds each pack PUT begun while armed, one by one, so a test
// picks which upload ends, how and when.
type holdStore struct {
	remote.Store
	armed    atomic.Bool // hold pack PUTs
	armIndex atomic.Bool // hold index file PUTs
	entered  chan *hold
}

func newHoldStore() *holdStore {
	return &holdStore{Store: remotetest.NewMemory(), entered: make(chan *hold, 16)}
}

func (s *holdStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if s.armed.Load() && strings.HasPrefix(key, "packs/") || s.armIndex.Load() && strings.HasPrefix(key, "index/") {
		h := &hold{key: key, release: make(chan error, 1)}
		s.entered <- h
		select {
		case err := <-h.release:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Put(ctx, key, data, size)
}

// next returns the next held PUT, failing the test after 10 s.
func (s *holdStore) next(t *testing.T, what string) *hold {
	t.Helper()
	select {
	case h := <-s.entered:
		return h
	case <-time.After(10 * time.Second):
		t.Fatalf("no pack PUT began: %s", what)
		return nil
	}
}

// kSource makes every random byte k, so that a Spreading Packer puts the
// next chunk in open pack k&1 (pack nonces become constant: harmless).
type kSource struct{ k atomic.Uint32 }

func (s *kSource) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(s.k.Load())
	}
	return len(b), nil
}

// durableIndexed reports whether a fresh Index loaded from st's index files
// names id in a pack st holds: what a reader of a committed manifest gets.
func durableIndexed(t *testing.T, st remote.Store, id chunk.ID) bool {
	t.Helper()
	ctx := context.Background()
	idx := New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	loc, ok := idx.lookup(id)
	if !ok {
		return false
	}
	_, err := st.Stat(ctx, "packs/"+loc.Pack.String()[:2]+"/"+loc.Pack.String())
	return err == nil
}

func mustAdd(t *testing.T, p *Packer, d []byte) {
	t.Helper()
	if ok, err := p.Add(t.Context(), chunk.Sum(d), d); !ok || err != nil {
		t.Fatalf("Add: %v, %v; want true, nil", ok, err)
	}
}

func goAdd(ctx context.Context, p *Packer, d []byte) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := p.Add(ctx, chunk.Sum(d), d)
		done <- err
	}()
	return done
}

// TestAttackSyncSpreadPackBegunDuringFlushWait: continuous mode commits
// (Sync) while workers keep adding. With Spread, chunk x, accepted before
// the Sync (its file is in the manifest the commit writes), sits in open
// pack 1 of Packer p1. Sync's Flush(p1) begins while p1's open pack 0 is
// being uploaded off the lock (begun after Sync's waitPlaced, while
// Flush(p0) was sealing), so it waits, releasing p1's lock; meanwhile a
// worker fills open pack 1 and uploads it off the lock too. That upload
// began after Flush counted, so Flush does not wait for it: Sync writes
// its index file without x's pack and returns nil while x is still being
// uploaded. If that PUT then fails, x is in no durable pack, yet the
// commit made a manifest naming it durable.
func TestAttackSyncSpreadPackBegunDuringFlushWait(t *testing.T) {
	ctx := t.Context()
	src := &kSource{}
	t.Cleanup(random.SetSource(src))
	st := newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10, Spread: true})
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := w.NewPacker(), w.NewPacker()
	add := func(p *Packer, k uint32, d []byte) { src.k.Store(k); mustAdd(t, p, d) }
	add(p0, 0, randBytes(10, 100<<10))
	add(p1, 0, randBytes(11, 100<<10))
	add(p1, 0, randBytes(12, 100<<10)) // p1's open pack 0 is full
	x := randBytes(13, 100<<10)
	add(p1, 1, x)
	add(p1, 1, randBytes(14, 100<<10)) // p1's open pack 1 is full, x in it

	st.armed.Store(true)
	synced := make(chan error, 1)
	go func() { synced <- w.Sync(ctx) }()
	h0 := st.next(t, "Flush(p0)") // Sync is in Flush(p0), past waitPlaced
	src.k.Store(0)
	addedC := goAdd(ctx, p1, randBytes(15, 100<<10))
	h1 := st.next(t, "p1's pack 0, off the lock")
	h0.release <- nil
	time.Sleep(300 * time.Millisecond) // Flush(p1) counts h1 and waits for it
	src.k.Store(1)
	addedD := goAdd(ctx, p1, randBytes(16, 100<<10))
	h2 := st.next(t, "p1's pack 1 (x), off the lock")
	st.armed.Store(false)
	h1.release <- nil
	select {
	case err := <-synced:
		_, inMem := w.idx.lookup(chunk.Sum(x))
		h2.release <- errors.New("injected: the PUT of x's pack fails")
		<-addedC
		<-addedD
		t.Fatalf("Sync returned %v while the pack holding x (accepted before the Sync) was still uploading (x indexed: %v); "+
			"that PUT then failed: x in a durable indexed pack: %v", err, inMem, durableIndexed(t, st, chunk.Sum(x)))
	case <-time.After(2 * time.Second):
	}
	h2.release <- nil
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan error{addedC, addedD} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if !durableIndexed(t, st, chunk.Sum(x)) {
		t.Error("after Sync x is not in a durable indexed pack")
	}
}

// TestAttackFlushWaitsOutOfOrderUploads: two full packs of one Packer are
// uploading off the lock when Flush begins; the later ends first. Flush
// must still wait for the earlier (a Flush that woke once and went on
// would return with a pack its Sync must name still uploading).
func TestAttackFlushWaitsOutOfOrderUploads(t *testing.T) {
	ctx := t.Context()
	st := newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	a, b, d, e := randBytes(1, 100<<10), randBytes(2, 100<<10), randBytes(4, 100<<10), randBytes(5, 100<<10)
	mustAdd(t, p, a)
	mustAdd(t, p, b)
	st.armed.Store(true)
	addedC := goAdd(ctx, p, randBytes(3, 100<<10))
	h1 := st.next(t, "pack {a,b}")
	mustAdd(t, p, d) // off the lock: a new pack
	mustAdd(t, p, e)
	addedF := goAdd(ctx, p, randBytes(6, 100<<10))
	h2 := st.next(t, "pack {d,e}")
	st.armed.Store(false)
	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(ctx) }()
	time.Sleep(200 * time.Millisecond)
	h2.release <- nil // the later upload ends first
	select {
	case err := <-flushed:
		_, ok := w.idx.lookup(chunk.Sum(a))
		h1.release <- nil
		t.Fatalf("Flush returned (%v) while the earlier pack {a,b} was still uploading (a indexed: %v)", err, ok)
	case <-time.After(500 * time.Millisecond):
	}
	h1.release <- nil
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	for _, x := range [][]byte{a, b, d, e} {
		if _, ok := w.idx.lookup(chunk.Sum(x)); !ok {
			t.Errorf("after Flush chunk %s is not indexed", chunk.Sum(x))
		}
	}
	for _, ch := range []chan error{addedC, addedF} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}

// offLockFailure sets up a Packer whose full pack {a,b} is uploading off
// the lock (an Add of c holds it) while another caller adds d to a new
// pack and a third deduplicates a against the uploading pack; then fails
// that upload with fail(h, cancel).
func offLockFailure(t *testing.T, fail func(h *hold, cancel context.CancelFunc)) (w *Writer, p *Packer, st *holdStore, stored [][]byte, addErr error) {
	t.Helper()
	ctx := t.Context()
	st = newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p = w.NewPacker()
	a, b, d := randBytes(1, 100<<10), randBytes(2, 100<<10), randBytes(4, 100<<10)
	mustAdd(t, p, a)
	mustAdd(t, p, b)
	st.armed.Store(true)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addedC := goAdd(cctx, p, randBytes(3, 100<<10))
	h := st.next(t, "pack {a,b}")
	st.armed.Store(false)
	mustAdd(t, p, d) // another caller goes on meanwhile
	if ok, err := p.Add(ctx, chunk.Sum(a), a); ok || err != nil {
		t.Fatalf("Add of a while its pack uploads: %v, %v; want a dedup (false, nil)", ok, err)
	}
	fail(h, cancel)
	return w, p, st, [][]byte{a, b, d}, <-addedC
}

// checkFailedWriter checks what a failed off-lock upload leaves: the Add
// that uploaded reports it, the Packer's Flush and the Writer's Sync and
// Adds refuse, and no chunk reported stored (a, b, d) is left looking
// durable by a Sync that succeeded.
func checkFailedWriter(t *testing.T, w *Writer, p *Packer, st *holdStore, stored [][]byte, addErr error) {
	t.Helper()
	ctx := t.Context()
	if addErr == nil {
		t.Error("the Add whose upload failed returned no error")
	}
	if err := p.Flush(ctx); err == nil {
		t.Error("Flush of the Packer whose upload failed returned nil: its failure is not sticky")
	}
	if ok, err := p.Add(ctx, chunk.Sum(randBytes(7, 10)), randBytes(7, 10)); err == nil {
		t.Errorf("Add after the failure: %v, nil; want an error", ok)
	}
	if err := w.Sync(ctx); err == nil {
		for _, x := range stored {
			if !durableIndexed(t, st, chunk.Sum(x)) {
				t.Errorf("Sync returned nil after a failed upload, and chunk %s, reported stored, is in no durable indexed pack", chunk.Sum(x))
			}
		}
		t.Error("Sync returned nil after a failed upload: the failure is not sticky")
	}
}

// TestAttackOffLockUploadFails: the PUT of a pack uploading off the lock
// fails while other callers add to the same Packer and deduplicate against
// it.
func TestAttackOffLockUploadFails(t *testing.T) {
	w, p, st, stored, addErr := offLockFailure(t, func(h *hold, _ context.CancelFunc) {
		h.release <- errors.New("injected PUT failure")
	})
	checkFailedWriter(t, w, p, st, stored, addErr)
}

// TestAttackOffLockUploadCanceled: the context of the Add that uploads a
// full pack off the lock is canceled mid-PUT (one worker of two sharing a
// Packer stops) while the other goes on.
func TestAttackOffLockUploadCanceled(t *testing.T) {
	w, p, st, stored, addErr := offLockFailure(t, func(_ *hold, cancel context.CancelFunc) { cancel() })
	checkFailedWriter(t, w, p, st, stored, addErr)
}

// TestAttackAddTreeBesideDuringOffLockUpload: a commit's tree nodes go
// beside the chunks of the Packer's open pack while its previous pack is
// uploading off the lock; they must not go into the pack in flight, and
// after Sync every chunk and node is durable and indexed.
func TestAttackAddTreeBesideDuringOffLockUpload(t *testing.T) {
	ctx := t.Context()
	st := newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	a, b, c, d := randBytes(1, 100<<10), randBytes(2, 100<<10), randBytes(3, 100<<10), randBytes(4, 30<<10)
	mustAdd(t, p, a)
	mustAdd(t, p, b)
	st.armed.Store(true)
	addedC := goAdd(ctx, p, c)
	h := st.next(t, "pack {a,b}")
	st.armed.Store(false)
	mustAdd(t, p, d)
	n1, n2 := randBytes(8, 2<<10), randBytes(9, 3<<10)
	ids := []chunk.ID{chunk.Sum(n1), chunk.Sum(n2)}
	if err := w.AddTree(ctx, ids, [][]byte{n1, n2}, true); err != nil {
		t.Fatal(err)
	}
	h.release <- nil
	if err := <-addedC; err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range [][]byte{a, b, c, d, n1, n2} {
		if !durableIndexed(t, st, chunk.Sum(x)) {
			t.Errorf("after Sync chunk %s is not in a durable indexed pack", chunk.Sum(x))
		}
	}
}

// TestAttackSpreadFlushAfterOffLockFailure: with Spread, while a full pack
// uploads off the lock, another caller opens a new pack in its place; the
// upload fails. Before f00f479 the failed slot was left empty, so Flush
// returned the Packer's error; now Flush uploads both open packs of the
// failed Packer and returns nil (Sync still refuses, by the Writer's error).
func TestAttackSpreadFlushAfterOffLockFailure(t *testing.T) {
	ctx := t.Context()
	src := &kSource{}
	t.Cleanup(random.SetSource(src))
	st := newHoldStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10, Spread: true})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	add := func(k uint32, d []byte) { src.k.Store(k); mustAdd(t, p, d) }
	add(0, randBytes(1, 100<<10))
	add(0, randBytes(2, 100<<10))
	add(1, randBytes(3, 100<<10))
	add(1, randBytes(4, 100<<10))
	st.armed.Store(true)
	src.k.Store(0)
	added := goAdd(ctx, p, randBytes(5, 100<<10))
	h := st.next(t, "pack 0")
	st.armed.Store(false)
	add(0, randBytes(6, 100<<10)) // a new pack 0, beside the full pack 1
	h.release <- errors.New("injected PUT failure")
	if err := <-added; err == nil {
		t.Fatal("the Add whose upload failed returned no error")
	}
	before := w.Stats().Packs.Load()
	err = p.Flush(ctx)
	if after := w.Stats().Packs.Load(); err == nil || after != before {
		t.Errorf("Flush of a Packer whose upload failed: %v, and it uploaded %d packs; want its error and none", err, after-before)
	}
	if err := w.Sync(ctx); err == nil {
		t.Error("Sync returned nil after a failed upload")
	}
}

// TestAttackJournalKeepsPackUploadedDuringSync: Sync rewrites the journal
// with the packs made durable during its index file write (rest), while
// workers' uploads (now off the Packer's lock, in continuous mode) append
// to it. A pack made durable while Sync rewrites must stay in the journal:
// after a crash the next Writer recovers and indexes it. rewriteJournal
// sets w.journal to the temporary file and back without w.mu, so an
// append racing it lands in the old file the rename then replaces.
// Probabilistic: with -race it fails at once (a data race on w.journal);
// without, about one run in 200 loses the pack (GOMAXPROCS=1).
func TestAttackJournalKeepsPackUploadedDuringSync(t *testing.T) {
	for i := range 400 {
		if !t.Run(fmt.Sprint(i), func(t *testing.T) { journalRace(t, uint64(100+10*i), i%2 == 0) }) {
			break
		}
	}
}

func journalRace(t *testing.T, seed uint64, indexFirst bool) {
	ctx := t.Context()
	journal := filepath.Join(t.TempDir(), "journal")
	st := newHoldStore()
	cfg := testConfig(t)
	w, err := NewWriter(ctx, st, New(), cfg, WriterOptions{Host: "h", PackSize: 256 << 10, Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := w.NewPacker(), w.NewPacker()
	chunkN := func(n uint64) []byte { return randBytes(seed+n, 100<<10) }
	mustAdd(t, p0, chunkN(0))
	st.armIndex.Store(true)
	synced := make(chan error, 1)
	go func() { synced <- w.Sync(ctx) }()
	hi := st.next(t, "the Sync's index file")
	st.armIndex.Store(false)
	// A pack made durable during the index file write: Sync keeps it in
	// the journal it rewrites (rest is not empty).
	mustAdd(t, p1, chunkN(1))
	mustAdd(t, p1, chunkN(2))
	mustAdd(t, p1, chunkN(3)) // uploads {1,2}, off the lock
	mustAdd(t, p1, chunkN(4))
	st.armed.Store(true)
	added := goAdd(ctx, p1, chunkN(5)) // uploads {3,4}
	hv := st.next(t, "pack {3,4}")
	st.armed.Store(false)
	if indexFirst {
		hi.release <- nil
		time.Sleep(time.Duration(seed%13) * 15 * time.Microsecond)
		hv.release <- nil
	} else {
		hv.release <- nil
		time.Sleep(time.Duration(seed%13) * 15 * time.Microsecond)
		hi.release <- nil
	}
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	// Crash: the Writer is dropped unsynced. The next one recovers.
	idx := New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(ctx, st, idx, cfg, WriterOptions{Host: "h", PackSize: 256 << 10, Journal: journal}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{1, 2, 3, 4} {
		if !durableIndexed(t, st, chunk.Sum(chunkN(n))) {
			t.Errorf("chunk %d: its pack was durable before the crash, and no index file names it after recovery (journal lost it)", n)
		}
	}
}
