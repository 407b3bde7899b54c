package gc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A spill holds the fixed-size records of one shard of a collection (chunk
// copies or references): in memory when the whole collection fits the
// purge's memory bound, else in a file of the purge's spill folder, so a
// purge holds one shard's records at a time.
type spill struct {
	mem []byte
	f   *os.File
	w   *bufio.Writer
	n   int64 // bytes written
}

// newSpill returns a spill in memory (dir "") or in a new file of dir.
func newSpill(dir string) (*spill, error) {
	if dir == "" {
		return &spill{}, nil
	}
	f, err := os.CreateTemp(dir, "shard-")
	if err != nil {
		return nil, fmt.Errorf("purge spill: %w", err)
	}
	return &spill{f: f, w: bufio.NewWriterSize(f, 16<<10)}, nil
}

func (s *spill) write(rec []byte) error {
	s.n += int64(len(rec))
	if s.f == nil {
		s.mem = append(s.mem, rec...)
		return nil
	}
	if _, err := s.w.Write(rec); err != nil {
		return fmt.Errorf("purge spill: %w", err)
	}
	return nil
}

// load returns every record written.
func (s *spill) load() ([]byte, error) {
	if s.f == nil {
		return s.mem, nil
	}
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("purge spill: %w", err)
	}
	b := make([]byte, s.n)
	if _, err := s.f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("purge spill: %w", err)
	}
	return b, nil
}

// replace makes b the spill's records (load's records sorted and
// compacted).
func (s *spill) replace(b []byte) error {
	s.n = int64(len(b))
	if s.f == nil {
		s.mem = b
		return nil
	}
	if _, err := s.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("purge spill: %w", err)
	}
	if err := s.f.Truncate(s.n); err != nil {
		return fmt.Errorf("purge spill: %w", err)
	}
	s.w.Reset(s.f)
	return nil
}

// readAt reads len(p) bytes of records at off (after load or replace).
func (s *spill) readAt(p []byte, off int64) error {
	if s.f == nil {
		copy(p, s.mem[off:])
		return nil
	}
	if _, err := s.f.ReadAt(p, off); err != nil {
		return fmt.Errorf("purge spill: %w", err)
	}
	return nil
}

// each calls fn with each record of n bytes, reading a file a block at a
// time.
func (s *spill) each(n int, fn func([]byte) error) error {
	if s.f == nil {
		for rec := range records(s.mem, n) {
			if err := fn(rec); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("purge spill: %w", err)
	}
	buf := make([]byte, n*4096)
	for off := int64(0); off < s.n; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), s.n-off)]
		if err := s.readAt(b, off); err != nil {
			return err
		}
		for rec := range records(b, n) {
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *spill) close() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
	}
	s.mem = nil
}

// spillDir makes a folder for a purge's spill files under dir (the
// system's temporary folder if empty).
func spillDir(dir string) (string, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("purge spill: %w", err)
		}
	}
	d, err := os.MkdirTemp(dir, spillPrefix)
	if err != nil {
		return "", fmt.Errorf("purge spill: %w", err)
	}
	return d, nil
}

// spillPrefix begins the name of every spill folder.
const spillPrefix = "cassback-purge-"

// RemoveSpills removes the spill folders in dir that purges killed midway
// left. The caller holds the purge lease of the store whose cache folder
// dir is, so no purge that uses them runs.
func RemoveSpills(dir string) error {
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("purge spill: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), spillPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("purge spill: %w", err)
			}
		}
	}
	return nil
}

func removeSpillDir(d string) {
	if d != "" {
		os.RemoveAll(filepath.Clean(d))
	}
}
