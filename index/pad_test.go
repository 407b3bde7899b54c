package index

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/random"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// packedFile is one file's chunks written through a Writer, and the packs
// they landed in.
type packedFile struct {
	ids   []chunk.ID
	data  map[chunk.ID][]byte
	packs map[chunk.ID][]pack.Entry // stored packs by ID, from their bytes
	raw   map[chunk.ID][]byte
}

// packFile stores n chunks of random sizes (up to 64 KiB, from seed)
// through one Packer of a Writer with opts and a Sync, and reads every
// pack back.
func packFile(t *testing.T, st remote.Store, idx *Index, opts WriterOptions, seed uint64, n int) packedFile {
	t.Helper()
	ctx := t.Context()
	opts.Host = "h"
	w, err := NewWriter(ctx, st, idx, testConfig(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 9))
	f := packedFile{data: map[chunk.ID][]byte{}, packs: map[chunk.ID][]pack.Entry{}, raw: map[chunk.ID][]byte{}}
	p := w.NewPacker()
	for range n {
		d := make([]byte, 1+r.IntN(64<<10))
		for i := range d {
			d[i] = byte(r.Uint32())
		}
		id := chunk.Sum(d)
		f.ids, f.data[id] = append(f.ids, id), d
		if _, err := p.Add(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.List(ctx, "packs/", func(i remote.Info) error {
		rc, err := st.Get(ctx, i.Key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		entries, err := pack.Parse(b, chunk.Namer{})
		if err != nil {
			t.Fatalf("%s: %v", i.Key, err)
		}
		id := chunk.Sum(b)
		if idx.PackSize(id) != int64(len(b)) {
			t.Errorf("pack %s: indexed size %d, stored %d", id, idx.PackSize(id), len(b))
		}
		f.packs[id], f.raw[id] = entries, b
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Every chunk reads back through the index.
	err = Fetch(ctx, st, idx, f.ids, FetchOptions{}, func(id chunk.ID, d []byte, err error) error {
		if err != nil || !bytes.Equal(d, f.data[id]) {
			t.Errorf("chunk %s: %v, or other bytes", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestWriterUnpaddedByDefault: without Pad and Spread a Writer's packs
// are format 2, byte for byte what pack.Builder made before padding
// existed (the pack golden files pin that encoder), each a run of
// consecutive chunks.
func TestWriterUnpaddedByDefault(t *testing.T) {
	f := packFile(t, remotetest.NewMemory(), New(), WriterOptions{PackSize: 256 << 10}, 1, 40)
	if len(f.packs) < 3 {
		t.Fatalf("%d packs, want several", len(f.packs))
	}
	for id, entries := range f.packs {
		raw := f.raw[id]
		b := pack.NewBuilder(nil)
		var nonce [pack.NonceSize]byte
		copy(nonce[:], raw[len(raw)-pack.TrailerSize+32:])
		b.SetNonce(nonce)
		for _, e := range entries {
			b.Add(e.ID, f.data[e.ID])
		}
		if want, _ := b.Finish(); !bytes.Equal(raw, want) || string(raw[len(raw)-8:]) != pack.Magic {
			t.Errorf("pack %s: not the unpadded format 2 encoding of its chunks", id)
		}
		if i := slices.Index(f.ids, entries[0].ID); !slices.EqualFunc(entries, f.ids[i:i+len(entries)], func(e pack.Entry, id chunk.ID) bool { return e.ID == id }) {
			t.Errorf("pack %s: its chunks are not consecutive chunks of the file", id)
		}
	}
}

// TestWriterPad: with Pad every pack is format 3 of a Padmé size, the
// size the index records, and its chunks read back.
func TestWriterPad(t *testing.T) {
	var data, stored int64
	f := packFile(t, remotetest.NewMemory(), New(), WriterOptions{PackSize: 256 << 10, Pad: true}, 2, 40)
	for id, entries := range f.packs {
		raw := f.raw[id]
		if n := int64(len(raw)); pack.Padme(n) != n || string(raw[len(raw)-8:]) != pack.MagicPadded {
			t.Errorf("pack %s: %d bytes, magic %q; want a Padmé size and %q", id, n, raw[len(raw)-8:], pack.MagicPadded)
		}
		for _, e := range entries {
			data += int64(e.Len)
		}
		stored += int64(len(raw))
	}
	t.Logf("%d packs: %d bytes of chunks stored in %d (%.2f%% more)", len(f.packs), data, stored, 100*float64(stored-data)/float64(data))
}

// TestWriterSpread: with Spread, a Packer's chunks go to two packs at
// random (internal/random, seeded here), so a file of many chunks has
// packs that are not runs of consecutive chunks; a file of two chunks,
// whose packs fit one, is one pack; and every chunk reads back.
func TestWriterSpread(t *testing.T) {
	defer random.SetSource(rand.NewChaCha8([32]byte{7}))()
	f := packFile(t, remotetest.NewMemory(), New(), WriterOptions{PackSize: 256 << 10, Spread: true, Pad: true}, 3, 40)
	interleaved := 0
	for _, entries := range f.packs {
		i := slices.Index(f.ids, entries[0].ID)
		if !slices.EqualFunc(entries, f.ids[i:min(i+len(entries), len(f.ids))], func(e pack.Entry, id chunk.ID) bool { return e.ID == id }) {
			interleaved++
		}
	}
	if len(f.packs) < 3 || interleaved < 2 {
		t.Errorf("%d packs, %d of them not a run of consecutive chunks; want several packs, most interleaved", len(f.packs), interleaved)
	}
	for seed := range uint64(8) {
		g := packFile(t, remotetest.NewMemory(), New(), WriterOptions{PackSize: 256 << 10, Spread: true}, 10+seed, 2)
		if len(g.packs) != 1 {
			t.Errorf("a file of two chunks (seed %d): %d packs, want 1", seed, len(g.packs))
		}
	}
}
