package nodegen

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"strings"
)

// The encoders below mimic the layout of the real components (see
// shared/testdata/cassandra-sstables, read with xxd) closely enough that
// sizes, headers and checksums look right; contents that only Cassandra
// interprets (trie nodes, HyperLogLog registers) are deterministic stand-ins.

// Bloom filter parameters for bloom_filter_fp_chance 0.01: Cassandra's
// BloomCalculations settle on 10 buckets per key and 5 hashes, plus 20
// spare bits (BloomFilter EXCESS).
const (
	bloomBucketsPerKey = 10
	bloomHashes        = 5
	bloomExcess        = 20

	summaryInterval = 128 // min_index_interval
	bigRowIndexRows = 32  // BTI: partitions with this many rows get a Rows.db entry
)

// enc is a growing big-endian byte buffer (Java's DataOutput).
type enc struct{ b []byte }

func (e *enc) u8(v byte)      { e.b = append(e.b, v) }
func (e *enc) u16(v uint16)   { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) i32(v int32)    { e.b = binary.BigEndian.AppendUint32(e.b, uint32(v)) }
func (e *enc) i64(v int64)    { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *enc) f64(v float64)  { e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *enc) uvint(v uint64) { e.b = appendVint(e.b, v) }
func (e *enc) bytes(p []byte) { e.b = append(e.b, p...) }
func (e *enc) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// appendVint appends v in Cassandra's unsigned vint encoding
// (VIntCoding.writeUnsignedVInt): 1 to 9 bytes, big-endian, the first
// byte's leading one bits counting the bytes that follow.
func appendVint(b []byte, v uint64) []byte {
	var tmp [9]byte
	return append(b, tmp[:putVint(tmp[:], v)]...)
}

// putVint writes v as a Cassandra unsigned vint into b and returns its length.
func putVint(b []byte, v uint64) int {
	size := (639 - bits.LeadingZeros64(v|1)*9) >> 6
	switch size {
	case 1:
		b[0] = byte(v)
	case 9:
		b[0] = 0xff
		binary.BigEndian.PutUint64(b[1:], v)
	default:
		for i := size - 1; i >= 0; i-- {
			b[i] = byte(v)
			v >>= 8
		}
		b[0] |= ^byte(0xff >> (size - 1))
	}
	return size
}

// utf is Java's writeUTF: u16 length, then the (ASCII here) bytes.
func (e *enc) utf(s string) { e.u16(uint16(len(s))); e.b = append(e.b, s...) }

// vstr is Cassandra's vint-length-prefixed string.
func (e *enc) vstr(s string) { e.uvint(uint64(len(s))); e.b = append(e.b, s...) }

// histOffsets are EstimatedHistogram bucket bounds: 1, 2, 3, ... growing by
// 20% per bucket.
func histOffsets(size int) []int64 {
	offs := make([]int64, size)
	last := int64(1)
	offs[0] = 1
	for i := 1; i < size; i++ {
		next := int64(math.Round(float64(last) * 1.2))
		if next == last {
			next++
		}
		offs[i] = next
		last = next
	}
	return offs
}

var (
	partSizeOffsets = histOffsets(150) // estimatedPartitionSize
	cellCountOffset = histOffsets(114) // estimatedCellPerPartitionCount
)

func histBucket(offs []int64, v int64) int {
	return sort.Search(len(offs), func(i int) bool { return offs[i] >= v })
}

func (e *enc) hist(offs []int64, counts []int64) {
	e.i32(int32(len(counts)))
	for i, c := range counts {
		e.i64(offs[max(i-1, 0)])
		e.i64(c)
	}
}

// indexWriter receives the partitions of one SSTable in payload order and
// writes the partition index as it goes (Index.db for BIG, Partitions.db and
// Rows.db for BTI), collecting what Summary, Filter and Statistics need.
type indexWriter struct {
	t      *traits
	index  *bufio.Writer // Index.db or Partitions.db
	rowIdx *bufio.Writer // Rows.db (BTI)
	pos    int64         // bytes written to index
	rowPos int64         // bytes written to rowIdx

	count       int64
	rows        int64
	first, last [16]byte
	prevPos     int64
	prevRows    int32

	sumEntries []byte   // Summary.db entries: key + LE index position
	sumOffsets []uint32 // LE offsets of the entries

	filter []uint64

	partSizes  []int64
	cellCounts []int64
	cells      int // cells per row, for the cell-count histogram
	scratch    enc
}

func newIndexWriter(t *traits, index, rowIdx *bufio.Writer, estKeys int64, cellsPerRow int) *indexWriter {
	bitsN := estKeys*bloomBucketsPerKey + bloomExcess
	return &indexWriter{
		t: t, index: index, rowIdx: rowIdx,
		filter:     make([]uint64, (bitsN+63)/64),
		partSizes:  make([]int64, len(partSizeOffsets)+1),
		cellCounts: make([]int64, len(cellCountOffset)+1),
		cells:      max(cellsPerRow, 1),
	}
}

func (w *indexWriter) add(p partition) error {
	if w.count > 0 {
		w.closePartition(p.pos)
	} else {
		w.first = p.key
	}
	w.last, w.prevPos, w.prevRows = p.key, p.pos, p.rows
	w.rows += int64(p.rows)

	// Bloom filter: double hashing over the key's two halves, as
	// Cassandra does over Murmur3's two longs.
	if nbits := uint64(len(w.filter)) * 64; nbits > 0 {
		h1 := binary.LittleEndian.Uint64(p.key[:8])
		h2 := binary.LittleEndian.Uint64(p.key[8:])
		for i := uint64(0); i < bloomHashes; i++ {
			b := (h1 + i*h2) % nbits
			w.filter[b/64] |= 1 << (b % 64)
		}
	}

	e := &w.scratch
	e.b = e.b[:0]
	switch {
	case w.t.format == "bti":
		// A stand-in for a trie leaf: node type, a distinguishing key
		// prefix, the Data.db position (or Rows.db position if wide).
		e.u8(0x20 | byte(p.key[0]&0x0f))
		e.bytes(p.key[:2])
		if p.rows >= bigRowIndexRows {
			e.u8(0x80)
			e.uvint(uint64(w.rowPos))
			if err := w.writeRowIndex(p); err != nil {
				return err
			}
		} else {
			e.uvint(uint64(p.pos))
		}
	case w.t.vintIndex:
		if w.count%summaryInterval == 0 {
			w.summarize(p.key)
		}
		e.u16(16)
		e.bytes(p.key[:])
		e.uvint(uint64(p.pos))
		e.uvint(0) // no promoted (column) index
	default:
		if w.count%summaryInterval == 0 {
			w.summarize(p.key)
		}
		e.u16(16)
		e.bytes(p.key[:])
		e.i64(p.pos)
		e.i32(0)
	}
	w.count++
	n, err := w.index.Write(e.b)
	w.pos += int64(n)
	return err
}

func (w *indexWriter) summarize(key [16]byte) {
	w.sumOffsets = append(w.sumOffsets, uint32(len(w.sumEntries)))
	w.sumEntries = append(w.sumEntries, key[:]...)
	w.sumEntries = binary.LittleEndian.AppendUint64(w.sumEntries, uint64(w.pos))
}

// writeRowIndex writes a BTI row-index block for a wide partition: a
// header and one separator per 16 rows.
func (w *indexWriter) writeRowIndex(p partition) error {
	var e enc
	e.uvint(uint64(p.pos))
	e.i32(int32(p.rows / 16))
	for i := int32(0); i < p.rows/16; i++ {
		e.u8(0x10)
		e.bytes(p.key[i%16 : i%16+1])
		e.uvint(uint64(i) * 977)
	}
	n, err := w.rowIdx.Write(e.b)
	w.rowPos += int64(n)
	return err
}

func (w *indexWriter) closePartition(next int64) {
	w.partSizes[histBucket(partSizeOffsets, next-w.prevPos)]++
	w.cellCounts[histBucket(cellCountOffset, int64(w.prevRows)*int64(w.cells))]++
}

// finish accounts for the last partition and writes the index trailer.
func (w *indexWriter) finish(dataLength int64) error {
	if w.count > 0 {
		w.closePartition(dataLength)
	}
	if w.t.format == "bti" {
		var e enc
		e.u16(16)
		e.bytes(w.first[:])
		e.u16(16)
		e.bytes(w.last[:])
		e.i64(w.count)
		e.i64(max(w.pos-1, 0)) // root node position
		n, err := w.index.Write(e.b)
		w.pos += int64(n)
		if err != nil {
			return err
		}
		if err := w.rowIdx.Flush(); err != nil {
			return err
		}
	}
	return w.index.Flush()
}

// summaryBytes is Summary.db (BIG): header, LE entry offsets, entries, then
// the first and last keys.
func (w *indexWriter) summaryBytes() []byte {
	var e enc
	n := len(w.sumOffsets)
	e.i32(summaryInterval)
	e.i32(int32(n))
	e.i64(int64(4*n + len(w.sumEntries))) // off-heap size
	e.i32(128)                            // sampling level (full)
	e.i32(int32(n))                       // size at full sampling
	for _, o := range w.sumOffsets {
		e.b = binary.LittleEndian.AppendUint32(e.b, o+uint32(4*n))
	}
	e.bytes(w.sumEntries)
	e.i32(16)
	e.bytes(w.first[:])
	e.i32(16)
	e.bytes(w.last[:])
	return e.b
}

// filterBytes is Filter.db: hash count, number of longs, the bit set.
func (w *indexWriter) filterBytes() []byte {
	var e enc
	e.i32(bloomHashes)
	e.i32(int32(len(w.filter)))
	for _, x := range w.filter {
		e.i64(int64(x))
	}
	return e.b
}

// compressionInfo is CompressionInfo.db: compressor class, options, chunk
// length, [max compressed length], uncompressed length, chunk offsets.
func compressionInfo(t *traits, chunk int, dataLength int64, offsets []int64) []byte {
	var e enc
	e.utf("DeflateCompressor")
	e.i32(0) // no options
	e.i32(int32(chunk))
	if t.maxCompLen {
		e.i32(math.MaxInt32) // min_compress_ratio 0: always compressed
	}
	e.i64(dataLength)
	e.i32(int32(len(offsets)))
	for _, o := range offsets {
		e.i64(o)
	}
	return e.b
}

// tocBytes is TOC.txt: one component per line, each ending in '\n'.
func tocBytes(order []string) []byte {
	return []byte(strings.Join(order, "\n") + "\n")
}

// digestBytes is the Digest component: the checksum in decimal ASCII, no
// newline (as in every real file).
func digestBytes(sum uint32) []byte { return []byte(strconv.FormatUint(uint64(sum), 10)) }

// statsParams is everything Statistics.db says about one SSTable. Level and
// repairedAt are what Cassandra rewrites in place (the mutable component).
type statsParams struct {
	partitions int64
	rows       int64
	dataLength int64
	compressed int64
	minTS      int64 // microseconds
	maxTS      int64
	partSizes  []int64
	cellCounts []int64
	level      int32
	repairedAt int64 // milliseconds, 0 = unrepaired
	hostID     [16]byte
	hll        uint64 // seed of the cardinality estimator's bytes
	schema     *schema
}

// statistics serializes Statistics.db: a table of contents of metadata
// components (VALIDATION, COMPACTION, STATS, and HEADER from 3.0), with a
// CRC-32 after the table and after each component from 4.0 (na).
func statistics(t *traits, s *statsParams) []byte {
	var comps [][]byte

	var v enc // VALIDATION
	v.utf("org.apache.cassandra.dht.Murmur3Partitioner")
	v.f64(0.01)
	comps = append(comps, v.b)

	var c enc // COMPACTION: HyperLogLog++ of partition keys
	if t.era < 30 {
		c.i32(0) // no ancestors
	}
	n := int(min(24+s.partitions/2, 10932))
	c.i32(int32(n))
	r := newRng(s.hll)
	reg := make([]byte, 0, n+8)
	for len(reg) < n {
		reg = binary.LittleEndian.AppendUint64(reg, r.next()&0x0f0f0f0f0f0f0f0f)
	}
	c.bytes(reg[:n])
	comps = append(comps, c.b)

	var st enc // STATS
	st.hist(partSizeOffsets, s.partSizes)
	st.hist(cellCountOffset, s.cellCounts)
	st.i64(1_700_000_000_000 + s.maxTS%1_000_000) // commit log segment id
	st.i32(int32(s.dataLength % 33554432))        // position in it
	st.i64(s.minTS)
	st.i64(s.maxTS)
	if t.era >= 30 {
		st.i32(math.MaxInt32) // min local deletion time
	}
	st.i32(math.MaxInt32) // max local deletion time
	if t.era >= 30 {
		st.i32(0) // min TTL
		st.i32(0) // max TTL
	}
	ratio := 1.0
	if s.dataLength > 0 {
		ratio = float64(s.compressed) / float64(s.dataLength)
	}
	st.f64(ratio)
	st.i32(100) // tombstone histogram: max bins
	st.i32(0)   // no tombstones
	st.i32(s.level)
	st.i64(s.repairedAt)
	st.i32(0) // min clustering values
	st.i32(0) // max clustering values
	st.bool(false)
	st.i64(s.rows * int64(len(s.schema.regular)))
	st.i64(s.rows)
	if t.era >= 30 {
		st.i32(1) // commit log intervals
		st.i64(1_700_000_000_000 + s.minTS%1_000_000)
		st.i32(0)
		st.i64(1_700_000_000_000 + s.maxTS%1_000_000)
		st.i32(int32(s.dataLength % 33554432))
	}
	if t.era >= 40 {
		st.bool(false) // no pending repair
		st.bool(false) // not transient
		st.bool(true)  // originating host id
		st.bytes(s.hostID[:])
	}
	comps = append(comps, st.b)

	if t.statsHeader {
		var h enc // HEADER: encoding stats and the schema's types
		h.uvint(uint64(s.minTS))
		h.uvint(0)
		h.uvint(0)
		h.vstr(s.schema.keyType)
		h.uvint(uint64(len(s.schema.clustering)))
		for _, c := range s.schema.clustering {
			h.vstr(c.marshal)
		}
		h.uvint(0) // static columns
		h.uvint(uint64(len(s.schema.regular)))
		for _, c := range s.schema.regular {
			h.vstr(c.name)
			h.vstr(c.marshal)
		}
		comps = append(comps, h.b)
	}

	var e enc
	e.i32(int32(len(comps)))
	if t.statsCRC {
		e.i32(int32(crc32.ChecksumIEEE(e.b)))
	}
	tocStart := len(e.b)
	offset := tocStart + 8*len(comps)
	if t.statsCRC {
		offset += 4
	}
	for i, c := range comps {
		e.i32(int32(i))
		e.i32(int32(offset))
		offset += len(c)
		if t.statsCRC {
			offset += 4
		}
	}
	if t.statsCRC {
		// The table's checksum runs over the count and the entries.
		crc := crc32.Update(crc32.ChecksumIEEE(e.b[:4]), crc32.IEEETable, e.b[tocStart:])
		e.i32(int32(crc))
	}
	for _, c := range comps {
		e.bytes(c)
		if t.statsCRC {
			e.i32(int32(crc32.ChecksumIEEE(c)))
		}
	}
	return e.b
}
