package pack

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cassback/cassback/chunk"
)

// TestSpool writes a pack through a Spool: the file leaves no name behind
// (where the system allows), and the finished pack reads back whole, by
// offset and again after a seek, as a retried upload reads it.
func TestSpool(t *testing.T) {
	dir := t.TempDir()
	sp, err := CreateSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if names, _ := os.ReadDir(dir); runtime.GOOS != "windows" && len(names) != 0 {
		t.Errorf("spool left %v in its folder, want nothing", names)
	}
	var chunks [][]byte
	for i := range 50 {
		d := bytes.Repeat([]byte{byte(i)}, 1+i*5000) // some below, some above the 64 KiB buffer
		chunks = append(chunks, d)
		if err := sp.Add(chunk.Sum(d), d); err != nil {
			t.Fatal(err)
		}
	}
	entries := append([]Entry(nil), sp.Entries()...)
	size, id, err := sp.Finish()
	if err != nil {
		t.Fatal(err)
	}
	r := sp.Reader()
	for round := range 2 {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != size || chunk.Sum(b) != id {
			t.Fatalf("round %d: read %d bytes with ID %s, want %d bytes with ID %s", round, len(b), chunk.Sum(b), size, id)
		}
		got, err := Parse(b, chunk.Namer{})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(entries) {
			t.Fatalf("Parse = %v, want %v", got, entries)
		}
	}
	e := entries[7]
	buf := make([]byte, e.Len)
	if _, err := r.ReadAt(buf, int64(e.Off)); err != nil || !bytes.Equal(buf, chunks[7]) {
		t.Errorf("ReadAt chunk 7: %v, bytes equal %v", err, bytes.Equal(buf, chunks[7]))
	}
	if err := sp.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Errorf("Close left %v in the folder", names)
	}
}

// TestCreateSpoolError: a folder that cannot hold the spool is a clear error.
func TestCreateSpoolError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := CreateSpool(dir)
	if err == nil || !strings.Contains(err.Error(), "spool pack") || !strings.Contains(err.Error(), dir) {
		t.Errorf("CreateSpool(%s) = %v, want an error naming the spool and the folder", dir, err)
	}
}
