package index

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote/remotetest"
)

// TestRebuildOrphansReadsPackOfDamagedBucket: another host's index file,
// read lazily, names a stored pack holding chunks x and y in different
// buckets; y's bucket is damaged. A lookup of x admits the pack from x's
// good bucket; y's lookup finds its bucket damaged and the file is not
// admitted. RebuildOrphans must read the pack's header, as an orphan's:
// it skipped the pack, whose size the good bucket had recorded, and y was
// in no index (long mode, seed 677075: a restore's "chunk not in the
// index" after one bit of an index file was flipped).
func TestRebuildOrphansReadsPackOfDamagedBucket(t *testing.T) {
	ctx := t.Context()
	st := remotetest.NewMemory()
	const n = 600 // several buckets
	nb := bucketsFor(n + 2)
	x := []byte("chunk x")
	var y []byte
	for i := 0; y == nil; i++ {
		c := []byte(fmt.Sprint("chunk y ", i))
		if bucketOf(chunk.Sum(c), nb) != bucketOf(chunk.Sum(x), nb) {
			y = c
		}
	}
	b := pack.NewBuilder(nil)
	for _, d := range [][]byte{x, y} {
		b.Add(chunk.Sum(d), d)
	}
	entries := append([]pack.Entry(nil), b.Entries()...)
	data, id := b.Finish()
	if err := st.Put(ctx, pack.Key(id), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	_, fake := putIndexFileIDs("b", n)
	other := PackRecord{ID: packOfHost("b"), Size: int64(n) * 100}
	for i, f := range fake {
		other.Entries = append(other.Entries, pack.Entry{ID: f, Off: uint32(i * 100), Len: 100})
	}
	raw, sum := EncodeFile([]PackRecord{other, {ID: id, Size: int64(len(data)), Entries: entries}})
	yid := chunk.Sum(y)
	at := bytes.Index(raw, yid[:])
	if at < 0 {
		t.Fatal("y's entry not found in the index file")
	}
	raw[at+5] ^= 0x40 // y's bucket no longer matches its sum
	putBytes(t, st, Key("b", sum), raw)

	idx := lazyIndex(t, st, t.TempDir())
	if _, ok := idx.Lookup(chunk.Sum(x)); !ok {
		t.Fatal("x, in a good bucket, is not found")
	}
	if _, ok := idx.Lookup(yid); ok {
		t.Fatal("y, in a damaged bucket, is found before RebuildOrphans")
	}
	if _, err := idx.RebuildOrphans(ctx, st); err != nil {
		t.Fatal(err)
	}
	if _, ok := idx.Lookup(yid); !ok {
		t.Error("after RebuildOrphans y, stored in a pack named only by a damaged index file, is not in the index")
	}
}
