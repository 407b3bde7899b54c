package survey

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// A pack stub is what the meta store holds under a pack's key instead of
// the pack:
//
//	magic "CBSTUB01" | size u64 LE | tail
//
// size is the pack's logical size and tail its last len(tail) bytes: the
// header and trailer of a cassback pack (and a little chunk data), which is
// all that index rebuilding and a pack's Stat need. The format is private to this package; the magic
// keeps a real pack (a meta dir pointed at a real store) from being taken
// for a stub.
const (
	stubMagic      = "CBSTUB01"
	stubHeaderSize = len(stubMagic) + 8
)

// A stub keeps a pack's header and the last trailerSlack bytes after it:
// the trailer (pack.TrailerSize) and room for it to grow in a later format,
// for up to a KiB of chunk data per stub. TestRealPacks checks the stub
// against packs the index package writes.
const trailerSlack = 1 << 10

// maxStreamTail bounds the tail kept of a pack that arrives as a plain
// io.Reader (the backup engine passes a *bytes.Reader, which is read at the
// end directly): 4 MiB holds the header of a pack of 116,000 chunks, a
// 32 MiB pack of files averaging under 300 bytes. A larger header is kept in part, and
// reading the rest of it fails with ErrNoData.
const maxStreamTail = 4 << 20

// stub is a decoded pack stub.
type stub struct {
	size int64  // the pack's logical size
	tail []byte // its last len(tail) bytes
}

// tailStart is the offset in the pack of the first byte the stub keeps.
func (s stub) tailStart() int64 { return s.size - int64(len(s.tail)) }

func encodeStub(size int64, tail []byte) []byte {
	b := make([]byte, 0, stubHeaderSize+len(tail))
	b = append(b, stubMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(size))
	return append(b, tail...)
}

// stubSize decodes the logical size from the first stubHeaderSize bytes of
// a stub whose whole length is stubLen.
func stubSize(hdr []byte, stubLen int64) (int64, error) {
	if len(hdr) < stubHeaderSize || string(hdr[:len(stubMagic)]) != stubMagic {
		return 0, errors.New("not a survey pack stub (is the meta dir a real store?)")
	}
	size := binary.LittleEndian.Uint64(hdr[len(stubMagic):])
	if size > 1<<62 || int64(size) < stubLen-int64(stubHeaderSize) {
		return 0, fmt.Errorf("survey pack stub: size %d is less than its %d-byte tail", size, stubLen-int64(stubHeaderSize))
	}
	return int64(size), nil
}

func decodeStub(b []byte) (stub, error) {
	size, err := stubSize(b, int64(len(b)))
	if err != nil {
		return stub{}, err
	}
	return stub{size: size, tail: b[stubHeaderSize:]}, nil
}

// keepLen returns how many of the last bytes of an object of size bytes its
// stub keeps, given its last min(size, trailerSlack) bytes t: the header
// and trailer when t ends like a pack, else t.
func keepLen(size int64, t []byte) int64 {
	if n, ok := pack.HeaderLen(t); ok {
		// The nodes of manifests' trees are kept, so manifests read; file
		// chunks before them are not.
		if off, ok := pack.TreeStart(t); ok && off <= size-n && size-n-off <= pack.MaxTreePack {
			return size - off
		}
		return min(size, n-pack.TrailerSize+trailerSlack)
	}
	return int64(len(t))
}

// readerAtSeeker is data that can be read at its end without reading it
// all: *bytes.Reader, *strings.Reader, *io.SectionReader, *os.File.
type readerAtSeeker interface {
	io.Reader
	io.ReaderAt
	io.Seeker
}

// readStub consumes size bytes of data and returns the stub of the object
// they make. As Put requires, data yielding fewer or more bytes, or an
// error, is an error.
func readStub(ctx context.Context, data io.Reader, size int64) ([]byte, error) {
	if ra, ok := data.(readerAtSeeker); ok {
		if b, ok, err := stubAt(ra, size); ok {
			return b, err
		}
	}
	r := &ring{buf: make([]byte, min(size, maxStreamTail))}
	src := io.LimitReader(remote.ContextReader(ctx, data), size)
	n, err := io.CopyBuffer(r, src, make([]byte, min(max(size, 1), 256<<10)))
	if err != nil {
		return nil, fmt.Errorf("read data: %w", err)
	}
	if n < size {
		return nil, fmt.Errorf("data ended after %d of %d bytes", n, size)
	}
	if k, err := io.ReadFull(data, make([]byte, 1)); k > 0 {
		return nil, fmt.Errorf("data is longer than %d bytes", size)
	} else if err != io.EOF {
		return nil, fmt.Errorf("read data: %w", err)
	}
	tail := r.bytes()
	t := tail[len(tail)-min(len(tail), trailerSlack):]
	keep := min(keepLen(size, t), int64(len(tail)))
	return encodeStub(size, tail[int64(len(tail))-keep:]), nil
}

// stubAt reads only the end of data, after checking from its seek offsets
// that it holds exactly size bytes; it leaves data at its end, as read. ok
// is false if data cannot seek (a pipe).
func stubAt(ra readerAtSeeker, size int64) (b []byte, ok bool, err error) {
	cur, err := ra.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, false, nil
	}
	end, err := ra.Seek(0, io.SeekEnd)
	if err != nil {
		_, _ = ra.Seek(cur, io.SeekStart)
		return nil, false, nil
	}
	switch have := end - cur; {
	case have < size:
		return nil, true, fmt.Errorf("data ended after %d of %d bytes", have, size)
	case have > size:
		return nil, true, fmt.Errorf("data is longer than %d bytes", size)
	}
	t := make([]byte, min(size, trailerSlack))
	if err := readAt(ra, t, end-int64(len(t))); err != nil {
		return nil, true, err
	}
	keep := keepLen(size, t)
	tail := make([]byte, keep)
	if err := readAt(ra, tail, end-keep); err != nil {
		return nil, true, err
	}
	return encodeStub(size, tail), true, nil
}

func readAt(ra io.ReaderAt, p []byte, off int64) error {
	n, err := ra.ReadAt(p, off)
	if n == len(p) {
		return nil // io.EOF at the very end is allowed
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read data: %w", err)
}

// ring keeps the last len(buf) bytes written to it.
type ring struct {
	buf []byte
	n   int64 // bytes written in all
}

func (r *ring) Write(p []byte) (int, error) {
	w, c := len(p), len(r.buf)
	if c == 0 {
		r.n += int64(w)
		return w, nil
	}
	if len(p) > c {
		r.n += int64(len(p) - c)
		p = p[len(p)-c:]
	}
	for len(p) > 0 {
		k := copy(r.buf[r.n%int64(c):], p)
		p = p[k:]
		r.n += int64(k)
	}
	return w, nil
}

// bytes returns what the ring holds, oldest first.
func (r *ring) bytes() []byte {
	c := int64(len(r.buf))
	if r.n <= c {
		return r.buf[:r.n]
	}
	i := r.n % c
	return append(append(make([]byte, 0, c), r.buf[i:]...), r.buf[:i]...)
}
