package pack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// Layout of a pack (format 2), all integers little-endian:
//
//	chunk data 1 … chunk data n          raw chunk bytes, back to back
//	header: n × { id [32]byte, len u32 }  EntrySize bytes per chunk, in data order
//	trailer: { headerSum [32]byte, nonce [16]byte, n u32, magic "CBPACK02" }   TrailerSize bytes
//
// headerSum is the BLAKE3 of the header followed by the nonce. A chunk's
// offset is the sum of the lengths before it.
//
// A padded pack (format 3, magic MagicPadded; Writer.Pad) is the same with
// zero bytes after the last chunk, so that the whole pack is Padme bytes
// long, and one more header entry, the last, for them: the zero ID and the
// padding's length (n counts it). Readers take both formats and leave the
// padding entry out of the chunks they return. Only encrypted stores pad.
const (
	Magic       = "CBPACK02"
	MagicPadded = "CBPACK03"
	NonceSize   = 16
	TrailerSize = 32 + NonceSize + 4 + 8 // headerSum, nonce, count, magic
	EntrySize   = 32 + 4
	// MaxChunks bounds the chunk count a trailer may claim, so a hostile
	// trailer cannot make a reader allocate a huge header, and a writer
	// closes a pack that reaches it: so one pack's index entries (76 bytes
	// each, 19 MiB) fit an index file (index.MaxFileSize).
	MaxChunks = 1 << 18
	// MaxData bounds a pack's chunk bytes: a writer closes a pack before
	// a chunk would take it past its target, at most 32 MiB (the store's
	// pack_size, index.MaxPackTarget), so it holds less than the target
	// plus one chunk of the largest size a store allows.
	MaxData = 32<<20 + chunk.StoreMaxMaxSize
	// MaxSize bounds a whole pack: ReadHeader refuses a larger object
	// without reading it, and index files may not name one. It is the
	// largest pack padded (Padme rounds sizes of 32 to 64 MiB up to a
	// multiple of 1 MiB; TestMaxSize checks the sum).
	MaxSize = (maxUnpadded + 1<<20 - 1) &^ (1<<20 - 1)
	// maxUnpadded is the largest pack before padding: MaxData, and the
	// header of MaxChunks chunks and the padding entry.
	maxUnpadded = MaxData + (MaxChunks+1)*EntrySize + TrailerSize
)

// Key is the store key of the pack with the given ID.
func Key(id chunk.ID) string {
	s := id.String()
	return "packs/" + s[:2] + "/" + s
}

// Entry is one chunk inside a pack.
type Entry struct {
	ID  chunk.ID
	Off uint32
	Len uint32
}

type trailer struct {
	n      int // header entries, the padding's included
	sum    chunk.ID
	nonce  [NonceSize]byte
	padded bool // format 3: the last entry is the padding
}

// maxEntries is how many header entries a pack of the given magic may
// have, and whether it is padded; ok is false for an unknown magic.
func maxEntries(magic string) (n int, padded, ok bool) {
	switch magic {
	case Magic:
		return MaxChunks, false, true
	case MagicPadded:
		return MaxChunks + 1, true, true
	}
	return 0, false, false
}

// parseTrailer decodes a pack's last TrailerSize bytes.
func parseTrailer(t []byte) (tr trailer, err error) {
	if len(t) != TrailerSize {
		return tr, errors.New("pack trailer: short")
	}
	most, padded, ok := maxEntries(string(t[TrailerSize-8:]))
	if !ok {
		return tr, errors.New("pack trailer: bad magic")
	}
	copy(tr.sum[:], t[:32])
	copy(tr.nonce[:], t[32:32+NonceSize])
	tr.n = int(binary.LittleEndian.Uint32(t[32+NonceSize:]))
	tr.padded = padded
	if tr.n > most {
		return tr, fmt.Errorf("pack trailer: %d chunks is too many", tr.n)
	}
	if padded && tr.n == 0 {
		return tr, errors.New("pack trailer: padded pack without its padding entry")
	}
	return tr, nil
}

// parseHeader decodes the header of a pack of packSize bytes whose data
// region ends where the header starts.
func parseHeader(hdr []byte, tr trailer, packSize int64) ([]Entry, error) {
	h := chunk.NewHasher()
	h.Write(hdr)
	h.Write(tr.nonce[:])
	if h.Sum() != tr.sum {
		return nil, errors.New("pack header: checksum mismatch")
	}
	n := len(hdr) / EntrySize
	dataEnd := packSize - int64(len(hdr)) - TrailerSize
	entries := make([]Entry, n)
	var off int64
	for i := range entries {
		r := hdr[i*EntrySize:]
		copy(entries[i].ID[:], r[:32])
		l := binary.LittleEndian.Uint32(r[32:36])
		entries[i].Off, entries[i].Len = uint32(off), l
		off += int64(l)
	}
	if off != dataEnd {
		return nil, fmt.Errorf("pack header: chunks cover %d bytes, data region is %d", off, dataEnd)
	}
	if !tr.padded {
		return entries, nil
	}
	// Format 3: the zero ID names the padding, last, and nothing else.
	for i, e := range entries {
		if e.ID.IsZero() != (i == n-1) {
			return nil, fmt.Errorf("pack header: entry %d of %d: padding entry misplaced", i, n)
		}
	}
	return entries[:n-1], nil
}

// Parse decodes a whole pack held in memory and checks every chunk against
// its ID as nm names it (the store's chunk.Params.Namer).
func Parse(b []byte, nm chunk.Namer) ([]Entry, error) {
	if len(b) < TrailerSize {
		return nil, errors.New("pack: shorter than its trailer")
	}
	tr, err := parseTrailer(b[len(b)-TrailerSize:])
	if err != nil {
		return nil, err
	}
	hdrLen := tr.n * EntrySize
	if hdrLen > len(b)-TrailerSize {
		return nil, errors.New("pack: header longer than pack")
	}
	hdrStart := len(b) - TrailerSize - hdrLen
	entries, err := parseHeader(b[hdrStart:len(b)-TrailerSize], tr, int64(len(b)))
	if err != nil {
		return nil, err
	}
	if tr.padded {
		var end int
		if len(entries) > 0 {
			last := entries[len(entries)-1]
			end = int(last.Off + last.Len)
		}
		for _, c := range b[end:hdrStart] {
			if c != 0 {
				return nil, errors.New("pack: padding is not zero bytes")
			}
		}
	}
	for _, e := range entries {
		if nm.Sum(b[e.Off:e.Off+e.Len]) != e.ID {
			return nil, fmt.Errorf("pack: chunk %s: checksum mismatch", e.ID)
		}
	}
	return entries, nil
}

// ReadHeader fetches and checks the header of the pack stored under key,
// with two ranged reads, without reading chunk data. It holds at most
// MaxChunks entries: 36 MiB of header and 40 MiB of entries.
func ReadHeader(ctx context.Context, st remote.Store, key string) ([]Entry, int64, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if info.Size < TrailerSize {
		return nil, info.Size, fmt.Errorf("pack %s: %d bytes is shorter than a trailer", key, info.Size)
	}
	if info.Size > MaxSize {
		return nil, info.Size, fmt.Errorf("pack %s: %d bytes is more than %d", key, info.Size, MaxSize)
	}
	t, err := readRange(ctx, st, key, info.Size-TrailerSize, TrailerSize)
	if err != nil {
		return nil, info.Size, err
	}
	tr, err := parseTrailer(t)
	if err != nil {
		return nil, info.Size, fmt.Errorf("pack %s: %w", key, err)
	}
	hdrLen := int64(tr.n) * EntrySize
	if hdrLen > info.Size-TrailerSize {
		return nil, info.Size, fmt.Errorf("pack %s: header longer than pack", key)
	}
	hdr, err := readRange(ctx, st, key, info.Size-TrailerSize-hdrLen, hdrLen)
	if err != nil {
		return nil, info.Size, err
	}
	entries, err := parseHeader(hdr, tr, info.Size)
	if err != nil {
		return nil, info.Size, fmt.Errorf("pack %s: %w", key, err)
	}
	return entries, info.Size, nil
}

// HeaderLen returns how many bytes at the end of a pack hold its header
// and trailer, given at least its last 4+len(Magic) bytes in tail; ok is
// false when tail does not end like a pack. The survey store keeps just
// these bytes of every pack.
func HeaderLen(tail []byte) (n int64, ok bool) {
	k := len(tail)
	if k < 4+len(Magic) {
		return 0, false
	}
	most, _, ok := maxEntries(string(tail[k-len(Magic):]))
	if !ok {
		return 0, false
	}
	c := int64(binary.LittleEndian.Uint32(tail[k-len(Magic)-4:]))
	if c > int64(most) {
		return 0, false
	}
	return c*EntrySize + TrailerSize, true
}

// readRange reads exactly length bytes at off of the object under key.
func readRange(ctx context.Context, st remote.Store, key string, off, length int64) ([]byte, error) {
	rc, err := st.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, length)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("read %s [%d,+%d): %w", key, off, length, err)
	}
	return b, nil
}
