package index

// Attacks on Writer.AddTree (ff59fae): a commit's tree nodes join the open
// pack of a Packer that workers keep filling.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// checkMarkedPacks checks every pack of st: one holding nodes is marked,
// with the offset of its first node, no file chunk after it and at most
// pack.MaxTreePack in all (what the survey store keeps from:
// remote/survey keepLen); one holding none is not marked. It returns the
// number of packs holding both.
func checkMarkedPacks(t *testing.T, st remote.Store, isNode map[chunk.ID]bool) (mixed int) {
	t.Helper()
	var packs []remote.Info
	if err := st.List(t.Context(), "packs/", func(i remote.Info) error { packs = append(packs, i); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, info := range packs {
		whole, err := readAll(t, st, info.Key)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := pack.Parse(whole, chunk.Namer{})
		if err != nil {
			t.Fatal(err)
		}
		nodes, chunks := 0, 0
		for _, e := range entries {
			if isNode[e.ID] {
				nodes++
			} else {
				chunks++
			}
		}
		start, marked := pack.TreeStart(whole)
		if !marked {
			if nodes > 0 {
				t.Errorf("pack %s holds %d tree nodes and is not marked", info.Key, nodes)
			}
			continue
		}
		for _, e := range entries {
			if isNode[e.ID] != (int64(e.Off) >= start) {
				t.Errorf("pack %s: chunk at %d (a node: %v), but its mark says the nodes start at %d", info.Key, e.Off, isNode[e.ID], start)
			}
		}
		if nodes == 0 {
			t.Errorf("pack %s is marked and holds no node", info.Key)
		}
		if info.Size > pack.MaxTreePack {
			t.Errorf("marked pack %s of %d bytes (%d file chunks), past pack.MaxTreePack", info.Key, info.Size, chunks)
		}
		if chunks > 0 {
			mixed++
		}
	}
	return mixed
}

// While workers keep adding file chunks to their Packers (the next
// flushes, chunked in parallel, several goroutines a Packer), commits put
// their nodes beside the chunks of the open packs. A file chunk added
// after the nodes would make the mark's offset wrong (the survey store
// would keep a file chunk and cut a node), and a pack grown past
// pack.MaxTreePack would not be kept at all. Every pack is as its mark
// says, and every chunk and node is read back.
func TestAddTreeAttackConcurrentPackers(t *testing.T) {
	ctx := t.Context()
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.PackSize = 1 << 20 // open packs small enough to join, often
	idx := New()
	w, err := NewWriter(ctx, st, idx, cfg, WriterOptions{Host: "h", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	want := map[chunk.ID][]byte{}
	isNode := map[chunk.ID]bool{}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var seed atomic.Uint64
	seed.Store(1 << 20)
	for range 2 {
		p := w.NewPacker()
		for range 2 {
			wg.Go(func() {
				for !stop.Load() {
					s := seed.Add(1)
					d := randBytes(s, 1000+int(s%7)*9000)
					id := chunk.Sum(d)
					mu.Lock()
					want[id] = d
					mu.Unlock()
					if _, err := p.Add(ctx, id, d); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	for c := range 30 {
		var ids []chunk.ID
		var data [][]byte
		for i := range 1 + c%4 {
			d := append([]byte("node"), randBytes(uint64(c*10+i), 500+c*300)...)
			ids, data = append(ids, chunk.Sum(d)), append(data, d)
			mu.Lock()
			want[ids[i]], isNode[ids[i]] = d, true
			mu.Unlock()
		}
		if err := w.AddTree(ctx, ids, data, true); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mixed := checkMarkedPacks(t, st, isNode)
	if mixed == 0 {
		t.Errorf("no pack holds file chunks and nodes: the attack misses")
	}
	t.Logf("%d packs hold file chunks and nodes; %d chunks and nodes in all", mixed, len(want))
	err = Fetch(ctx, st, idx, slices.Collect(maps.Keys(want)), FetchOptions{}, func(id chunk.ID, d []byte, err error) error {
		if err != nil || !bytes.Equal(d, want[id]) {
			t.Errorf("chunk %s (a node: %v): read %d bytes (%v), want its %d", id, isNode[id], len(d), err, len(want[id]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// failPacks fails the first n pack PUTs (the request never lands) and
// forwards remote.Verifying as a process's wrappers do.
type failPacks struct {
	*local.Store
	mu sync.Mutex
	n  int
}

func (f *failPacks) fail(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 && strings.HasPrefix(key, "packs/") {
		f.n--
		return true
	}
	return false
}

func (f *failPacks) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if f.fail(key) {
		return fmt.Errorf("put %s: connection reset", key)
	}
	return f.Store.Put(ctx, key, data, size)
}

func (f *failPacks) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	if f.fail(key) {
		return false, fmt.Errorf("put %s: connection reset", key)
	}
	return f.Store.PutVerified(ctx, key, data, size)
}

// A commit's AddTree joins the open pack of a Packer, and its upload
// fails: the pack's file chunks and the nodes are in no pack. A later
// AddTree of the same nodes (the next commit of a continuous backup
// reuses unchanged nodes) must not take them as stored or claimed, nor
// may Sync report the writer's packs durable: the writer stays failed.
// The next process's writer (same journal) stores them, and every chunk
// and node reads back.
func TestAddTreeAttackFailedUpload(t *testing.T) {
	ctx := t.Context()
	ls, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &failPacks{Store: ls, n: 1}
	cfg := testConfig(t)
	journal := filepath.Join(t.TempDir(), "journal")
	w, err := NewWriter(ctx, st, New(), cfg, WriterOptions{Host: "h", Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	file := randBytes(77, 5000)
	fid := chunk.Sum(file)
	if _, err := w.NewPacker().Add(ctx, fid, file); err != nil {
		t.Fatal(err)
	}
	var ids []chunk.ID
	var data [][]byte
	for i := range 3 {
		d := append([]byte("node"), randBytes(uint64(90+i), 700)...)
		ids, data = append(ids, chunk.Sum(d)), append(data, d)
	}
	if err := w.AddTree(ctx, ids, data, true); err == nil {
		t.Fatal("AddTree with its pack's upload failing: got nil")
	}
	if err := w.AddTree(ctx, ids, data, true); err == nil {
		t.Errorf("AddTree of the same nodes after a failed upload: got nil, want the writer's failure")
	}
	if err := w.Sync(ctx); err == nil {
		t.Errorf("Sync after a failed upload: got nil, want the writer's failure")
	}
	for _, id := range append([]chunk.ID{fid}, ids...) {
		if ok, err := w.Stored(ctx, id); ok || err != nil {
			t.Errorf("Stored(%s) after the failed upload: %v, %v; want false", id, ok, err)
		}
	}

	idx := New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	w2, err := NewWriter(ctx, st, idx, cfg, WriterOptions{Host: "h", Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.NewPacker().Add(ctx, fid, file); err != nil {
		t.Fatal(err)
	}
	if err := w2.AddTree(ctx, ids, data, true); err != nil {
		t.Fatal(err)
	}
	if err := w2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	isNode := map[chunk.ID]bool{}
	want := map[chunk.ID][]byte{fid: file}
	for i, id := range ids {
		isNode[id], want[id] = true, data[i]
	}
	if mixed := checkMarkedPacks(t, ls, isNode); mixed != 1 {
		t.Errorf("%d packs hold the file chunk and the nodes, want 1", mixed)
	}
	read := New()
	if _, err := read.Load(ctx, ls, ""); err != nil {
		t.Fatal(err)
	}
	err = Fetch(ctx, ls, read, slices.Collect(maps.Keys(want)), FetchOptions{}, func(id chunk.ID, d []byte, err error) error {
		if err != nil || !bytes.Equal(d, want[id]) {
			t.Errorf("chunk %s (a node: %v): read %d bytes (%v), want its %d", id, isNode[id], len(d), err, len(want[id]))
		}
		delete(want, id)
		return nil
	})
	if err != nil || len(want) > 0 {
		t.Fatalf("Fetch: %v; %d chunks not read", err, len(want))
	}
}
