package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// Attacks on the layout of filters by region (layout.go).

// layoutLazy returns a lazy whose heads hold files of the given entries,
// their filters dense random bits (about 1 probe in 4 says "maybe", so a
// layout that probes the wrong block shows at once).
func layoutLazy(t *testing.T, dir string, rng *rand.Rand, sizes []int) *lazy {
	t.Helper()
	l := &lazy{files: map[string]*lazyFile{}, cache: dir}
	t.Cleanup(func() {
		if l.heads.file != nil {
			l.heads.file.Close()
		}
	})
	for _, n := range sizes {
		layoutAdd(t, l, rng, n)
	}
	return l
}

func layoutAdd(t *testing.T, l *lazy, rng *rand.Rand, n int) *lazyFile {
	t.Helper()
	filter := make([]byte, filterLen(n))
	for j := 0; j < len(filter); j += 8 {
		binary.LittleEndian.PutUint64(filter[j:], rng.Uint64()|rng.Uint64()|rng.Uint64())
	}
	table := make([]byte, bucketsFor(n)*idxBucketSize)
	l.mu.Lock()
	defer l.mu.Unlock()
	at, err := l.heads.add(l.cache, filter, table)
	if err != nil {
		t.Fatal(err)
	}
	f := &lazyFile{info: remote.Info{Key: fmt.Sprintf("index/h%d/x", at)}, n: n, at: at}
	l.files[f.info.Key] = f
	l.order = append(l.order, f)
	return f
}

// checkLayout checks the layout's probe against its files' own filters
// (same files, same order), and what a lookup consults (fault: the
// layout, then the files outside it, less the done ones) against every
// live file's own filter.
func checkLayout(t *testing.T, l *lazy, id chunk.ID) {
	t.Helper()
	lay := l.layout
	own := map[*lazyFile]bool{} // each file's own filter, probed once
	has := func(f *lazyFile) bool {
		if _, ok := own[f]; !ok {
			own[f], _ = l.heads.filterHas(f.at, f.filterLen(), id)
		}
		return own[f]
	}
	var got []*lazyFile
	if lay != nil {
		hits, err := lay.probe(id)
		if err != nil {
			t.Fatalf("probe %x: %v", id[:8], err)
		}
		var want []*lazyFile
		for _, f := range lay.files {
			if has(f) {
				want = append(want, f)
			}
		}
		if !slices.Equal(hits, want) {
			t.Fatalf("id %016x, %d regions, %d files: probe says %d files, their filters %d",
				binary.LittleEndian.Uint64(id[:]), lay.regions, len(lay.files), len(hits), len(want))
		}
		got = hits
	}
	for _, f := range l.order {
		if lay != nil && lay.in[f] {
			continue
		}
		if has(f) {
			got = append(got, f)
		}
	}
	got = slices.DeleteFunc(got, func(f *lazyFile) bool { return f.loaded })
	want := slices.DeleteFunc(slices.Clone(l.order), func(f *lazyFile) bool { return f.loaded || !has(f) })
	byAt := func(a, b *lazyFile) int { return int(a.at - b.at) }
	if slices.SortFunc(got, byAt); !slices.Equal(got, want) { // l.order is by at
		t.Fatalf("id %x: lookup consults %d files, the live files' filters say maybe for %d", id[:8], len(got), len(want))
	}
}

// idsFor returns random IDs and IDs at every region boundary of lay and
// at the ends of the range.
func idsFor(rng *rand.Rand, lay *layout, random int) []chunk.ID {
	var vs []uint64
	for range random {
		vs = append(vs, rng.Uint64())
	}
	vs = append(vs, 0, 1, ^uint64(0), ^uint64(0)-1, 1<<63, 1<<63-1)
	if lay != nil {
		for r := uint64(0); r < lay.regions; r += 1 + rng.Uint64N(lay.regions/16+1) {
			lo, hi := regionRange(r, lay.regions)
			vs = append(vs, lo, hi, lo+1, hi-1)
		}
	}
	var ids []chunk.ID
	for _, v := range vs {
		var id chunk.ID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		binary.LittleEndian.PutUint64(id[:], v)
		ids = append(ids, id)
	}
	return ids
}

func randSizes(rng *rand.Rand, files int) []int {
	sizes := make([]int, files)
	for i := range sizes {
		switch k := rng.IntN(20); {
		case k < 4:
			sizes[i] = k / 2 // 0 or 1 entries
		case k < 12:
			sizes[i] = 1 + rng.IntN(600)
		default:
			sizes[i] = 1 + rng.IntN([]int{20_000, 120_000}[k/19])
		}
	}
	return sizes
}

// Property: for random mixes of file sizes (0 entries, 1, small, large)
// and file counts around layoutMinFiles, the layout answers as the files'
// own filters do at region boundaries and elsewhere, also after files
// are added outside it, some are read whole or forgotten, and the layout
// is rebuilt. The same operations give the same layout.
func TestLayoutAttackProbeProperty(t *testing.T) {
	regions := map[uint64]int{}
	for trial := range 8 {
		seed := uint64(trial)
		rng := rand.New(rand.NewPCG(seed, 1))
		files := []int{63, 64, 65, 100, 160, 200, 64, 300}[trial]
		sizes := randSizes(rng, files)
		if trial == 6 || trial == 7 {
			for i := range sizes {
				sizes[i] = min(sizes[i], 1) // tiny: one region
			}
		}
		dir := t.TempDir()
		l := layoutLazy(t, dir, rng, sizes)
		l.relayout()
		live := 0
		for _, n := range sizes {
			if n > 0 {
				live++
			}
		}
		if (l.layout != nil) != (live >= layoutMinFiles) {
			t.Fatalf("trial %d: %d live files, layout %v", trial, live, l.layout != nil)
		}
		if l.layout != nil {
			regions[l.layout.regions]++
			// The same operations, again: the same layout, byte for byte.
			rng2 := rand.New(rand.NewPCG(seed, 1))
			randSizes(rng2, files)
			l2 := layoutLazy(t, t.TempDir(), rng2, sizes)
			l2.relayout()
			a, b := l.layout, l2.layout
			ba, bb := make([]byte, a.starts[a.regions]), make([]byte, b.starts[b.regions])
			if !slices.Equal(a.starts, b.starts) || a.h.readAt(ba, a.at) != nil || b.h.readAt(bb, b.at) != nil || !bytes.Equal(ba, bb) {
				t.Fatalf("trial %d: two builds of the same files differ", trial)
			}
		}
		for _, id := range idsFor(rng, l.layout, 60) {
			checkLayout(t, l, id)
		}
		// Continuous: files read whole, forgotten, added; layout rebuilt.
		for round := range 4 {
			for _, f := range l.order {
				if rng.IntN(15) == 0 {
					f.loaded = true
				}
			}
			listed := map[string]bool{}
			for _, f := range l.order {
				if rng.IntN(12) != 0 {
					listed[f.info.Key] = true
				}
			}
			l.forget(listed)
			for range rng.IntN(files / 4) {
				layoutAdd(t, l, rng, randSizes(rng, 1)[0])
			}
			if round%2 == 0 {
				for _, id := range idsFor(rng, l.layout, 30) {
					checkLayout(t, l, id)
				}
			}
			l.relayout()
			for _, id := range idsFor(rng, l.layout, 30) {
				checkLayout(t, l, id)
			}
		}
	}
	t.Logf("regions seen: %v", regions)
}

// Region arithmetic for every count of regions a layout may have: the
// regions tile the IDs, the region of an ID holds it, and a filter's
// blocks for a region are the blocks its IDs pick.
func TestLayoutAttackRegionMath(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for k := range 17 {
		n := uint64(1) << k
		for _, r := range []uint64{0, 1, n / 2, n - 2, n - 1, rng.Uint64N(n)} {
			if r >= n {
				continue
			}
			lo, hi := regionRange(r, n)
			nlo, _ := regionRange(r+1, n)
			a, _ := bits.Mul64(lo, n)
			b, _ := bits.Mul64(hi, n)
			if a != r || b != r || (r+1 < n && nlo != hi+1) || (r+1 == n && hi != ^uint64(0)) {
				t.Fatalf("n %d: region %d is [%x, %x], in regions %d and %d", n, r, lo, hi, a, b)
			}
			for _, nb := range []uint64{1, 2, 3, 781, 1 << 16, rng.Uint64N(1<<20) + 1} {
				b0, b1 := span(lo, hi, nb)
				for _, v := range []uint64{lo, hi, lo + (hi-lo)/2, lo + rng.Uint64()>>k} {
					if b, _ := bits.Mul64(v, nb); b < b0 || b > b1 {
						t.Fatalf("n %d r %d nb %d: block %d of %x outside [%d, %d]", n, r, nb, b, v, b0, b1)
					}
				}
			}
		}
	}
}

// Heads (and the layout) that no scratch file can take stay in memory:
// the layout is built there and answers as the filters do.
func TestLayoutAttackNoScratchFile(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", blocker)
	rng := rand.New(rand.NewPCG(7, 8))
	sizes := make([]int, 70)
	for i := range sizes {
		sizes[i] = 6000 + rng.IntN(3000) // about 19 KB of head each: past 1 MiB
	}
	l := layoutLazy(t, filepath.Join(blocker, "cache"), rng, sizes)
	l.relayout()
	if l.layout == nil || l.heads.file != nil || !l.heads.inMemory || l.layout.h.file != nil {
		t.Fatalf("layout %v, scratch file %v, in memory %v: want heads and layout in memory", l.layout != nil, l.heads.file != nil, l.heads.inMemory)
	}
	for _, id := range idsFor(rng, l.layout, 500) {
		checkLayout(t, l, id)
	}
}

// A build's transient memory: about layoutBatch plus one file's share,
// not the filters' total (10 MB for 200 files of 20,000 chunks).
func TestLayoutAttackBuildAlloc(t *testing.T) {
	for _, c := range []struct{ files, n int }{{200, 20_000}, {4000, 200}} {
		t.Run(fmt.Sprint(c.files, "x", c.n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, uint64(c.files)))
			sizes := make([]int, c.files)
			for i := range sizes {
				sizes[i] = c.n
			}
			l := layoutLazy(t, t.TempDir(), rng, sizes)
			if l.heads.file == nil {
				t.Fatal("heads not in the scratch file")
			}
			n := allocated(l.relayout)
			if l.layout == nil {
				t.Fatal("no layout")
			}
			t.Logf("%d regions, %d MB of layout; build allocated %d KiB", l.layout.regions, l.layout.starts[l.layout.regions]>>20, n>>10)
			if n > 3*layoutBatch {
				t.Errorf("build allocated %d KiB, want at most %d KiB", n>>10, 3*layoutBatch>>10)
			}
			for _, id := range idsFor(rng, l.layout, 20) {
				checkLayout(t, l, id)
			}
		})
	}
}

// putRandIndexFile stores an index file of host holding n random chunks.
func putRandIndexFile(t *testing.T, st remote.Store, rng *rand.Rand, host string, n int) (string, []chunk.ID) {
	t.Helper()
	ids := make([]chunk.ID, n)
	for i := range ids {
		for j := 0; j < len(ids[i]); j += 8 {
			binary.LittleEndian.PutUint64(ids[i][j:], rng.Uint64())
		}
	}
	return putIDs(t, st, host, ids), ids
}

// A continuous backup: Load after Load, a tenth of the files replaced by
// others each time, some listed again after they were forgotten. Every
// live file's chunks are found; forgotten files are not read; and the
// scratch area stays in proportion to what is live.
//
// Every rebuild used to append a whole new layout to the heads and nothing
// reclaimed old layouts: the scratch area grew by the size of all live
// filters every time a tenth of the files changed, without bound over a
// continuous backup's Loads. A layout now has its own scratch, left to the
// collector when it is built again. (Heads of forgotten files still stay,
// lazy.forget: bounded here by the 4× check.)
func TestLayoutAttackContinuousLoads(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	mem := remotetest.NewMemory()
	st := remotetest.NewFaulty(mem)
	type file struct {
		key string
		ids []chunk.ID
		raw []byte
	}
	live := map[string]file{}
	var gone []file
	next := 0
	add := func() {
		key, ids := putRandIndexFile(t, mem, rng, fmt.Sprintf("c%04d", next), 1+rng.IntN(120))
		live[key] = file{key: key, ids: ids}
		next++
	}
	for range 70 {
		add()
	}
	x := New()
	x.LoadOthersLazily("a")
	var mu sync.Mutex
	read := map[string]int{}
	st.SetHook(func(op remotetest.Op, key string) error {
		if op == remotetest.OpGet {
			mu.Lock()
			read[key]++
			mu.Unlock()
		}
		return nil
	})
	layouts := map[*layout]bool{}
	for round := range 30 {
		if _, err := x.Load(t.Context(), st, ""); err != nil {
			t.Fatal(err)
		}
		l := x.lazyOf()
		if l.layout != nil {
			layouts[l.layout] = true
		}
		mu.Lock()
		clear(read) // Gets from here on: lookups of forgotten files' chunks only
		mu.Unlock()
		for _, g := range gone {
			x.Has(g.ids[rng.IntN(len(g.ids))])
		}
		mu.Lock()
		for _, g := range gone {
			if read[g.key] > 0 {
				t.Fatalf("round %d: forgotten file %s read %d times", round, g.key, read[g.key])
			}
		}
		mu.Unlock()
		for _, f := range live {
			if id := f.ids[rng.IntN(len(f.ids))]; !x.Has(id) {
				t.Fatalf("round %d: chunk of live file %s unknown", round, f.key)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(live))[:8] {
			f := live[k]
			f.raw, _ = readAll(t, mem, k)
			mem.Delete(t.Context(), k)
			delete(live, k)
			gone = append(gone, f)
		}
		if round%2 == 1 { // listed again, after they were forgotten
			for _, f := range gone[:4] {
				mem.Put(t.Context(), f.key, bytes.NewReader(f.raw), int64(len(f.raw)))
				live[f.key] = f
			}
			gone = gone[4:]
		}
		for range 8 {
			add()
		}
	}
	l := x.lazyOf()
	var liveHeads int64
	for _, f := range l.order {
		if !f.loaded {
			liveHeads += headLen(f.n) - int64(idxHeader)
		}
	}
	cur := l.layout.starts[l.layout.regions]
	var built int64
	for lay := range layouts {
		built += lay.starts[lay.regions]
	}
	t.Logf("%d layouts built, %d KB in all; heads %d KB for %d KB of live heads and a layout of %d KB", len(layouts), built>>10, l.heads.size>>10, liveHeads>>10, cur>>10)
	if l.heads.size > 4*(liveHeads+cur) {
		t.Errorf("after 30 Loads the scratch area holds %d KB for %d KB of live heads and a %d KB layout: old layouts and forgotten heads are never reclaimed",
			l.heads.size>>10, liveHeads>>10, cur>>10)
	}
}

// Lookups from many goroutines race Loads that spill the heads from
// memory to the scratch file, rebuild the layout, forget files and list
// them again (go test -race); every live chunk is then found.
func TestLayoutAttackLookupsRaceLoads(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	st := remotetest.NewMemory()
	var ids []chunk.ID
	var keys []string
	for h := range layoutMinFiles {
		k, fids := putRandIndexFile(t, st, rng, fmt.Sprintf("s%03d", h), 300)
		keys, ids = append(keys, k), append(ids, fids...)
	}
	x := lazyIndex(t, st, t.TempDir())
	l := x.lazyOf()
	if l.layout == nil || l.heads.file != nil {
		t.Fatalf("layout %v, heads spilled %v: want a layout in memory", l.layout != nil, l.heads.file != nil)
	}
	first := l.layout
	var big [][]chunk.ID
	for h := range 7 { // heads pass 1 MiB: they spill while lookups run
		_, fids := putRandIndexFile(t, st, rng, fmt.Sprintf("t%03d", h), 60_000)
		big = append(big, fids)
	}
	raw, _ := readAll(t, st, keys[0])
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 0))
			for {
				select {
				case <-stop:
					return
				default:
				}
				x.Has(ids[r.IntN(len(ids))])
				x.Has(big[r.IntN(len(big))][r.IntN(30_000)])
				var id chunk.ID
				binary.LittleEndian.PutUint64(id[:], r.Uint64())
				x.Has(id)
			}
		})
	}
	for i := range 4 {
		if i == 1 {
			st.Delete(t.Context(), keys[0])
		}
		if i == 2 {
			st.Put(t.Context(), keys[0], bytes.NewReader(raw), int64(len(raw)))
		}
		if _, err := x.Load(t.Context(), st, ""); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	spilled := l.heads.file != nil || l.layout != nil && l.layout.h.file != nil
	if !spilled || l.layout == first {
		t.Errorf("heads or layout spilled %v, layout rebuilt %v: want both", spilled, l.layout != first)
	}
	for i := 0; i < len(ids); i += 37 {
		if !x.Has(ids[i]) {
			t.Fatalf("chunk %d of the first files unknown", i)
		}
	}
	for i, fids := range big {
		if !x.Has(fids[i*1000]) {
			t.Fatalf("chunk of big file %d unknown", i)
		}
	}
}

// Loads at once (a continuous backup's Load beside a reader's; Index is
// "safe for concurrent use") with lookups: go test -race.
//
// Load used to write l.cache under l.mu while another Load read it
// without (load → loadHead, buildLayout → heads.grow): a data race; the
// readers now take it under the lock.
func TestLayoutAttackConcurrentLoads(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	st := remotetest.NewMemory()
	var ids []chunk.ID
	for h := range layoutMinFiles + 10 {
		_, fids := putRandIndexFile(t, st, rng, fmt.Sprintf("u%03d", h), 50)
		ids = append(ids, fids...)
	}
	for range 6 {
		x := New()
		x.LoadOthersLazily("a")
		cache := t.TempDir()
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if _, err := x.Load(t.Context(), st, cache); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Go(func() {
			for i := 0; i < len(ids); i += 13 {
				x.Has(ids[i])
			}
		})
		wg.Wait()
		for i := 0; i < len(ids); i += 29 {
			if !x.Has(ids[i]) {
				t.Fatalf("chunk %d unknown", i)
			}
		}
	}
}
