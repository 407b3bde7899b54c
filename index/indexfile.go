package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"slices"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// Index file layout (format 3), all integers little-endian:
//
//	magic "CBIDX003"
//	nEntries u32, nFilter u32, nBuckets u32
//	filter:  nFilter bytes, filterLen(nEntries): a Bloom filter of the entries' IDs (filter.go)
//	buckets: nBuckets × { end u32, sum [8]byte }
//	entries: nEntries × { id [32]byte, pack [32]byte, packSize u32, off u32, len u32 }   76 bytes each
//	sum [32]byte   BLAKE3 of everything before it
//
// Entries are sorted by chunk ID (then pack and offset) and cut into
// nBuckets buckets (a power of two, about bucketTarget entries each) by the
// leading bits of the ID: bucket b ends before entry end[b], and its sum is
// the first 8 bytes of the BLAKE3 of its entries' bytes. The head (header,
// filter and bucket table) is what a backup reads of other hosts' files
// (lazy.go): one ranged read of headLen bytes, about 2.6 bytes a chunk. A
// lookup the filter says "maybe" to reads one bucket, checked by its sum,
// with every entry whole (its pack's ID and size too), so one ranged read
// answers it.
//
// An index file is stored under Key(host, sum): its name is its checksum,
// so a cached copy can always be verified, and it is written once.
const (
	idxMagic      = "CBIDX003"
	idxHeader     = len(idxMagic) + 12
	idxBucketSize = 12
	idxEntrySize  = 76
	bucketTarget  = 256
)

// MaxFileSize bounds an index file read from the store or the cache: a
// larger one is damaged, and not read. A Writer starts a new index file
// after splitEntries entries, and a pack holds at most pack.MaxChunks
// (the same number), so an index file it makes has at most 262,144
// entries: fileSize of them is 20.8 MiB. At this bound every command
// stays under 256 MiB (TestRSSAtObjectLimits in cmd/cassback).
const MaxFileSize = 24 << 20

// maxFileEntries is the most entries a file of MaxFileSize can hold.
const maxFileEntries = MaxFileSize / idxEntrySize

// splitEntries is how many entries a Writer puts in one index file before
// it starts another (a pack is never split): about 1 TiB of chunks at the
// default mean chunk.
const splitEntries = pack.MaxChunks

// bucketsFor is the number of buckets of a file of n entries: the least
// power of two that leaves at most bucketTarget entries a bucket on
// average, at least one.
func bucketsFor(n int) int {
	b := 1
	for b*bucketTarget < n {
		b *= 2
	}
	return b
}

// headLen is the length of the head (header, filter, bucket table) of a
// file of n entries; fileSize is the length of the whole file.
func headLen(n int) int64 {
	return int64(idxHeader) + int64(filterLen(n)) + int64(bucketsFor(n))*idxBucketSize
}

func fileSize(n int) int64 { return headLen(n) + int64(n)*idxEntrySize + 32 }

// entriesIn returns the number of entries of an index file of size bytes,
// or -1 when no number of entries makes that size: fileSize grows with n,
// so it is found by bisection.
func entriesIn(size int64) int {
	lo, hi := 0, maxFileEntries
	for lo < hi {
		m := (lo + hi) / 2
		if fileSize(m) < size {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if fileSize(lo) != size {
		return -1
	}
	return lo
}

// bucketOf returns the bucket of id in a file of nb buckets: its leading
// bits, so that buckets follow the entries' order.
func bucketOf(id chunk.ID, nb int) int {
	if nb <= 1 {
		return 0
	}
	return int(binary.BigEndian.Uint64(id[:8]) >> (65 - bits.Len(uint(nb))))
}

func bucketSum(b []byte) [8]byte {
	s := chunk.Sum(b)
	return [8]byte(s[:8])
}

// Key is the store key of an index file written by host.
func Key(host string, sum chunk.ID) string { return "index/" + host + "/" + sum.String() }

// PackRecord is one durable pack and its chunks, the unit index files list.
type PackRecord struct {
	ID      chunk.ID
	Size    int64
	Entries []pack.Entry
}

// fileEntry is one entry of an index file: a chunk and where it is.
type fileEntry struct {
	pack.Entry
	pack chunk.ID
	size int64
}

func compareFileEntries(a, b fileEntry) int {
	if c := bytes.Compare(a.ID[:], b.ID[:]); c != 0 {
		return c
	}
	if c := bytes.Compare(a.pack[:], b.pack[:]); c != 0 {
		return c
	}
	return int(a.Off) - int(b.Off)
}

// EncodeFile encodes packs into an index file and returns it with its
// checksum, which names it (Key). A pack without entries is left out.
func EncodeFile(packs []PackRecord) ([]byte, chunk.ID) {
	var all []fileEntry
	for _, p := range packs {
		for _, e := range p.Entries {
			all = append(all, fileEntry{e, p.ID, p.Size})
		}
	}
	slices.SortFunc(all, compareFileEntries)
	n := len(all)
	nf, nb := filterLen(n), bucketsFor(n)
	b := make([]byte, 0, fileSize(n))
	b = append(b, idxMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(nf))
	b = binary.LittleEndian.AppendUint32(b, uint32(nb))
	b = append(b, make([]byte, nf+nb*idxBucketSize)...)
	filter := b[idxHeader : idxHeader+nf]
	table := b[idxHeader+nf:]
	start := len(b)
	for i, a := range all {
		filterAdd(filter, a.ID)
		b = append(b, a.ID[:]...)
		b = append(b, a.pack[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(a.size))
		b = binary.LittleEndian.AppendUint32(b, a.Off)
		b = binary.LittleEndian.AppendUint32(b, a.Len)
		if i == n-1 || bucketOf(all[i+1].ID, nb) != bucketOf(a.ID, nb) {
			// The bucket of a ends here; empty buckets before it end
			// where the previous one did.
			bk := bucketOf(a.ID, nb)
			sum := bucketSum(b[start:])
			binary.LittleEndian.PutUint32(table[bk*idxBucketSize:], uint32(i+1))
			copy(table[bk*idxBucketSize+4:], sum[:])
			start = len(b)
		}
	}
	// Buckets with no entries end where the one before them ended.
	end := uint32(0)
	for bk := range nb {
		if e := binary.LittleEndian.Uint32(table[bk*idxBucketSize:]); e > end {
			end = e
		} else if e == 0 {
			binary.LittleEndian.PutUint32(table[bk*idxBucketSize:], end)
			sum := bucketSum(nil)
			copy(table[bk*idxBucketSize+4:], sum[:])
		}
	}
	sum := chunk.Sum(b)
	return append(b, sum[:]...), sum
}

// DecodeFile checks and decodes an index file. It never panics on
// hostile input; its errors match ErrDamaged.
func DecodeFile(b []byte) ([]PackRecord, error) {
	recs, err := decodeFile(b)
	if err != nil {
		return nil, damaged{err}
	}
	return recs, nil
}

func decodeFile(b []byte) ([]PackRecord, error) {
	if len(b) < idxHeader+32 {
		return nil, errors.New("index file: too short")
	}
	body, tail := b[:len(b)-32], b[len(b)-32:]
	if chunk.Sum(body) != chunk.ID(tail) {
		return nil, errors.New("index file: checksum mismatch")
	}
	h, err := decodeHead(body, int64(len(b)))
	if err != nil {
		return nil, err
	}
	all := make([]fileEntry, 0, h.n)
	for bk := range h.buckets() {
		lo, hi := h.bucketRange(bk)
		if all, err = h.decodeBucket(all, bk, body[headLen(h.n)+int64(lo)*idxEntrySize:headLen(h.n)+int64(hi)*idxEntrySize]); err != nil {
			return nil, err
		}
	}
	// Group by pack, packs in the order of their first entry, each pack's
	// entries allocated at their number, counted first.
	byPack := map[chunk.ID]int{}
	var packs []PackRecord
	var counts []int
	for _, e := range all {
		i, ok := byPack[e.pack]
		if !ok {
			i = len(packs)
			byPack[e.pack] = i
			packs = append(packs, PackRecord{ID: e.pack, Size: e.size})
			counts = append(counts, 0)
		}
		if packs[i].Size != e.size {
			return nil, fmt.Errorf("index file: pack %s given sizes %d and %d", e.pack, packs[i].Size, e.size)
		}
		counts[i]++
	}
	for i := range packs {
		packs[i].Entries = make([]pack.Entry, 0, counts[i])
	}
	for _, e := range all {
		i := byPack[e.pack]
		packs[i].Entries = append(packs[i].Entries, e.Entry)
	}
	for i := range packs {
		slices.SortFunc(packs[i].Entries, func(a, b pack.Entry) int { return int(a.Off) - int(b.Off) })
	}
	return packs, nil
}

// head is the decoded head of an index file: its entry count, filter and
// bucket table.
type head struct {
	n      int
	filter []byte
	table  []byte
}

func (h head) buckets() int { return len(h.table) / idxBucketSize }

// bucketRange returns the entries of bucket bk: [lo, hi).
func (h head) bucketRange(bk int) (lo, hi int) {
	if bk > 0 {
		lo = int(binary.LittleEndian.Uint32(h.table[(bk-1)*idxBucketSize:]))
	}
	return lo, int(binary.LittleEndian.Uint32(h.table[bk*idxBucketSize:]))
}

// decodeHead decodes the head of an index file of size bytes from its
// first bytes (at least headLen), checking that the counts match the size
// and the bucket table is in order. The head is not checked against the
// file's checksum, which needs the whole file: a damaged filter costs a
// read or an upload, never data, and each bucket is checked by its sum.
func decodeHead(b []byte, size int64) (head, error) {
	if len(b) < idxHeader {
		return head{}, errors.New("index file: too short")
	}
	if string(b[:len(idxMagic)]) != idxMagic {
		return head{}, errors.New("index file: bad magic")
	}
	n := int64(binary.LittleEndian.Uint32(b[8:]))
	nf := int64(binary.LittleEndian.Uint32(b[12:]))
	nb := int64(binary.LittleEndian.Uint32(b[16:]))
	if n > maxFileEntries || nf != int64(filterLen(int(n))) || nb != int64(bucketsFor(int(n))) {
		return head{}, fmt.Errorf("index file: a filter of %d bytes and %d buckets for %d entries", nf, nb, n)
	}
	if fileSize(int(n)) != size {
		return head{}, fmt.Errorf("index file: %d bytes do not hold %d entries", size, n)
	}
	hl := headLen(int(n))
	if int64(len(b)) < hl {
		return head{}, errors.New("index file: shorter than its head")
	}
	h := head{n: int(n), filter: b[idxHeader : int64(idxHeader)+nf], table: b[int64(idxHeader)+nf : hl]}
	prev := 0
	for bk := range h.buckets() {
		lo, hi := h.bucketRange(bk)
		if lo != prev || hi < lo || hi > h.n {
			return head{}, errors.New("index file: bucket table out of order")
		}
		prev = hi
	}
	if prev != h.n {
		return head{}, errors.New("index file: bucket table does not end at the last entry")
	}
	return h, nil
}

// decodeBucket checks and decodes the bytes of bucket bk, appending its
// entries to dst.
func (h head) decodeBucket(dst []fileEntry, bk int, b []byte) ([]fileEntry, error) {
	lo, hi := h.bucketRange(bk)
	return decodeBucket(dst, bk, h.buckets(), lo, hi, [8]byte(h.table[bk*idxBucketSize+4:][:8]), b)
}

// decodeBucket checks and decodes the bytes of bucket bk of nb, entries
// [lo, hi) of its file: against its sum, their order, that every entry
// belongs in it, and bounds. It appends them to dst.
func decodeBucket(dst []fileEntry, bk, nb, lo, hi int, sum [8]byte, b []byte) ([]fileEntry, error) {
	if len(b) != (hi-lo)*idxEntrySize {
		return nil, errors.New("index file: bucket of the wrong length")
	}
	if bucketSum(b) != sum {
		return nil, fmt.Errorf("index file: bucket %d fails its checksum", bk)
	}
	first := len(dst)
	dst = slices.Grow(dst, hi-lo)[:first+hi-lo]
	es := dst[first:]
	for i := range es {
		p := b[i*idxEntrySize:]
		e := &es[i]
		copy(e.ID[:], p[:32])
		copy(e.pack[:], p[32:64])
		e.size = int64(binary.LittleEndian.Uint32(p[64:]))
		e.Off = binary.LittleEndian.Uint32(p[68:])
		e.Len = binary.LittleEndian.Uint32(p[72:])
		switch {
		case bucketOf(e.ID, nb) != bk:
			return nil, errors.New("index file: entry in the wrong bucket")
		case i > 0 && compareFileEntries(es[i-1], *e) > 0 || i == 0 && first > 0 && compareFileEntries(dst[first-1], *e) > 0:
			return nil, errors.New("index file: entries not sorted")
		case e.size > MaxPackSize:
			return nil, fmt.Errorf("index file: pack size %d is more than %d", e.size, MaxPackSize)
		case e.Len > chunk.StoreMaxMaxSize:
			return nil, fmt.Errorf("index file: chunk length %d is more than %d", e.Len, chunk.StoreMaxMaxSize)
		case int64(e.Off)+int64(e.Len) > e.size:
			return nil, errors.New("index file: entry beyond its pack")
		}
	}
	return dst, nil
}

// ReadFile reads, checks and decodes the index file stored under key: its
// name must be its checksum. Not found wraps fs.ErrNotExist. It states the
// object first: one larger than MaxFileSize is damaged, and not read.
func ReadFile(ctx context.Context, st remote.Store, key string) ([]PackRecord, error) {
	b, err := readObject(ctx, st, key, -1)
	if err != nil {
		return nil, err
	}
	return decodeNamed(key, b)
}

// ReadListed reads the index file a listing gave as ReadFile does (the
// listed size is believed until the bytes say otherwise), from the cache
// folder cache — the one Load keeps, nil for none — when it holds a copy
// that matches the file's name; a file read from the store is cached. A
// cached copy is the file: its name is its checksum.
func ReadListed(ctx context.Context, st remote.Store, cache *os.Root, info remote.Info) ([]PackRecord, error) {
	packs, _, err := readIndexFile(ctx, st, cache, info)
	return packs, err
}

// CacheFile keeps the index file b, stored under key, in the cache folder
// cache (nil for none), best effort.
func CacheFile(cache *os.Root, key string, b []byte) { writeCache(cache, key, b) }

// PruneCache removes from the cache folder the copies of index files (and
// their heads) that listed does not name, keyed by store key: what a
// complete listing of index/ no longer holds was compacted, merged or
// swept away, and would otherwise stay in the folder for good. A copy
// written meanwhile by another process for a file written after the
// listing is removed too, which costs that file one read later.
func PruneCache(cache *os.Root, listed map[string]bool) {
	if cache == nil {
		return
	}
	_ = fs.WalkDir(cache.FS(), "index", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		key := strings.TrimSuffix(p, ".head")
		if !listed[key] {
			_ = cache.Remove(p)
		}
		return nil
	})
}

// ErrDamaged is matched (errors.Is) by the errors of ReadFile and
// DecodeFile for bytes that are not a valid index file or do not match the
// file's name, as opposed to a failure to read them.
var ErrDamaged = errors.New("damaged index file")

// damaged marks a decoding error as ErrDamaged without changing its text.
type damaged struct{ error }

func (d damaged) Is(target error) bool { return target == ErrDamaged }
func (d damaged) Unwrap() error        { return d.error }

// decodeNamed decodes an index file and checks that key names its checksum.
func decodeNamed(key string, b []byte) ([]PackRecord, error) {
	recs, err := DecodeFile(b)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(key, "/"+chunk.ID(b[len(b)-32:]).String()) {
		return nil, damaged{errors.New("index file: name does not match its checksum")}
	}
	return recs, nil
}
