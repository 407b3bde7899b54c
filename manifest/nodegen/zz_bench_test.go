package nodegen

import "testing"

func BenchmarkZZHinted(b *testing.B) {
	p := profile{rowsMean: 48, textCols: 2, wordsMax: 5, intCols: 3, blobPct: 0, blobMax: 1024}
	pcs := []piece{{seed: 7, length: 8 << 20}}
	var scratch []byte
	buf := make([]byte, 0, segmentSize+rowSlack)
	var parts []partition
	var hints []hint
	buf, parts, hints = fillRange(buf, 0, segmentSize, pcs, &p, &scratch, parts[:0], hints[:0])
	c := newCompressor(0)
	var out []byte
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		kk := 0
		for i := 0; i < len(buf); i += 16384 {
			h := kk
			for kk < len(hints) && hints[kk].pos() < i+16384 {
				kk++
			}
			out = c.zlibChunk(out[:0], buf[i:i+16384], hints[h:kk], i)
		}
	}
}

func BenchmarkZZGen(b *testing.B) {
	p := profile{rowsMean: 48, textCols: 2, wordsMax: 5, intCols: 3, blobPct: 0, blobMax: 1024}
	pcs := []piece{{seed: 7, length: 8 << 20}}
	var scratch []byte
	buf := make([]byte, 0, segmentSize+rowSlack)
	var parts []partition
	var hints []hint
	b.SetBytes(segmentSize)
	for b.Loop() {
		buf, parts, hints = fillRange(buf, 0, segmentSize, pcs, &p, &scratch, parts[:0], hints[:0])
	}
}
