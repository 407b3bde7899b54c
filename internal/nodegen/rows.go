package nodegen

import (
	"encoding/binary"
	"math/bits"
	"strings"
)

// The uncompressed content of Data.db is a synthetic row stream shaped like
// Cassandra's 3.0+ storage format, close enough for compressors and
// chunkers to behave as on real data (perf-anchors §1 "row data"):
//
//	partition: u16 key length (16) | 16 random key bytes | deletion time (i32 0x7fffffff, i64 MIN)
//	row:       flags | u16 row-body size | vint timestamp delta | vint clustering (Cassandra vints)
//	           | per text column: vint length + words from a 256-word vocabulary
//	           | per int column: 8 bytes big-endian of a small number
//	           | optional blob: vint length + random bytes (BlobPercent of rows)
//	end:       0x01 (end of partition)
//
// Nothing parses it back. It is produced in independent segments of
// segmentSize bytes, each from its own seed, so segments generate in
// parallel and any byte range can be regenerated (Compact relies on this).
// A segment is cut at exactly segmentSize bytes, usually inside a row; the
// next segment starts a new partition.

const (
	segmentSize = 1 << 20
	// rowSlack bounds how far one row may run past the requested length
	// before the cut; buffers carry this much spare capacity.
	rowSlack = 8 << 10
)

// profile describes the rows of one table.
type profile struct {
	rowsMean int // rows per partition, mean; 1..rowsMean*2-1 uniformly
	textCols int // 0..4
	wordsMax int // words per text value, 1..wordsMax
	intCols  int // 0..6
	blobPct  int // percentage of rows with a random blob
	blobMax  int // blob length, 16..blobMax (<= 2048)
}

// partition is one partition that starts in a generated range.
type partition struct {
	key  [16]byte
	pos  int64 // offset of its first byte in the SSTable's uncompressed payload
	rows int32
}

// vocabulary holds 256 words of 3 to 12 bytes; vocabWords has them padded
// to 16 bytes so that writing one is two 8-byte stores, not a copy call.
var vocabulary = func() [256]string {
	base := strings.Fields(`account active address agent alpha amount android api app archive
		audit balance batch beta browser bucket cache campaign cart channel checkout chrome city
		click client cluster code comment config country coupon credit currency customer
		dashboard data debit delta desktop device discount domain email error event export
		feature firefox gamma gateway history home inbox info invoice ios item`)
	suffix := []string{"", "s", "_id", "ed"}
	var v [256]string
	for i := range v {
		v[i] = base[i%len(base)] + suffix[(i/len(base))%len(suffix)]
	}
	return v
}()

var vocabWords = func() (w [256]struct {
	lo, hi uint64
	n      int
}) {
	for i, s := range vocabulary {
		var b [16]byte
		copy(b[:], s)
		w[i].lo = binary.LittleEndian.Uint64(b[:8])
		w[i].hi = binary.LittleEndian.Uint64(b[8:])
		w[i].n = len(s)
	}
	return w
}()

// A hint tells the compressor what the generator knows about a run of
// payload bytes: that it repeats earlier content of the same kind (a
// vocabulary word, a partition's constant deletion time, a run of zero
// bytes), or that it is random (a blob). The compressor then emits a
// back-reference or a stored block without searching; see
// compressor.deflate.
//
// Layout: position (relative to the buffer being filled) << 32 | kind << 16
// | length.
type hint uint64

const (
	hintSpace    = 256 // + word: the word preceded by a space
	hintDeletion = 512 // the 12-byte "live" deletion time of a partition
	hintZeros    = 520 // + n: n zero bytes
	hintRandom   = 529 // random bytes, not worth compressing
	hintKinds    = 530
	hintMinLen   = 4 // shorter back-references do not pay off
)

func mkHint(pos, kind, n int) hint { return hint(uint64(pos)<<32 | uint64(kind)<<16 | uint64(n)) }

func (h hint) pos() int  { return int(h >> 32) }
func (h hint) kind() int { return int(h>>16) & 0xffff }
func (h hint) len() int  { return int(h & 0xffff) }

// genSegment appends exactly n bytes of the row stream for one segment to
// dst[:0] and returns them with the partitions that start inside them and
// the hints that lie entirely inside them (positions offset by hintOff).
// It may write up to rowSlack bytes past n inside dst's capacity. base is
// the payload offset of the segment's first byte, for partition positions.
func genSegment(dst []byte, n int, seed uint64, p *profile, base int64, parts []partition, hints []hint, hintOff int) ([]byte, []partition, []hint) {
	if cap(dst) < n+rowSlack {
		dst = make([]byte, 0, n+rowSlack)
	}
	buf := dst[:cap(dst)]
	r := rng{s: seed}
	off := 0
	for off < n {
		var pt partition
		pt.pos = base + int64(off)
		binary.BigEndian.PutUint64(pt.key[0:], r.next())
		binary.BigEndian.PutUint64(pt.key[8:], r.next())
		binary.BigEndian.PutUint16(buf[off:], 16)
		copy(buf[off+2:], pt.key[:])
		binary.BigEndian.PutUint32(buf[off+18:], 0x7fffffff)
		binary.BigEndian.PutUint64(buf[off+22:], 1<<63)
		hints = append(hints, mkHint(hintOff+off+18, hintDeletion, 12))
		off += 30
		nrows := 1
		if p.rowsMean > 1 {
			nrows = 1 + r.intn(2*p.rowsMean-1)
		}
		for i := 0; i < nrows && off < n; i++ {
			x := r.next()
			start := off
			buf[off] = 0x24 // HAS_TIMESTAMP | HAS_ALL_COLUMNS
			off += 3        // flags + 2-byte body size, filled in below
			off += putVint(buf[off:], x&0xfffff)
			off += putVint(buf[off:], uint64(i))
			for c := 0; c < p.textCols; c++ {
				w := r.next()
				words := 1 + int(w%uint64(p.wordsMax))
				w >>= 8
				lenAt := off
				off++
				for j := 0; j < words; j++ {
					if j%7 == 6 {
						w = r.next()
					}
					word := &vocabWords[w&0xff]
					kind := int(w & 0xff)
					at := off
					if j > 0 {
						buf[off] = ' '
						off++
						kind += hintSpace
					}
					binary.LittleEndian.PutUint64(buf[off:], word.lo)
					binary.LittleEndian.PutUint64(buf[off+8:], word.hi)
					off += word.n
					if off-at >= hintMinLen {
						hints = append(hints, mkHint(hintOff+at, kind, off-at))
					}
					w >>= 8
				}
				// At most 9 words of at most 12 bytes: one length byte.
				buf[lenAt] = byte(off - lenAt - 1)
			}
			for c := 0; c < p.intCols; c++ {
				// Counters and sizes: mostly small, a few large.
				v := r.next()
				v >>= 40 + v&15
				binary.BigEndian.PutUint64(buf[off:], v)
				if z := bits.LeadingZeros64(v) / 8; z >= hintMinLen {
					hints = append(hints, mkHint(hintOff+off, hintZeros+z, z))
				}
				off += 8
			}
			if p.blobPct > 0 && int(x>>32%100) < p.blobPct {
				bl := 16 + int(x>>40)%(p.blobMax-15)
				off += putVint(buf[off:], uint64(bl))
				hints = append(hints, mkHint(hintOff+off, hintRandom, bl))
				for j := 0; j < bl; j += 8 {
					binary.LittleEndian.PutUint64(buf[off+j:], r.next())
				}
				off += bl
			}
			binary.BigEndian.PutUint16(buf[start+1:], uint16(off-start-3))
			pt.rows++
		}
		buf[off] = 0x01
		off++
		parts = append(parts, pt)
	}
	// Drop hints cut by the segment's end.
	for len(hints) > 0 {
		if h := hints[len(hints)-1]; h.pos()+h.len() > hintOff+n {
			hints = hints[:len(hints)-1]
			continue
		}
		break
	}
	return buf[:n], parts, hints
}

// piece is one independently generated row stream (what one flush wrote).
// An SSTable's payload is its pieces joined end to end: one piece for a
// flush, the inputs' pieces for a compaction.
type piece struct {
	seed   uint64
	length int64
}

func segmentSeed(p piece, i int64) uint64 { return derive(p.seed, i) }

// fillRange writes payload bytes [a, b) of an SSTable made of pieces into
// dst[:0] (reallocated unless its capacity is >= b-a+rowSlack) and returns
// the partitions starting inside the range and the hints inside it
// (positions relative to the returned slice). scratch is reused.
func fillRange(dst []byte, a, b int64, pieces []piece, prof *profile, scratch *[]byte, parts []partition, hints []hint) ([]byte, []partition, []hint) {
	if int64(cap(dst)) < b-a+rowSlack {
		dst = make([]byte, 0, b-a+rowSlack)
	}
	out := dst[:0]
	var start int64 // payload offset of the current piece
	for _, pc := range pieces {
		end := start + pc.length
		if end <= a || start >= b {
			start = end
			continue
		}
		pa, pb := max(a, start)-start, min(b, end)-start // range within the piece
		for si := pa / segmentSize; si*segmentSize < pb; si++ {
			segA := si * segmentSize
			segN := min(segmentSize, pc.length-segA)
			lo, hi := max(pa, segA), min(pb, segA+segN)
			if lo == segA && hi == segA+segN {
				// Whole segment: generate in place; the slack written past
				// its end is overwritten by what follows.
				var got []byte
				got, parts, hints = genSegment(out[len(out):len(out):cap(out)], int(segN), segmentSeed(pc, si), prof, start+segA, parts, hints, len(out))
				out = out[:len(out)+len(got)]
				continue
			}
			seg, sp, sh := genSegment((*scratch)[:0], int(segN), segmentSeed(pc, si), prof, start+segA, nil, nil, 0)
			*scratch = seg[:0]
			shift := len(out) - int(lo-segA)
			out = append(out, seg[lo-segA:hi-segA]...)
			for _, q := range sp {
				if q.pos >= start+lo && q.pos < start+hi {
					parts = append(parts, q)
				}
			}
			for _, h := range sh {
				if p := h.pos(); p >= int(lo-segA) && p+h.len() <= int(hi-segA) {
					hints = append(hints, mkHint(p+shift, h.kind(), h.len()))
				}
			}
		}
		start = end
	}
	return out, parts, hints
}
