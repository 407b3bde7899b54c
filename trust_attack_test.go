package cassback

// Attacks on trustPrevious (write.go: an unchanged one-shot backup relies
// on what its previous manifests reference unless the index refutes it)
// and on the lazy listing of other hosts' index files (index/lazy.go).
// Every test is named TestTrustAttack…; those whose names end in …Holds
// document an attack that the code withstood when it was written.

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// taPurge purges host (--purge-latest, everything) from a repo of its own
// with a lease long enough that no live writer here is stale to it.
func taPurge(t *testing.T, st remote.Store, host string) PurgeResult {
	t.Helper()
	p := laRepo(t, st, "", writerOpts)
	res, err := p.Purge(t.Context(), PurgeOptions{Host: host, Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "purger-" + host})
	if err != nil {
		t.Fatalf("purge of %s: %v", host, err)
	}
	return res
}

// ackedSetScenario builds a store where host h1's latest backup M1 names
// chunks whose only copy is in a pack P of another host (h2) that is in
// an open condemned set C:
//
//  1. h2 backs up the data: its packs hold every chunk;
//  2. h1's backup B1 deduplicates against h2's packs and is stopped
//     before its tree pack (its only pack); a purge of h2 (--purge-latest) removes h2's
//     backup, so nothing committed names the chunks, and condemns h2's
//     packs in C (B1, live and not acknowledging C, holds its sweep);
//  3. B1 wakes and commits M1, naming chunks stored only in C's packs.
//
// Then h1 backs up again (S, a one-shot backup of the unchanged data). S
// acknowledges C when it starts (design §4.2 W1) and excludes its packs.
// After S has read M1, mid-run, a purge of h1 --purge-latest removes M1
// and sweeps C: S acknowledged it, and no manifest the fresh mark reads
// names the chunks, so C's packs are deleted. S must not name them.
func ackedSetScenario(t *testing.T, cacheRoot string) error {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 211)

	h2 := laRepo(t, st, "", writerOpts)
	laBackup(t, h2, data, "h2", nil)

	reached, release := make(chan struct{}), make(chan struct{})
	hs := &hooked{Store: st, prefix: "packs/", before: func(string) {
		close(reached)
		<-release
	}}
	b1 := laRepo(t, hs, "", writerOpts)
	b1done := make(chan error, 1)
	var s1 BackupSummary
	go func() {
		var err error
		s1, err = b1.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h1"})
		b1done <- err
	}()
	select {
	case <-reached:
	case err := <-b1done:
		t.Fatalf("B1 ended before its tree pack: %v", err)
	}
	res := taPurge(t, st, "h2")
	if res.GC.Condemned == 0 || res.GC.Deleted != 0 {
		t.Fatalf("purge of h2 with B1 live: condemned %d, deleted %d packs; want some condemned, none deleted", res.GC.Condemned, res.GC.Deleted)
	}
	close(release)
	if err := <-b1done; err != nil {
		t.Fatalf("B1: %v", err)
	}
	if s1.BytesNew != 0 {
		t.Fatalf("B1 stored %d bytes of file chunks; the scenario needs it to deduplicate against h2's packs", s1.BytesNew)
	}
	sets, _, err := gc.ListCondemned(ctx, st, nil)
	if err != nil || len(sets) == 0 {
		t.Fatalf("condemned sets after B1: %d, %v; want C open", len(sets), err)
	}

	s := laRepo(t, st, cacheRoot, writerOpts)
	var purged PurgeResult
	sum, err := s.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h1", afterScan: func() {
		purged = taPurge(t, st, "h1")
	}})
	t.Logf("S: reused %d files, read %d bytes, %d new chunks; mid-run purge removed %v, deleted %d packs, waiting %d",
		sum.FilesReused, sum.BytesRead, sum.ChunksNew, purged.Manifests, purged.GC.Deleted, len(purged.GC.Waiting))
	if err != nil {
		return errors.Join(errors.New("S failed"), err)
	}
	if purged.GC.Deleted == 0 {
		t.Fatal("the mid-run purge deleted no pack: the scenario did not reach the sweep of C")
	}
	return laCheck(t, s, "h1", data, time.Now().Add(time.Minute))
}

// TestTrustAttackAckedSetOtherHostsPack: S trusts M1's chunks because its
// loaded index (h1's own files; h2's are never listed, since no lookup
// misses) does not name them — but their only copy is in a pack of a set
// S acknowledged, which a purge may sweep while S runs.
func TestTrustAttackAckedSetOtherHostsPack(t *testing.T) {
	if err := ackedSetScenario(t, ""); err != nil {
		t.Fatalf("a committed backup is not whole: %v", err)
	}
}

// TestTrustAttackAckedSetOtherHostsPackCached: the same with a node cache
// (the previous manifest found by its cached name, its nodes from the
// cache).
func TestTrustAttackAckedSetOtherHostsPackCached(t *testing.T) {
	if err := ackedSetScenario(t, filepath.Join(t.TempDir(), "cache")); err != nil {
		t.Fatalf("a committed backup is not whole: %v", err)
	}
}

// TestTrustAttackLostTreePackCachedNodes: a pack holding the nodes of the
// host's latest trees is lost outside any purge (a damaged bucket, an
// operator's delete). The node cache still holds the nodes, so the next
// backup reads its previous manifests whole from the store's headers and
// the cache's nodes, and its unchanged trees have the same nodes. Before
// trustPrevious a node was relied on only once its pack was seen stored
// (Writer.Stored: a Stat), so the lost nodes were stored again and the new
// backup was whole; trusted, they are named and stored nowhere. Not a
// breach of the collector's protocol (the loss came from outside it), but
// the new backup is committed unrestorable where it used to heal.
//
// Fixed by taking the node part of trustPrevious back: a previous
// manifest's nodes are relied on only once their pack is seen stored, as
// any node (one HEAD a tree pack a run).
func TestTrustAttackLostTreePackCachedNodes(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 223)
	r := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)
	s1 := laBackup(t, r, data, "h1", nil)

	lost := map[chunk.ID]bool{}
	for _, name := range s1.Manifests {
		p := readPrevious(ctx, st, name, ChunksOf(st))
		if p.err != nil {
			t.Fatal(p.err)
		}
		for _, n := range p.nodes {
			lost[packOf(t, r, n.ID)] = true
		}
	}
	files := map[chunk.ID]bool{}
	for _, name := range s1.Manifests {
		m, err := manifest.Get(ctx, st, name, ChunksOf(st))
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range m.Tables {
			for _, f := range tb.Files {
				for _, c := range f.Chunks {
					files[packOf(t, r, c.ID)] = true
				}
			}
		}
	}
	for p := range lost {
		if files[p] {
			t.Fatalf("pack %v holds nodes and file chunks; the scenario needs tree packs of their own", p)
		}
		if err := st.Delete(ctx, pack.Key(p)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("deleted %d tree packs", len(lost))

	time.Sleep(10 * time.Millisecond) // a later backup name
	s2 := laBackup(t, r, data, "h1", nil)
	if s2.FilesReused == 0 {
		t.Fatal("the second backup reused no file: the previous manifests were not read")
	}
	ms, err := Select(ctx, st, "h1", "", nil, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if !slices.Contains(s2.Manifests, m.Name) {
			t.Fatalf("latest backup %s is not the second backup's", m.Name)
		}
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatalf("restore of the backup made after the tree pack was lost: %v", err)
	}
	if d := diffTrees(data, dst); d != "" {
		t.Fatalf("restored tree differs: %s", d)
	}
}

// failList fails the listing of exactly "index/" (every host's index
// files: what a lazy index lists when a lookup first misses its own) the
// first n times, or always when n < 0.
type failList struct {
	remote.Store
	mu sync.Mutex
	n  int
}

func (f *failList) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if prefix == "index/" {
		f.mu.Lock()
		fail := f.n != 0
		if f.n > 0 {
			f.n--
		}
		f.mu.Unlock()
		if fail {
			return errors.New("injected: list index/ failed")
		}
	}
	return f.Store.List(ctx, prefix, fn)
}

func (f *failList) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	return f.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
}

// TestTrustAttackRestoreOtherHostsPacksHolds: host h1's backup names only
// chunks stored in host h2's packs. A restore of it (index/<h1>/ loaded
// whole, other hosts' files listed only when a lookup misses) must find
// them when h2's index file is damaged (found only at the late listing:
// no Load sees it, so the look-again path indexes h2's packs from their
// headers) and when listing the other hosts' files fails once; when that
// listing always fails it may fail, but never restore less and succeed.
func TestTrustAttackRestoreOtherHostsPacksHolds(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage bool
		fails  int
		mayErr bool
	}{
		{name: "damaged", damage: true},
		{name: "listFailsOnce", fails: 1},
		{name: "listFailsAlways", fails: -1, mayErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			st := localStore(t)
			data := smallNode(t, 227)
			laBackup(t, laRepo(t, st, "", writerOpts), data, "h2", nil)
			s := laBackup(t, laRepo(t, st, "", writerOpts), data, "h1", nil)
			if s.BytesNew != 0 {
				t.Fatalf("h1 stored %d bytes: the scenario needs its chunks in h2's packs", s.BytesNew)
			}
			if c.damage {
				for _, k := range keysOf(t, st, "index/h2/") {
					truncate(t, st, k)
				}
			}
			fl := &failList{Store: st, n: c.fails}
			r := laRepo(t, fl, "", writerOpts)
			ms, err := Select(ctx, st, "h1", "", nil, time.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "restored")
			_, err = r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
			switch {
			case c.mayErr && err != nil:
				t.Logf("restore: %v", err)
			case err != nil:
				t.Fatalf("restore: %v", err)
			default:
				if d := diffTrees(data, dst); d != "" {
					t.Fatalf("restored tree differs: %s", d)
				}
			}
		})
	}
}
