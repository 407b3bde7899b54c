package gc

import (
	"encoding/binary"
	"testing"
)

// Records added past the first, doubling block and across fixed blocks
// are read back in order, and the fixed blocks have the fixed size.
func TestProvRecsGrowsAndKeepsOrder(t *testing.T) {
	var p provRecs
	const n = 2*provBlock + 777
	for i := range n {
		var r provRec
		binary.BigEndian.PutUint32(r.ID[:], uint32(i))
		r.Size = int64(i)
		p.add(r)
	}
	if p.n != n || len(p.blocks) != 3 {
		t.Fatalf("n %d in %d blocks, want %d in 3", p.n, len(p.blocks), n)
	}
	for i, b := range p.blocks[:2] {
		if len(b) != provBlock {
			t.Fatalf("block %d holds %d, want %d", i, len(b), provBlock)
		}
	}
	for i := range uint32(n) {
		r := p.at(i)
		if binary.BigEndian.Uint32(r.ID[:]) != i || r.Size != int64(i) {
			t.Fatalf("record %d reads back as %x/%d", i, r.ID[:4], r.Size)
		}
	}
}
