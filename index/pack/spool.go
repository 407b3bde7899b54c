package pack

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/cassback/cassback/chunk"
)

// Spool is a pack written to a temporary file as its chunks come, so that
// an open pack of 32 MiB costs its writer a 64 KiB buffer and its entries
// rather than 32 MiB of memory (restic spools its packs the same way). The
// file is unlinked as soon as it is made where the system allows it, so a
// crash leaves nothing behind, and its space is freed by Close. A Spool is
// not safe for concurrent use, except that the Reader of a finished Spool
// may be read at offsets from several goroutines.
type Spool struct {
	f    *os.File
	bw   *bufio.Writer
	pw   *Writer
	name string // the file's name while it is still linked, else ""
	size int64  // set by Finish
}

// spoolBuffer gathers the small writes (small chunks, the header) into
// larger ones; a chunk of at least its size is written straight through.
const spoolBuffer = 64 << 10

// CreateSpool starts a pack in a new temporary file in dir (mode 0600;
// os.TempDir() if dir is "").
func CreateSpool(dir string) (*Spool, error) {
	f, err := os.CreateTemp(dir, "cassback-pack-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("spool pack: %w", err)
	}
	s := &Spool{f: f, bw: bufio.NewWriterSize(f, spoolBuffer)}
	if os.Remove(f.Name()) != nil {
		s.name = f.Name() // Windows: an open file cannot be removed; Close does it
	}
	s.pw = NewWriter(s.bw)
	return s, nil
}

// Add writes a chunk to the pack; a failure breaks the pack for good.
func (s *Spool) Add(id chunk.ID, data []byte) error {
	if err := s.pw.Add(id, data); err != nil {
		return fmt.Errorf("spool pack: %w", err)
	}
	return nil
}

// Len is the number of chunk bytes added so far.
func (s *Spool) Len() int { return s.pw.Len() }

// Pad pads the pack, as Writer.Pad does; call it before Finish.
func (s *Spool) Pad() { s.pw.Pad() }

// AppendTo adds every chunk of s to dst, in order, reading them back from
// s's file, so that two open packs can become one; s is left as it was,
// unfinished, for its owner to Close. It holds one chunk in memory.
func (s *Spool) AppendTo(dst *Spool) error {
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("spool pack: %w", err)
	}
	var buf []byte
	for _, e := range s.Entries() {
		if cap(buf) < int(e.Len) {
			buf = make([]byte, e.Len)
		}
		b := buf[:e.Len]
		if _, err := s.f.ReadAt(b, int64(e.Off)); err != nil {
			return fmt.Errorf("spool pack: read back chunk %s: %w", e.ID, err)
		}
		if err := dst.Add(e.ID, b); err != nil {
			return err
		}
	}
	return nil
}

// Entries are the chunks added so far, in data order. The slice is the
// Spool's own.
func (s *Spool) Entries() []Entry { return s.pw.Entries() }

// Finish writes the header and trailer, and returns the pack's size and
// ID. Only Reader and Close may be called afterwards.
func (s *Spool) Finish() (int64, chunk.ID, error) {
	size, id, err := s.pw.Finish()
	if err == nil {
		err = s.bw.Flush()
	}
	if err != nil {
		return 0, chunk.ID{}, fmt.Errorf("spool pack: %w", err)
	}
	s.size = size
	return size, id, nil
}

// Reader returns the finished pack, which can seek and be read at offsets
// (so a store can send it in parts and a retry can read it again), until
// Close.
func (s *Spool) Reader() *io.SectionReader { return io.NewSectionReader(s.f, 0, s.size) }

// Close closes and removes the file, freeing its space.
func (s *Spool) Close() error {
	err := s.f.Close()
	if s.name != "" {
		if rerr := os.Remove(s.name); err == nil {
			err = rerr
		}
		s.name = ""
	}
	return err
}
