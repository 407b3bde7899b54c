package cassback

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/manifest"
)

// orphanSweepSetup builds the state of long-mode seed 1092207: a committed
// backup (host b) whose chunks are in pack P1, condemned while its writer
// ran, and in an orphan pack P2 (a writer killed before its index PUT). The
// next sweep keeps P2 as the chunks' copy and deletes P1.
func orphanSweepSetup(t *testing.T) (*Repo, *hookStore, string) {
	ctx := t.Context()
	r, hs := hookRepo(t)
	data := bytes.Repeat([]byte("orphan copy of a streamed sstable "), 5000)
	n0, err := backupOne(t, r, "a", data)
	if err != nil || !committed(t, r.Store, n0) {
		t.Fatalf("B0: %v", err)
	}
	// Wb starts and deduplicates against P1 before the purge condemns it.
	b, err := r.beginBackup(ctx, BackupOptions{Host: "b", Threads: 1}, []string{"ks"}, time.Now(), nil)
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
	// The orphan P2: the same chunks stored again, no index file.
	m0, err := manifest.Get(ctx, r.Store, n0, ChunksOf(r.Store))
	if err != nil {
		t.Fatal(err)
	}
	var ids []chunk.ID
	for ref := range m0.Refs() {
		ids = append(ids, ref.ID)
	}
	idx := index.New()
	if _, err := idx.Load(ctx, r.Store, ""); err != nil {
		t.Fatal(err)
	}
	got := map[chunk.ID][]byte{}
	var mu sync.Mutex
	if err := index.Fetch(ctx, r.Store, idx, ids, index.FetchOptions{}, func(id chunk.ID, d []byte, err error) error {
		mu.Lock()
		got[id] = bytes.Clone(d)
		mu.Unlock()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// P1 is condemned (B0 removed); grace keeps the set open.
	r.GC.Grace = time.Hour
	if res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p1"}); err != nil || res.GC.Condemned == 0 {
		t.Fatalf("P1: %v %+v", err, res.GC)
	}
	r.GC.Grace = -1
	w0, err := index.NewWriter(ctx, r.Store, index.New(), r.Config, index.WriterOptions{Host: "z"})
	if err != nil {
		t.Fatal(err)
	}
	op := w0.NewPacker()
	for _, id := range ids {
		if _, err := op.Add(ctx, id, got[id]); err != nil {
			t.Fatal(err)
		}
	}
	if err := op.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m := b.newManifest("ks", time.Now(), map[tableKey][]manifest.File{{"t", tbl}: {rec}})
	names, err := b.commit(ctx, []*manifest.Manifest{m}, nil)
	if len(names) != 1 || !committed(t, r.Store, names[0]) {
		t.Fatalf("Wb commit: %v %v", names, err)
	}
	return r, hs, names[0]
}

func whole(t *testing.T, r *Repo, name, when string) {
	t.Helper()
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	rep, err := r.Validate(t.Context(), ValidateOptions{Name: name, Checksum: true})
	if err != nil || !rep.OK() {
		t.Fatalf("%s: INVARIANT BROKEN: %s does not validate: err=%v problems=%+v", when, name, err, rep.Problems)
	}
}

// A sweep that keeps an orphan as a chunk's copy is killed (its context
// cancelled) right after the repair index PUT, before its first pack
// delete, or before it deletes the first index file it rewrites; a
// second purge finishes the sweep, a third runs over it. The committed
// backup stays whole and validates at every step.
func TestAttackOrphanIndexCrashInSweep(t *testing.T) {
	for _, prefix := range []string{"packs/", "index/a/"} {
		t.Run(prefix, func(t *testing.T) {
			r, hs, name := orphanSweepSetup(t)
			whole(t, r, name, "before the sweep")
			ctx, cancel := context.WithCancel(t.Context())
			hs.mu.Lock()
			hs.prefix = prefix
			hs.hook = cancel
			hs.mu.Unlock()
			// Orphans are seen by purges that list every pack.
			_, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p2", ScanPacks: true})
			cancel()
			t.Logf("killed sweep: %v", err)
			if countKeys(t, r.Store, "index/repair/") == 0 {
				t.Fatalf("the sweep wrote no repair index: the orphan was not kept, the attack misses")
			}
			whole(t, r, name, "after the killed sweep")
			for i := range 2 {
				res, err := r.Purge(t.Context(), PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p3", ScanPacks: true})
				if err != nil {
					t.Fatalf("purge %d: %v", i, err)
				}
				t.Logf("purge %d: %+v", i, res.GC)
				whole(t, r, name, "after a later purge")
			}
			if n := setKeys(t, r.Store); n != 0 {
				t.Fatalf("%d condemned keys left", n)
			}
			if n := countKeys(t, r.Store, "index/repair/"); n != 1 {
				t.Fatalf("%d repair index files, want 1", n)
			}
		})
	}
}
