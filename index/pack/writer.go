package pack

import (
	"encoding/binary"
	"io"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/random"
)

// Writer encodes one pack as its chunks come, to an io.Writer, hashing the
// bytes as they pass: the pack need not be held in memory, so a backup
// spools each open pack to a file and keeps only its entries (40 bytes a
// chunk) and a 64 KiB block for the header.
type Writer struct {
	w       io.Writer
	h       *chunk.Hasher // every byte written: the pack ID
	n       int64         // bytes written
	data    int           // chunk bytes written
	entries []Entry
	nonce   [NonceSize]byte
	pad     bool // Finish pads the pack (format 3)
	err     error
}

// headerBlock is how much of the header Finish encodes before writing it.
const headerBlock = 64 << 10

// NewWriter returns a Writer of a new pack to w, with a random nonce.
func NewWriter(w io.Writer) *Writer {
	pw := &Writer{w: w, h: chunk.NewHasher()}
	random.Read(pw.nonce[:])
	return pw
}

// SetNonce fixes the nonce, for golden tests; call it before Finish.
func (pw *Writer) SetNonce(n [NonceSize]byte) { pw.nonce = n }

// Pad makes Finish pad the pack to its Padme size with zero bytes after
// the chunks, recorded by a last header entry (format 3, MagicPadded), so
// that the pack's size, all an observer of an encrypted store sees of it,
// says less of the chunks it holds. Call it before Finish.
func (pw *Writer) Pad() { pw.pad = true }

// zeros is a block of the padding's zero bytes.
var zeros [64 << 10]byte

// write writes p to w and the pack hash. A failure is sticky: the pack is
// broken.
func (pw *Writer) write(p []byte) error {
	if pw.err != nil {
		return pw.err
	}
	k, err := pw.w.Write(p)
	pw.h.Write(p[:k])
	pw.n += int64(k)
	if err == nil && k < len(p) {
		err = io.ErrShortWrite
	}
	pw.err = err
	return err
}

// Add writes a chunk's bytes. The caller keeps the pack within MaxData
// and MaxChunks: Add does not check, and readers refuse a pack past them.
func (pw *Writer) Add(id chunk.ID, data []byte) error {
	if err := pw.write(data); err != nil {
		return err
	}
	pw.entries = append(pw.entries, Entry{ID: id, Off: uint32(pw.data), Len: uint32(len(data))})
	pw.data += len(data)
	return nil
}

// Len is the number of chunk bytes added so far.
func (pw *Writer) Len() int { return pw.data }

// Entries are the chunks added so far, in data order. The slice is the
// Writer's own.
func (pw *Writer) Entries() []Entry { return pw.entries }

// Finish writes the header and trailer and returns the pack's size and ID.
// The Writer must not be used afterwards.
func (pw *Writer) Finish() (int64, chunk.ID, error) {
	entries, magic := pw.entries, Magic
	if pw.pad {
		unpadded := pw.n + int64(len(entries)+1)*EntrySize + TrailerSize
		pad := Padme(unpadded) - unpadded
		for left := pad; left > 0; left -= int64(len(zeros)) {
			if err := pw.write(zeros[:min(left, int64(len(zeros)))]); err != nil {
				return 0, chunk.ID{}, err
			}
		}
		entries = append(entries[:len(entries):len(entries)], Entry{Off: uint32(pw.data), Len: uint32(pad)})
		magic = MagicPadded
	}
	hs := chunk.NewHasher() // header and nonce: the trailer's headerSum
	blk := make([]byte, 0, min(headerBlock, len(entries)*EntrySize))
	for i, e := range entries {
		blk = append(blk, e.ID[:]...)
		blk = binary.LittleEndian.AppendUint32(blk, e.Len)
		if len(blk)+EntrySize > headerBlock || i == len(entries)-1 {
			hs.Write(blk)
			if err := pw.write(blk); err != nil {
				return 0, chunk.ID{}, err
			}
			blk = blk[:0]
		}
	}
	hs.Write(pw.nonce[:])
	sum := hs.Sum()
	t := make([]byte, 0, TrailerSize)
	t = append(t, sum[:]...)
	t = append(t, pw.nonce[:]...)
	t = binary.LittleEndian.AppendUint32(t, uint32(len(entries)))
	t = append(t, magic...)
	if err := pw.write(t); err != nil {
		return 0, chunk.ID{}, err
	}
	return pw.n, pw.h.Sum(), nil
}

// Builder builds one pack in memory, for small packs (of manifest tree
// nodes) and tests; a backup spools its packs of file chunks instead.
type Builder struct {
	buf []byte
	pw  *Writer
}

// builderBuf appends what the Builder's Writer writes to its buffer.
type builderBuf Builder

func (b *builderBuf) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// NewBuilder returns a Builder that appends to buf[:0] (reusing its
// capacity) and has a random nonce.
func NewBuilder(buf []byte) *Builder {
	b := &Builder{buf: buf[:0]}
	b.pw = NewWriter((*builderBuf)(b))
	return b
}

// SetNonce fixes the nonce, for golden tests.
func (b *Builder) SetNonce(n [NonceSize]byte) { b.pw.SetNonce(n) }

// Pad pads the pack, as Writer.Pad does.
func (b *Builder) Pad() { b.pw.Pad() }

// Add appends a chunk; data is copied.
func (b *Builder) Add(id chunk.ID, data []byte) { b.pw.Add(id, data) }

// Len is the number of chunk bytes added so far.
func (b *Builder) Len() int { return b.pw.Len() }

// Entries are the chunks added so far, in data order. The slice is the
// Builder's own.
func (b *Builder) Entries() []Entry { return b.pw.Entries() }

// Finish appends header and trailer and returns the pack bytes and ID. The
// bytes share the buffer given to NewBuilder; the Builder must not be used
// afterwards.
func (b *Builder) Finish() ([]byte, chunk.ID) {
	_, id, _ := b.pw.Finish() // writes to memory never fail
	return b.buf, id
}
