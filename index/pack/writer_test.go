package pack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cassback/cassback/chunk"
)

// TestWriterGolden streams the golden pack's chunks through a Writer: the
// bytes, size and ID must be the golden pack's, as the Builder makes it.
func TestWriterGolden(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "pack-v2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	pw := NewWriter(&buf)
	pw.SetNonce([NonceSize]byte{'n', 'o', 'n', 'c', 'e'})
	for i, s := range []string{"alpha", "", "gamma gamma", "delta"} {
		if s == "" {
			s = fmt.Sprint(i)
		}
		if err := pw.Add(chunk.Sum([]byte(s)), []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	size, id, err := pw.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("streamed pack differs from the golden pack (got %d bytes, want %d)", buf.Len(), len(want))
	}
	if size != int64(len(want)) || id != chunk.Sum(want) {
		t.Errorf("Finish = %d, %s; want %d, %s", size, id, len(want), chunk.Sum(want))
	}
}

// TestWriterLargeHeader writes a header of several blocks (headerBlock).
func TestWriterLargeHeader(t *testing.T) {
	const n = 2*headerBlock/EntrySize + 7
	var buf bytes.Buffer
	pw := NewWriter(&buf)
	for i := range n {
		d := []byte(fmt.Sprint(i))
		if err := pw.Add(chunk.Sum(d), d); err != nil {
			t.Fatal(err)
		}
	}
	size, id, err := pw.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(buf.Len()) || id != chunk.Sum(buf.Bytes()) {
		t.Errorf("Finish = %d, %s; want %d, %s", size, id, buf.Len(), chunk.Sum(buf.Bytes()))
	}
	entries, err := Parse(buf.Bytes(), chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Errorf("Parse found %d chunks, want %d", len(entries), n)
	}
}

// failAfter accepts n bytes, then fails.
type failAfter struct{ n int }

var errDisk = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) <= f.n {
		f.n -= len(p)
		return len(p), nil
	}
	k := f.n
	f.n = 0
	return k, errDisk
}

// TestWriterError: a failed write breaks the pack for good.
func TestWriterError(t *testing.T) {
	for _, limit := range []int{0, 3, 10, 10 + EntrySize} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			pw := NewWriter(&failAfter{n: limit})
			var err error
			for _, s := range []string{"0123456789", "abc"} {
				if e := pw.Add(chunk.Sum([]byte(s)), []byte(s)); err == nil {
					err = e
				}
			}
			_, _, ferr := pw.Finish()
			if !errors.Is(ferr, errDisk) {
				t.Errorf("Finish error = %v, want %v", ferr, errDisk)
			}
			if err != nil && !errors.Is(err, errDisk) {
				t.Errorf("Add error = %v, want %v", err, errDisk)
			}
		})
	}
}
