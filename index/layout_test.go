package index

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote/remotetest"
)

// With enough files, a backup probes their filters through a layout by
// region of the IDs: it answers exactly what probing file by file does,
// for chunks of every file and for others, and lookups find every chunk
// where its file puts it. Files of many sizes, so that regions cut
// filter blocks every way; heads past 1 MiB, so the layout is in the
// scratch file.
func TestLayoutProbesAsFileByFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	randID := func() (id chunk.ID) {
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		return id
	}
	st := remotetest.NewMemory()
	type placed struct {
		pack chunk.ID
		off  uint32
	}
	want := map[chunk.ID]placed{}
	for h := range layoutMinFiles + 6 {
		n := 1 + rng.IntN(8000)
		if h%10 == 0 {
			n = 40_000
		}
		rec := PackRecord{ID: chunk.Sum([]byte(fmt.Sprint("pack", h))), Size: int64(n) * 10}
		for i := range n {
			id := randID()
			rec.Entries = append(rec.Entries, pack.Entry{ID: id, Off: uint32(i * 10), Len: 10})
			want[id] = placed{rec.ID, uint32(i * 10)}
		}
		b, sum := EncodeFile([]PackRecord{rec})
		if err := st.Put(t.Context(), Key(fmt.Sprintf("h%02d", h), sum), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	x := lazyIndex(t, st, t.TempDir())
	l := x.lazyOf()
	lay := l.layout
	if lay == nil || len(lay.files) != layoutMinFiles+6 || l.heads.file == nil {
		t.Fatalf("layout %v, heads in a file %v: want a layout of every file, in the scratch file", lay != nil, l.heads.file != nil)
	}
	byFile := func(id chunk.ID) []*lazyFile {
		var hits []*lazyFile
		for _, f := range lay.files {
			if ok, err := l.heads.filterHas(f.at, f.filterLen(), id); err != nil || ok {
				hits = append(hits, f)
			}
		}
		return hits
	}
	check := func(id chunk.ID) {
		t.Helper()
		got, err := lay.probe(id)
		if err != nil || !slices.Equal(got, byFile(id)) {
			t.Fatalf("layout probe = %d files (%v), file by file %d", len(got), err, len(byFile(id)))
		}
	}
	i := 0
	for id := range want {
		if i++; i%101 == 0 {
			check(id)
		}
	}
	for range 5_000 {
		check(randID())
	}
	t.Logf("%d files, %d regions, %d bytes of layout for %d chunks", len(lay.files), lay.regions, lay.starts[lay.regions], len(want))
	i = 0
	for id, p := range want {
		if i++; i%271 != 0 {
			continue
		}
		if loc, ok := x.Lookup(id); !ok || loc.Pack != p.pack || loc.Off != p.off {
			t.Fatalf("Lookup = %+v, %v; want pack %s at %d", loc, ok, p.pack, p.off)
		}
	}
}

// Lookups race a Load that adds enough files to build the layout again,
// and a whole read after wholeAfter answers: every chunk is found where
// its file puts it (go test -race).
func TestLayoutRacesLoad(t *testing.T) {
	st := remotetest.NewMemory()
	var ids []chunk.ID
	put := func(h int) {
		_, fids := putIndexFile(t, st, fmt.Sprintf("r%03d", h), 300)
		ids = append(ids, fids...)
	}
	for h := range layoutMinFiles {
		put(h)
	}
	x := lazyIndex(t, st, t.TempDir())
	first := x.lazyOf().layout
	if first == nil {
		t.Fatal("no layout of 64 files")
	}
	for h := layoutMinFiles; h < layoutMinFiles+20; h++ {
		put(h)
	}
	done := make(chan error, 1)
	go func() {
		_, err := x.Load(t.Context(), st, "")
		done <- err
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(ids); i += 4 * 7 {
				x.Has(ids[i]) // the files of the second Load may not be loaded yet
			}
		})
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if x.lazyOf().layout == first {
		t.Error("20 new files of 84 did not build the layout again")
	}
	for i, id := range ids {
		if i%5 == 0 && !x.Has(id) {
			t.Fatalf("chunk %d unknown after both loads", i)
		}
	}
}
