package index

// Attacks on Writer.Compact (compact.go): a merged file must name exactly
// what the files it replaces named and the store still holds — never a
// pack a purge swept meanwhile — and no chunk may end up in no index file.

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// caChunks is what a test committed: chunk -> bytes.
type caChunks map[chunk.ID][]byte

// caCommit stores the chunks of seeds, each group through a Packer of its
// own (a pack per group), and syncs: one index file naming those packs.
// It returns the file's key and the packs, in group order.
func caCommit(t *testing.T, w *Writer, all caChunks, groups ...[]uint64) (string, []chunk.ID) {
	t.Helper()
	ctx := t.Context()
	var ids [][]chunk.ID
	for _, g := range groups {
		p := w.NewPacker()
		var gi []chunk.ID
		for _, s := range g {
			d := randBytes(s, 200+int(s))
			id := chunk.Sum(d)
			if _, err := p.Add(ctx, id, d); err != nil {
				t.Fatal(err)
			}
			all[id] = d
			gi = append(gi, id)
		}
		ids = append(ids, gi)
	}
	before := w.idx.keysOf(w.host)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var key string
	for _, k := range w.idx.keysOf(w.host) {
		if !slices.Contains(before, k) {
			key = k
		}
	}
	var packs []chunk.ID
	for _, gi := range ids {
		l, ok := w.idx.Lookup(gi[0])
		if !ok {
			t.Fatalf("chunk %s not indexed after Sync", gi[0])
		}
		packs = append(packs, l.Pack)
	}
	return key, packs
}

// keysOf returns the index files of host this index counts (Compact's).
func (x *Index) keysOf(host string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var keys []string
	for k := range x.entries {
		if strings.HasPrefix(k, "index/"+host+"/") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// caPhantoms returns the packs index files name that the store does not
// hold (pack -> a file naming it).
func caPhantoms(t *testing.T, st remote.Store) map[chunk.ID]string {
	t.Helper()
	stored := map[chunk.ID]bool{}
	for _, k := range keysUnder(t, st, "packs/") {
		id, err := chunk.ParseID(k[strings.LastIndexByte(k, '/')+1:])
		if err == nil {
			stored[id] = true
		}
	}
	out := map[chunk.ID]string{}
	for _, k := range keysUnder(t, st, "index/") {
		recs, err := ReadFile(t.Context(), st, k)
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		for _, r := range recs {
			if !stored[r.ID] {
				out[r.ID] = k
			}
		}
	}
	return out
}

// caAllIndexed checks that a reader with an empty cache finds every chunk
// in all (but those in skip's packs) through the index files and reads it
// back.
func caAllIndexed(t *testing.T, st remote.Store, all caChunks) {
	t.Helper()
	x := New()
	ls, err := x.Load(t.Context(), st, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Damaged) > 0 {
		t.Fatalf("damaged index files: %v", ls.Damaged)
	}
	for id, d := range all {
		loc, ok := x.Lookup(id)
		if !ok {
			t.Fatalf("BROKEN: chunk %s is in no index file", id)
		}
		got, err := readChunkAt(t.Context(), st, loc)
		if err != nil || !bytes.Equal(got, d) {
			t.Fatalf("BROKEN: chunk %s reads back wrong from pack %s (%v)", id, loc.Pack, err)
		}
	}
}

// sweep does what a purge's sweep does to a doomed pack: it deletes the
// pack, then replaces every index file naming it by one without it (new
// file first), straight on the store.
func sweep(t *testing.T, st remote.Store, doomed chunk.ID) {
	t.Helper()
	ctx := t.Context()
	if err := st.Delete(ctx, pack.Key(doomed)); err != nil {
		t.Fatal(err)
	}
	for _, k := range keysUnder(t, st, "index/") {
		recs, err := ReadFile(ctx, st, k)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(recs, func(r PackRecord) bool { return r.ID == doomed }) {
			continue
		}
		keep := slices.DeleteFunc(recs, func(r PackRecord) bool { return r.ID == doomed })
		if len(keep) > 0 {
			b, sum := EncodeFile(keep)
			host := strings.Split(k, "/")[1]
			if err := st.Put(ctx, Key(host, sum), bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
}

// A purge swept a pack and the index file naming it while the writer
// still holds that file in its cache and counts it among its small files
// (a continuous backup's writer lives for weeks). Compact must not merge
// the swept file's records back: they name a pack that is gone, and no
// purge is left to drop them (the sweep has closed its set).
func TestCompactAttackSweptFileStillCached(t *testing.T) {
	st := remotetest.NewMemory()
	w, err := NewWriter(t.Context(), st, New(), testConfig(t), WriterOptions{Host: "h", CompactAt: 2, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	all := caChunks{}
	f1, p1 := caCommit(t, w, all, []uint64{1}) // the smallest file: always merged
	caCommit(t, w, all, []uint64{2, 3})
	sweep(t, st, p1[0])
	delete(all, firstChunk(1))
	if _, err := st.Stat(t.Context(), f1); err == nil {
		t.Fatal("the sweep left the file naming only the swept pack")
	}
	caCommit(t, w, all, []uint64{4, 5})
	cs, err := w.Compact(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction: %+v", cs)
	if ph := caPhantoms(t, st); len(ph) > 0 {
		t.Errorf("BROKEN: compaction merged a swept file from its cache; index files name packs that are gone: %v", ph)
	}
	caAllIndexed(t, st, all)
	// The next compaction goes on without the swept file.
	caCommit(t, w, all, []uint64{6, 7})
	if cs, err = w.Compact(t.Context()); err != nil || cs.Merged == 0 {
		t.Errorf("the next compaction: %+v, %v", cs, err)
	}
	if ph := caPhantoms(t, st); len(ph) > 0 {
		t.Errorf("BROKEN: index files name packs that are gone: %v", ph)
	}
	caAllIndexed(t, st, all)
}

func firstChunk(seed uint64) chunk.ID { return chunk.Sum(randBytes(seed, 200+int(seed))) }

// A purge sweeps between Compact's reads and its write of the merged
// file: the writer acknowledged the condemned set (so it excludes the
// doomed pack, as W2 has it), the sweep's fresh mark did not see the
// merged file (not written yet), deleted the pack and rewrote the file
// naming it. The merged file, written after, must not name the pack.
func TestCompactAttackSweepBetweenReadAndWrite(t *testing.T) {
	mem := remotetest.NewMemory()
	st := remotetest.NewFaulty(mem)
	w, err := NewWriter(t.Context(), st, New(), testConfig(t), WriterOptions{Host: "h", CompactAt: 2, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	all := caChunks{}
	_, packs := caCommit(t, w, all, []uint64{1}, []uint64{2}) // F1: P (doomed) and Q (live)
	caCommit(t, w, all, []uint64{3})                          // the smallest
	caCommit(t, w, all, []uint64{4, 5, 6})                    // the largest: kept
	doomed := packs[0]
	delete(all, firstChunk(1))
	// The writer learned of the set condemning P (a heartbeat) and
	// acknowledged it; the purge's sweep runs when Compact writes.
	w.idx.Exclude([]chunk.ID{doomed})
	var once sync.Once
	st.SetHook(func(op remotetest.Op, key string) error {
		if op == remotetest.OpPut && strings.HasPrefix(key, "index/h/") {
			once.Do(func() { sweep(t, mem, doomed) })
		}
		return nil
	})
	cs, err := w.Compact(t.Context())
	st.SetHook(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compaction: %+v", cs)
	if ph := caPhantoms(t, mem); len(ph) > 0 {
		t.Errorf("BROKEN: the merged file names a pack the sweep deleted meanwhile: %v", ph)
	}
	caAllIndexed(t, mem, all)
}

// flipByte damages an index file in the store (a bit flipped at rest).
func flipByte(t *testing.T, st *remotetest.Memory, key string) {
	t.Helper()
	rc, err := st.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(rc)
	rc.Close()
	d := b.Bytes()
	d[len(d)/2] ^= 0x10
	if err := st.Put(t.Context(), key, bytes.NewReader(d), int64(len(d))); err != nil {
		t.Fatal(err)
	}
}

// One of the writer's own small files is damaged in the store and its
// cached copy is gone (the cache is best effort). Compact must leave it
// (repair-index deals with it) and go on compacting the rest: it stopped
// at the damaged file every time, so the host's files grew without bound
// for as long as the writer ran.
func TestCompactAttackDamagedFileStopsCompactionForever(t *testing.T) {
	st := remotetest.NewMemory()
	cache := t.TempDir()
	w, err := NewWriter(t.Context(), st, New(), testConfig(t), WriterOptions{Host: "h", CompactAt: 3, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	all := caChunks{}
	bad, _ := caCommit(t, w, all, []uint64{1}) // the smallest: always among the merged
	flipByte(t, st, bad)
	removeCache(cache, bad)
	for i := range 12 {
		caCommit(t, w, all, []uint64{uint64(10 + 2*i), uint64(11 + 2*i)})
		if _, err := w.Compact(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	tiers := map[int]int{}
	n := 0
	if err := st.List(t.Context(), "index/h/", func(i remote.Info) error {
		if i.Key != bad {
			tiers[compactFile{n: entriesIn(i.Size)}.tier()]++
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for tier, k := range tiers {
		if n > 3 && k >= 3 {
			t.Errorf("BROKEN: after 12 commits the host has %d good index files, %d of them in tier %d (CompactAt 3): a damaged file stops every compaction", n, k, tier)
		}
	}
	if _, err := st.Stat(t.Context(), bad); err != nil {
		t.Errorf("the damaged file was deleted (%v): repair-index must see it", err)
	}
}

// A writer killed between any two requests of a compaction (kill -9)
// leaves a store where every chunk is still indexed, and the next
// process (a new Writer loading the store) compacts to the bound.
func TestCompactAttackCrashEverywhereHolds(t *testing.T) {
	for n := 0; ; n++ {
		mem := remotetest.NewMemory()
		st := remotetest.NewFaulty(mem)
		cache := t.TempDir()
		w, err := NewWriter(t.Context(), st, New(), testConfig(t), WriterOptions{Host: "h", CompactAt: 2, CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		all := caChunks{}
		for i := range 5 {
			caCommit(t, w, all, []uint64{uint64(2 * i), uint64(2*i + 1)}, []uint64{uint64(100 + i)})
		}
		calls := st.Calls(remotetest.OpAny)
		st.FailAfter(remotetest.OpAny, n, nil)
		_, cerr := w.Compact(t.Context())
		crashed := st.Calls(remotetest.OpAny)-calls > n
		st.Reset()
		caAllIndexed(t, mem, all)
		if ph := caPhantoms(t, mem); len(ph) > 0 {
			t.Fatalf("stopped after %d requests: index files name packs that are gone: %v", n, ph)
		}
		// The next process of the host.
		x := New()
		if _, err := x.Load(t.Context(), mem, cache); err != nil {
			t.Fatal(err)
		}
		w2, err := NewWriter(t.Context(), mem, x, testConfig(t), WriterOptions{Host: "h", CompactAt: 2, CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w2.Compact(t.Context()); err != nil {
			t.Fatalf("stopped after %d requests: the next compaction: %v", n, err)
		}
		caAllIndexed(t, mem, all)
		if k := keysUnder(t, mem, "index/h/"); len(k) > 2+1 {
			t.Fatalf("stopped after %d requests: the next process left %d index files", n, len(k))
		}
		if !crashed {
			if cerr != nil {
				t.Fatal(cerr)
			}
			t.Logf("a compaction makes %d requests; stopped after each, the store held", n)
			return
		}
		if n > 200 {
			t.Fatal("compaction never finished")
		}
	}
}

// Two processes of one host (two Writers, each with its own cache and
// view) compact at once, one stopped inside its compaction (before its
// write, or between its write and its deletes) while the other compacts
// whole. Every chunk stays indexed, and no index file names a pack that
// is gone.
func TestCompactAttackTwoWritersHolds(t *testing.T) {
	for _, stop := range []remotetest.Op{remotetest.OpList, remotetest.OpPut, remotetest.OpDelete} {
		t.Run(stop.String(), func(t *testing.T) {
			mem := remotetest.NewMemory()
			sa, sb := remotetest.NewFaulty(mem), remotetest.NewFaulty(mem)
			wa, err := NewWriter(t.Context(), sa, New(), testConfig(t), WriterOptions{Host: "h", CompactAt: 2, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			all := caChunks{}
			for i := range 3 {
				caCommit(t, wa, all, []uint64{uint64(i)})
			}
			xb := New()
			if _, err := xb.Load(t.Context(), sb, ""); err != nil {
				t.Fatal(err)
			}
			wb, err := NewWriter(t.Context(), sb, xb, testConfig(t), WriterOptions{Host: "h", CompactAt: 2, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			caCommit(t, wb, all, []uint64{10, 11})
			caCommit(t, wb, all, []uint64{12, 13, 14})
			caCommit(t, wa, all, []uint64{20, 21, 22, 23})

			reached, resume := make(chan struct{}), make(chan struct{})
			var once sync.Once
			sa.SetHook(func(op remotetest.Op, key string) error {
				if op == stop && (strings.HasPrefix(key, "index/h/") || key == "index/h") {
					once.Do(func() { close(reached); <-resume })
				}
				return nil
			})
			done := make(chan error, 1)
			go func() { _, err := wa.Compact(t.Context()); done <- err }()
			select {
			case <-reached:
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				t.Skipf("writer a's compaction makes no %s", stop)
			}
			if _, err := wb.Compact(t.Context()); err != nil {
				t.Fatal(err)
			}
			close(resume)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			caAllIndexed(t, mem, all)
			// Both go on committing and compacting.
			for i := range 4 {
				caCommit(t, wa, all, []uint64{uint64(30 + i)})
				caCommit(t, wb, all, []uint64{uint64(40 + i)})
				if _, err := wa.Compact(t.Context()); err != nil {
					t.Fatal(err)
				}
				if _, err := wb.Compact(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			caAllIndexed(t, mem, all)
			if ph := caPhantoms(t, mem); len(ph) > 0 {
				t.Fatalf("index files name packs that are gone: %v", ph)
			}
		})
	}
}

// The merged file can be one of the files it merges (every other one
// names a subset of its packs): that file must stay, and the others go.
// F1 (1 entry) and F2 (2) are of tier 0, F3 (4) of tier 1: with CompactAt
// 2 the tier of F1 and F2 is merged, into F2 again.
func TestCompactAttackMergedKeyIsAnOldFileHolds(t *testing.T) {
	st := remotetest.NewMemory()
	cfg := testConfig(t)
	// Build the packs with a scratch writer of another host, then write
	// host h's index files by hand: F1 names P; F2 names P and Q; F3, the
	// largest (4 entries), names R.
	scratch, err := NewWriter(t.Context(), st, New(), cfg, WriterOptions{Host: "scratch"})
	if err != nil {
		t.Fatal(err)
	}
	all := caChunks{}
	var f2 string
	_, packs := caCommit(t, scratch, all, []uint64{1}, []uint64{2}, []uint64{3, 4, 5, 6})
	for _, k := range keysUnder(t, st, "index/scratch/") {
		recs, _ := ReadFile(t.Context(), st, k)
		byID := map[chunk.ID]PackRecord{}
		for _, r := range recs {
			byID[r.ID] = r
		}
		put := func(ps ...chunk.ID) string {
			var rs []PackRecord
			for _, p := range ps {
				rs = append(rs, byID[p])
			}
			b, sum := EncodeFile(rs)
			key := Key("h", sum)
			if err := st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			return key
		}
		put(packs[0])
		f2 = put(packs[0], packs[1])
		put(packs[2])
		if err := st.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	x := New()
	if _, err := x.Load(t.Context(), st, ""); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(t.Context(), st, x, cfg, WriterOptions{Host: "h", CompactAt: 2})
	if err != nil {
		t.Fatal(err)
	}
	before := keysUnder(t, st, "index/h/")
	cs, err := w.Compact(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	after := keysUnder(t, st, "index/h/")
	t.Logf("compaction %+v: %d files, then %d", cs, len(before), len(after))
	if len(after) != 2 || cs.Merged != 1 || !slices.Contains(after, f2) {
		t.Errorf("files %v after compacting %v (%+v): want F2 %s and F3 kept, F1 deleted", after, before, cs, f2)
	}
	caAllIndexed(t, st, all)
}
