package pack

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cassback/cassback/chunk"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenPack builds the pack testdata/pack-v2.golden holds: four chunks,
// a fixed nonce.
func goldenPack() ([]byte, chunk.ID, []Entry) {
	b := NewBuilder(nil)
	b.SetNonce([NonceSize]byte{'n', 'o', 'n', 'c', 'e'})
	for i, s := range []string{"alpha", "", "gamma gamma", "delta"} {
		if s == "" {
			s = fmt.Sprint(i)
		}
		b.Add(chunk.Sum([]byte(s)), []byte(s))
	}
	entries := append([]Entry(nil), b.Entries()...)
	data, id := b.Finish()
	return data, id, entries
}

func TestGolden(t *testing.T) {
	data, id, entries := goldenPack()
	p := filepath.Join("testdata", "pack-v2.golden")
	if *update {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(data, want) {
		t.Errorf("pack encoding changed (got %d bytes, want %d); the on-disk format must not drift", len(data), len(want))
	}
	got, err := Parse(data, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(entries) {
		t.Errorf("Parse = %v, want %v", got, entries)
	}
	if id != chunk.Sum(data) {
		t.Errorf("pack id is not the BLAKE3 of its bytes")
	}
	if n, ok := HeaderLen(data); !ok || n != int64(len(entries)*EntrySize+TrailerSize) {
		t.Errorf("HeaderLen = %d, %v; want %d, true", n, ok, len(entries)*EntrySize+TrailerSize)
	}
	// Every single-bit flip anywhere is detected.
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x10
		if _, err := Parse(bad, chunk.Namer{}); err == nil {
			t.Fatalf("flip at byte %d not detected", i)
		}
	}
	// Truncations are detected.
	for n := range len(data) {
		if _, err := Parse(data[:n], chunk.Namer{}); err == nil {
			t.Fatalf("truncation to %d bytes not detected", n)
		}
	}
}

func TestHeaderLenRejects(t *testing.T) {
	for _, tail := range [][]byte{nil, []byte(Magic), append([]byte{0xff, 0xff, 0xff, 0xff}, Magic...), []byte("0000CBPACK01")} {
		if n, ok := HeaderLen(tail); ok {
			t.Errorf("HeaderLen(%q) = %d, true; want false", tail, n)
		}
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/pack-v2.golden"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { Parse(b, chunk.Namer{}) })
}
