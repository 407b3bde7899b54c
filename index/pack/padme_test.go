package pack

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cassback/cassback/chunk"
)

func TestPadme(t *testing.T) {
	for _, tc := range []struct{ n, want int64 }{
		{0, 0}, {1, 1}, {2, 2}, {7, 7}, {9, 10}, {262, 272},
		{1 << 20, 1 << 20}, {1<<20 + 1, 1<<20 + 1<<15},
		{32 << 20, 32 << 20}, {32<<20 + 1, 33 << 20}, {maxUnpadded, MaxSize},
	} {
		if got := Padme(tc.n); got != tc.want {
			t.Errorf("Padme(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	// Never smaller, idempotent, monotone, and under 1/32 more for packs
	// of 1 MiB and up (under 1/2^S of n, S = ⌊log2 ⌊log2 n⌋⌋+1).
	r := rand.New(rand.NewPCG(1, 2))
	prev := int64(0)
	for n := int64(1); n < MaxSize; n += 1 + r.Int64N(n) {
		p := Padme(n)
		if p < n || Padme(p) != p || p < prev || (n >= 1<<20 && float64(p-n) >= float64(n)/32) {
			t.Fatalf("Padme(%d) = %d (previous %d): want n <= Padme(n) = Padme(Padme(n)), monotone, within 1/32 past 1 MiB", n, p, prev)
		}
		prev = p
	}
}

// TestPaddedPack: a padded pack of chunks of random sizes has a Padmé
// size, and reads back as the same chunks; a pack whose padding entry is
// missing, misplaced or named, or whose padding is not zeros, is refused.
func TestPaddedPack(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b := NewBuilder(nil)
		b.Pad()
		var data [][]byte
		for range 1 + r.IntN(40) {
			d := make([]byte, r.IntN(64<<10))
			for i := range d {
				d[i] = byte(r.Uint32())
			}
			data = append(data, d)
			b.Add(chunk.Sum(d), d)
		}
		want := append([]Entry(nil), b.Entries()...)
		p, id := b.Finish()
		if n := int64(len(p)); Padme(n) != n || n-int64(want[len(want)-1].Off+want[len(want)-1].Len) < int64(len(want)+1)*EntrySize+TrailerSize {
			t.Fatalf("padded pack of %d chunks: %d bytes, not a Padmé size or too short for its header", len(want), n)
		}
		got, err := Parse(p, chunk.Namer{})
		if err != nil || !equalEntries(got, want) || id != chunk.Sum(p) {
			t.Fatalf("Parse = %v, %v; want %v", got, err, want)
		}
	}

	// Hostile variants of one padded pack, each with a valid headerSum.
	chunks := [][]byte{[]byte("alpha"), []byte("beta")}
	build := func(edit func(hdr []Entry) []Entry, padByte byte, magic string) []byte {
		hdr := []Entry{{ID: chunk.Sum(chunks[0]), Len: 5}, {ID: chunk.Sum(chunks[1]), Len: 4}, {Len: 7}}
		hdr = edit(hdr)
		var buf []byte
		buf = append(buf, chunks[0]...)
		buf = append(buf, chunks[1]...)
		buf = append(buf, bytes.Repeat([]byte{padByte}, 7)...)
		h := chunk.NewHasher()
		var hb []byte
		for _, e := range hdr {
			hb = append(hb, e.ID[:]...)
			hb = binary.LittleEndian.AppendUint32(hb, e.Len)
		}
		var nonce [NonceSize]byte
		h.Write(hb)
		h.Write(nonce[:])
		sum := h.Sum()
		buf = append(buf, hb...)
		buf = append(buf, sum[:]...)
		buf = append(buf, nonce[:]...)
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(hdr)))
		return append(buf, magic...)
	}
	same := func(h []Entry) []Entry { return h }
	if _, err := Parse(build(same, 0, MagicPadded), chunk.Namer{}); err != nil {
		t.Fatalf("the well-formed variant: %v", err)
	}
	for _, tc := range []struct {
		name string
		p    []byte
		want string
	}{
		{"padding entry named", build(func(h []Entry) []Entry { h[2].ID = chunk.Sum(nil); return h }, 0, MagicPadded), "padding entry misplaced"},
		{"padding entry first", build(func(h []Entry) []Entry { return []Entry{h[2], h[0], h[1]} }, 0, MagicPadded), "padding entry misplaced"},
		{"no padding entry", build(func(h []Entry) []Entry { h[1].Len += 7; return h[:2] }, 0, MagicPadded), "padding entry misplaced"},
		{"padding not zero", build(same, 1, MagicPadded), "padding is not zero"},
	} {
		_, err := Parse(tc.p, chunk.Namer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	// A format 2 pack whose magic says padded lacks the padding entry.
	v2, _, _ := goldenPack(false)
	v2 = append(v2[:len(v2)-len(Magic)], MagicPadded...)
	if _, err := Parse(v2, chunk.Namer{}); err == nil || !strings.Contains(err.Error(), "padding entry misplaced") {
		t.Errorf("format 2 pack under the padded magic: %v, want it refused", err)
	}
}

func equalEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// MaxSize is the largest pack a writer makes, padded.
func TestMaxSize(t *testing.T) {
	if got := Padme(maxUnpadded); got != MaxSize {
		t.Errorf("Padme(largest unpadded pack %d) = %d, want MaxSize %d", int64(maxUnpadded), got, int64(MaxSize))
	}
}
