package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// Pack layout (format 1), all integers little-endian:
//
//	chunk data 1 … chunk data n          raw chunk bytes, back to back
//	header: n × { id [32]byte, len u32 }  36 bytes per chunk, in data order
//	trailer: { headerSum [32]byte, nonce [16]byte, n u32, magic "CBPACK01" }   60 bytes
//
// headerSum is the BLAKE3 of the header followed by the nonce. A pack's ID
// is the BLAKE3 of all its bytes, and its key is PackKey(id). The header
// alone rebuilds the pack's index entries; each chunk's own ID checks its
// bytes. The random nonce makes every upload a new key even when two packs
// hold the same chunks: otherwise a chunk uploaded again (because its pack
// was condemned) could recreate the condemned pack's key just before the
// collector deletes it.
const (
	packMagic       = "CBPACK01"
	packNonceSize   = 16
	packTrailerSize = 32 + packNonceSize + 4 + 8 // headerSum, nonce, count, magic
	packEntrySize   = 32 + 4
	maxPackChunks   = 1 << 20
)

// PackKey is the store key of a pack.
func PackKey(id chunk.ID) string {
	s := id.String()
	return "packs/" + s[:2] + "/" + s
}

// PackEntry is one chunk inside a pack.
type PackEntry struct {
	ID  chunk.ID
	Off uint32
	Len uint32
}

// packBuilder accumulates chunks into one pack in memory.
type packBuilder struct {
	buf     []byte
	entries []PackEntry
	nonce   [packNonceSize]byte // random unless a test fixes it
}

func (b *packBuilder) add(id chunk.ID, data []byte) {
	b.entries = append(b.entries, PackEntry{ID: id, Off: uint32(len(b.buf)), Len: uint32(len(data))})
	b.buf = append(b.buf, data...)
}

// finish appends header and trailer and returns the pack bytes and ID.
func (b *packBuilder) finish() ([]byte, chunk.ID) {
	hdrStart := len(b.buf)
	for _, e := range b.entries {
		b.buf = append(b.buf, e.ID[:]...)
		b.buf = binary.LittleEndian.AppendUint32(b.buf, e.Len)
	}
	h := chunk.NewHasher()
	h.Write(b.buf[hdrStart:])
	h.Write(b.nonce[:])
	sum := h.Sum()
	b.buf = append(b.buf, sum[:]...)
	b.buf = append(b.buf, b.nonce[:]...)
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(b.entries)))
	b.buf = append(b.buf, packMagic...)
	return b.buf, chunk.Sum(b.buf)
}

type packTrailer struct {
	n     int
	sum   chunk.ID
	nonce [packNonceSize]byte
}

// parsePackTrailer decodes a pack's last packTrailerSize bytes.
func parsePackTrailer(t []byte) (tr packTrailer, err error) {
	if len(t) != packTrailerSize {
		return tr, errors.New("pack trailer: short")
	}
	if string(t[packTrailerSize-8:]) != packMagic {
		return tr, errors.New("pack trailer: bad magic")
	}
	copy(tr.sum[:], t[:32])
	copy(tr.nonce[:], t[32:32+packNonceSize])
	tr.n = int(binary.LittleEndian.Uint32(t[32+packNonceSize:]))
	if tr.n > maxPackChunks {
		return tr, fmt.Errorf("pack trailer: %d chunks is too many", tr.n)
	}
	return tr, nil
}

// parsePackHeader decodes the header of a pack of packSize bytes whose data
// region ends where the header starts.
func parsePackHeader(hdr []byte, tr packTrailer, packSize int64) ([]PackEntry, error) {
	h := chunk.NewHasher()
	h.Write(hdr)
	h.Write(tr.nonce[:])
	if h.Sum() != tr.sum {
		return nil, errors.New("pack header: checksum mismatch")
	}
	n := len(hdr) / packEntrySize
	dataEnd := packSize - int64(len(hdr)) - packTrailerSize
	entries := make([]PackEntry, n)
	var off int64
	for i := range entries {
		r := hdr[i*packEntrySize:]
		copy(entries[i].ID[:], r[:32])
		l := binary.LittleEndian.Uint32(r[32:36])
		entries[i].Off, entries[i].Len = uint32(off), l
		off += int64(l)
	}
	if off != dataEnd {
		return nil, fmt.Errorf("pack header: chunks cover %d bytes, data region is %d", off, dataEnd)
	}
	return entries, nil
}

// ParsePack decodes a whole pack held in memory and checks every chunk.
func ParsePack(b []byte) ([]PackEntry, error) {
	if len(b) < packTrailerSize {
		return nil, errors.New("pack: shorter than its trailer")
	}
	tr, err := parsePackTrailer(b[len(b)-packTrailerSize:])
	if err != nil {
		return nil, err
	}
	hdrLen := tr.n * packEntrySize
	if hdrLen > len(b)-packTrailerSize {
		return nil, errors.New("pack: header longer than pack")
	}
	hdrStart := len(b) - packTrailerSize - hdrLen
	entries, err := parsePackHeader(b[hdrStart:len(b)-packTrailerSize], tr, int64(len(b)))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if chunk.Sum(b[e.Off:e.Off+e.Len]) != e.ID {
			return nil, fmt.Errorf("pack: chunk %s: checksum mismatch", e.ID)
		}
	}
	return entries, nil
}

// ReadPackHeader fetches and checks the header of the pack stored under key,
// with two ranged reads, without reading chunk data.
func ReadPackHeader(ctx context.Context, st remote.Store, key string) ([]PackEntry, int64, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if info.Size < packTrailerSize {
		return nil, info.Size, fmt.Errorf("pack %s: %d bytes is shorter than a trailer", key, info.Size)
	}
	t, err := readRange(ctx, st, key, info.Size-packTrailerSize, packTrailerSize)
	if err != nil {
		return nil, info.Size, err
	}
	tr, err := parsePackTrailer(t)
	if err != nil {
		return nil, info.Size, fmt.Errorf("pack %s: %w", key, err)
	}
	hdrLen := int64(tr.n) * packEntrySize
	if hdrLen > info.Size-packTrailerSize {
		return nil, info.Size, fmt.Errorf("pack %s: header longer than pack", key)
	}
	hdr, err := readRange(ctx, st, key, info.Size-packTrailerSize-hdrLen, hdrLen)
	if err != nil {
		return nil, info.Size, err
	}
	entries, err := parsePackHeader(hdr, tr, info.Size)
	if err != nil {
		return nil, info.Size, fmt.Errorf("pack %s: %w", key, err)
	}
	return entries, info.Size, nil
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
