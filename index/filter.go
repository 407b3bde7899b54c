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
// functions: bytes 0–7 pick the block, bytes 8–31 the bits. A backup
// probes every other host's filter for each chunk it has not loaded, and a
// false "maybe" reads that file whole, so the rate must be small against
// files × lookups: at 24 bits a chunk it is about 6 in 100,000
// (TestFilterFalsePositives); a new 256 MiB node (about 650 lookups)
// probing the 1,700 files of a 100-host store read 14 files whole, true
// hits among them (docs/benchmarks.md, "Index filters"). A filter only
// tells a backup which other hosts' index files to read whole: a wrong
// answer costs a read or an upload, never data.
const (
	filterBitsPerEntry = 24
	filterBlock        = 64
	filterK            = 12
)

// filterLen is the length of the filter of n chunks.
func filterLen(n int) int {
	return (n*filterBitsPerEntry + 8*filterBlock - 1) / (8 * filterBlock) * filterBlock
}

func filterBlockOf(f []byte, id chunk.ID) []byte {
	nb := uint64(len(f) / filterBlock)
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(id[:8]), nb)
	return f[hi*filterBlock:][:filterBlock]
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
	b := filterBlockOf(f, id)
	for i := range filterK {
		bit := filterBit(id, i)
		if b[bit>>3]&(1<<(bit&7)) == 0 {
			return false
		}
	}
	return true
}
