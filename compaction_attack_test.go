package cassback

// Attacks on a writer's compaction of its host's index files
// (index/compact.go, Writer.Compact): the merged file is written from the
// files the writer holds (its cache first), and the old ones deleted. Each
// test ends by checking what a purge, a reader or a later backup relies
// on: every committed backup readable (committedWhole), no index file
// naming a pack the store does not hold.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
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

func caStart(t *testing.T, r *Repo, data string) *caRun {
	t.Helper()
	opts := ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "a", Threads: 1}}.withDefaults()
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
func purgeLatest(t *testing.T, r *Repo) PurgeResult {
	t.Helper()
	res, err := r.Purge(t.Context(), PurgeOptions{Host: "a", Before: time.Now().Add(time.Minute), PurgeLatest: true, Holder: "p"})
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
// carries the file over: recover asks whether the file's chunks are still
// stored outside the condemned packs (Index.Has), the stale entry says
// yes, the file is not stored again, the session acknowledges, the sweep
// deletes the only copy, and the next manifest names a chunk that exists
// nowhere.
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
