package pack

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote/remotetest"
)

// FuzzReadHeader reads the header of a hostile pack object with ranged
// reads, as validate, repair-index and readers of unindexed packs do: it
// must never panic, every entry it returns must lie inside the pack's data
// region, HeaderLen must agree with it, and a pack that Parse accepts
// whole must give the same entries.
func FuzzReadHeader(f *testing.F) {
	for _, v := range []string{"v2", "v3"} {
		if b, err := os.ReadFile("testdata/pack-" + v + ".golden"); err == nil {
			f.Add(b)
		}
	}
	for _, padded := range []bool{false, true} {
		b := NewBuilder(nil)
		if padded {
			b.Pad()
		}
		for i := range 3 {
			d := bytes.Repeat([]byte{byte(i)}, 10+i)
			b.Add(chunk.Sum(d), d)
		}
		data, _ := b.Finish()
		f.Add(data)
	}
	f.Add([]byte(Magic))
	f.Add([]byte(MagicPadded))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := context.Background()
		st := remotetest.NewMemory()
		const key = "packs/00/0000"
		if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		entries, size, err := ReadHeader(ctx, st, key)
		whole, perr := Parse(b, chunk.Namer{})
		if err != nil {
			if perr == nil {
				t.Fatalf("Parse accepts the pack, ReadHeader refuses it: %v", err)
			}
			return
		}
		if size != int64(len(b)) {
			t.Fatalf("ReadHeader: size %d, want %d", size, len(b))
		}
		hdr := int64(len(entries))*EntrySize + TrailerSize
		if string(b[len(b)-len(MagicPadded):]) == MagicPadded {
			hdr += EntrySize // the padding's entry
		}
		n, ok := HeaderLen(b[max(0, len(b)-TrailerSize):])
		if !ok || n != hdr {
			t.Fatalf("HeaderLen = %d, %v; want %d for %d entries", n, ok, hdr, len(entries))
		}
		dataEnd := int64(len(b)) - n
		for _, e := range entries {
			if int64(e.Off)+int64(e.Len) > dataEnd {
				t.Fatalf("entry %+v beyond the data region of %d bytes", e, dataEnd)
			}
		}
		if perr == nil && !slices.Equal(whole, entries) {
			t.Fatalf("Parse gives %v, ReadHeader %v", whole, entries)
		}
	})
}
