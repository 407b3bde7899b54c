package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// Index file layout (format 2), all integers little-endian:
//
//	magic "CBIDX002"
//	nPacks u32, nEntries u32, nFilter u32
//	filter:  nFilter bytes, filterLen(nEntries): a Bloom filter of the entries' IDs (filter.go)
//	packs:   nPacks × { id [32]byte, size u64 }                        40 bytes each
//	entries: nEntries × { id [32]byte, pack u32, off u32, len u32 }    44 bytes each, sorted by id
//	sum [32]byte   BLAKE3 of everything before it
//
// An index file is stored under Key(host, sum): its name is its checksum,
// so a cached copy can always be verified, and it is written once. The
// filter comes first so that a backup reads only it from other hosts'
// files (readFilter): one ranged read of the first filterBound bytes.
const (
	idxMagic     = "CBIDX002"
	idxHeader    = len(idxMagic) + 12
	idxPackSize  = 40
	idxEntrySize = 44
)

// MaxFileSize bounds an index file read from the store or the cache: a
// larger one is damaged, and not read. A Writer starts a new index file
// after splitEntries entries, and a pack holds at most pack.MaxChunks
// (the same number), so an index file it makes has at most 262,144
// entries of 44 bytes and as many packs of 40: 21 MiB. At this bound every
// command stays under 256 MiB (TestRSSAtObjectLimits in cmd/cassback).
const MaxFileSize = 24 << 20

// splitEntries is how many entries a Writer puts in one index file before
// it starts another (a pack is never split): about 1 TiB of chunks at the
// default mean chunk, 11 MiB to read and hold.
const splitEntries = pack.MaxChunks

// Key is the store key of an index file written by host.
func Key(host string, sum chunk.ID) string { return "index/" + host + "/" + sum.String() }

// PackRecord is one durable pack and its chunks, the unit index files list.
type PackRecord struct {
	ID      chunk.ID
	Size    int64
	Entries []pack.Entry
}

// EncodeFile encodes packs into an index file and returns it with its
// checksum, which names it (Key).
func EncodeFile(packs []PackRecord) ([]byte, chunk.ID) {
	type ent struct {
		e    pack.Entry
		pack uint32
	}
	var all []ent
	for i, p := range packs {
		for _, e := range p.Entries {
			all = append(all, ent{e, uint32(i)})
		}
	}
	slices.SortFunc(all, func(a, b ent) int { return bytes.Compare(a.e.ID[:], b.e.ID[:]) })
	nf := filterLen(len(all))
	b := make([]byte, 0, idxHeader+nf+len(packs)*idxPackSize+len(all)*idxEntrySize+32)
	b = append(b, idxMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(packs)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(all)))
	b = binary.LittleEndian.AppendUint32(b, uint32(nf))
	b = append(b, make([]byte, nf)...)
	for _, a := range all {
		filterAdd(b[idxHeader:idxHeader+nf], a.e.ID)
	}
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Size))
	}
	for _, a := range all {
		b = append(b, a.e.ID[:]...)
		b = binary.LittleEndian.AppendUint32(b, a.pack)
		b = binary.LittleEndian.AppendUint32(b, a.e.Off)
		b = binary.LittleEndian.AppendUint32(b, a.e.Len)
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
	np, ne, nf, err := fileHeader(body)
	if err != nil {
		return nil, err
	}
	if int64(len(body)) != int64(idxHeader)+nf+np*idxPackSize+ne*idxEntrySize {
		return nil, fmt.Errorf("index file: %d bytes do not hold %d packs and %d entries", len(body), np, ne)
	}
	packs := make([]PackRecord, np)
	p := body[int64(idxHeader)+nf:]
	for i := range packs {
		copy(packs[i].ID[:], p[:32])
		size := binary.LittleEndian.Uint64(p[32:40])
		if size > MaxPackSize {
			return nil, fmt.Errorf("index file: pack size %d is more than %d", size, MaxPackSize)
		}
		packs[i].Size = int64(size)
		p = p[idxPackSize:]
	}
	// Each pack's entries are allocated at their number, counted first: a
	// file at MaxFileSize holds 1.5 million (58 MiB), which appends would
	// have moved from array to array.
	counts := make([]int, np)
	for i := int64(0); i < ne; i++ {
		if ord := binary.LittleEndian.Uint32(p[i*idxEntrySize+32:]); int64(ord) < np {
			counts[ord]++
		}
	}
	for i, c := range counts {
		if c > 0 {
			packs[i].Entries = make([]pack.Entry, 0, c)
		}
	}
	var prev chunk.ID
	for i := int64(0); i < ne; i++ {
		var e pack.Entry
		copy(e.ID[:], p[:32])
		ord := binary.LittleEndian.Uint32(p[32:])
		e.Off = binary.LittleEndian.Uint32(p[36:])
		e.Len = binary.LittleEndian.Uint32(p[40:])
		p = p[idxEntrySize:]
		if int64(ord) >= np {
			return nil, fmt.Errorf("index file: entry names pack %d of %d", ord, np)
		}
		if i > 0 && bytes.Compare(prev[:], e.ID[:]) > 0 {
			return nil, errors.New("index file: entries not sorted")
		}
		if e.Len > chunk.StoreMaxMaxSize {
			return nil, fmt.Errorf("index file: chunk length %d is more than %d", e.Len, chunk.StoreMaxMaxSize)
		}
		if int64(e.Off)+int64(e.Len) > packs[ord].Size {
			return nil, errors.New("index file: entry beyond its pack")
		}
		prev = e.ID
		packs[ord].Entries = append(packs[ord].Entries, e)
	}
	for i := range packs {
		slices.SortFunc(packs[i].Entries, func(a, b pack.Entry) int { return int(a.Off) - int(b.Off) })
	}
	return packs, nil
}

// fileHeader returns the counts an index file's header gives: packs,
// entries and filter bytes (which must be filterLen of the entries).
func fileHeader(b []byte) (np, ne, nf int64, err error) {
	if len(b) < idxHeader {
		return 0, 0, 0, errors.New("index file: too short")
	}
	if string(b[:len(idxMagic)]) != idxMagic {
		return 0, 0, 0, errors.New("index file: bad magic")
	}
	np = int64(binary.LittleEndian.Uint32(b[8:]))
	ne = int64(binary.LittleEndian.Uint32(b[12:]))
	nf = int64(binary.LittleEndian.Uint32(b[16:]))
	if ne > MaxFileSize/idxEntrySize || nf != int64(filterLen(int(ne))) {
		return 0, 0, 0, fmt.Errorf("index file: a filter of %d bytes for %d entries", nf, ne)
	}
	return np, ne, nf, nil
}

// filterBound is how many bytes from its start hold the header and the
// filter of an index file of size bytes: its filter is filterLen of at
// most (size - header - sum) / idxEntrySize entries.
func filterBound(size int64) int64 {
	n := max(size-int64(idxHeader)-32, 0) / idxEntrySize
	return min(int64(idxHeader)+int64(filterLen(int(min(n, MaxFileSize/idxEntrySize)))), size)
}

// decodeFilter returns the filter of an index file from its first bytes
// (at least its header and filter). The filter is not checked against the
// file's checksum, which needs the whole file: a damaged filter costs a
// read or an upload, never data.
func decodeFilter(b []byte) ([]byte, error) {
	_, _, nf, err := fileHeader(b)
	if err != nil {
		return nil, damaged{err}
	}
	if int64(len(b)) < int64(idxHeader)+nf {
		return nil, damaged{errors.New("index file: shorter than its filter")}
	}
	return bytes.Clone(b[idxHeader : int64(idxHeader)+nf]), nil
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
