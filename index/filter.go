package index

import (
	"encoding/binary"
	"math/bits"

	"github.com/cassback/cassback/chunk"
)

// An index file's filter is a blocked Bloom filter of its chunk IDs: blocks
// of 512 bits, filterBitsPerEntry bits a chunk, and each chunk sets
// filterK bits of the one block its ID picks, so a probe reads one 64-byte
// block. Chunk IDs are BLAKE3 hashes, so their bytes serve as the hash
// functions: bytes 0–7 pick the block, bytes 8–29 the bits. A backup
// probes every other host's filter for each chunk it has not loaded (by
// region, layout.go), and a false "maybe" reads one bucket of that file
// (about 19 KB), so the rate
// is set against files × lookups and the bytes a new node downloads (the
// filter is most of a file's head): at 20 bits a chunk it is about 2 in
// 10,000 (TestFilterFalsePositives), so a new 256 MiB node (about 650
// lookups) probing the 1,700 files of a 100-host store reads about 220
// buckets for nothing, 4 MB, against 76 MB of filters. A filter only tells
// a backup which buckets of other hosts' index files to read: a wrong
// answer costs a read or an upload, never data.
const (
	filterBitsPerEntry = 20
	filterBlock        = 64
	filterK            = 11
)

// filterLen is the length of the filter of n chunks.
func filterLen(n int) int {
	return (n*filterBitsPerEntry + 8*filterBlock - 1) / (8 * filterBlock) * filterBlock
}

// filterBlockIndex returns the block of a filter of nf bytes that id picks.
func filterBlockIndex(nf int64, id chunk.ID) int64 {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(id[:8]), uint64(nf/filterBlock))
	return int64(hi)
}

func filterBlockOf(f []byte, id chunk.ID) []byte {
	return f[filterBlockIndex(int64(len(f)), id)*filterBlock:][:filterBlock]
}

func filterBit(id chunk.ID, i int) uint16 {
	return binary.LittleEndian.Uint16(id[8+2*i:]) & (8*filterBlock - 1)
}

// filterAdd adds id to the filter f.
func filterAdd(f []byte, id chunk.ID) {
	b := filterBlockOf(f, id)
	for i := range filterK {
		bit := filterBit(id, i)
		b[bit>>3] |= 1 << (bit & 7)
	}
}

// filterHas reports whether id may be in f (an empty filter holds nothing).
func filterHas(f []byte, id chunk.ID) bool {
	if len(f) < filterBlock {
		return false
	}
	return blockHas(filterBlockOf(f, id), id)
}

// blockHas reports whether id may be in its block b of a filter.
func blockHas(b []byte, id chunk.ID) bool {
	for i := range filterK {
		bit := filterBit(id, i)
		if b[bit>>3]&(1<<(bit&7)) == 0 {
			return false
		}
	}
	return true
}
