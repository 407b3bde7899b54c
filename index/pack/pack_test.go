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
// a fixed nonce; padded, the one testdata/pack-v3.golden holds.
func goldenPack(padded bool) ([]byte, chunk.ID, []Entry) {
	b := NewBuilder(nil)
	b.SetNonce([NonceSize]byte{'n', 'o', 'n', 'c', 'e'})
	if padded {
		b.Pad()
	}
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
	for _, padded := range []bool{false, true} {
		t.Run(fmt.Sprint("padded=", padded), func(t *testing.T) { testGolden(t, padded) })
	}
}

func testGolden(t *testing.T, padded bool) {
	data, id, entries := goldenPack(padded)
	p, hdr := filepath.Join("testdata", "pack-v2.golden"), len(entries)*EntrySize+TrailerSize
	if padded {
		p, hdr = filepath.Join("testdata", "pack-v3.golden"), hdr+EntrySize
		// 22 bytes of chunks, 5 header entries and the trailer: 262
		// bytes, which Padmé rounds to a multiple of 16.
		if want := Padme(22 + 5*EntrySize + TrailerSize); int64(len(data)) != want || want != 272 {
			t.Errorf("padded pack of %d bytes, want %d (272)", len(data), want)
		}
	}
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
	if n, ok := HeaderLen(data); !ok || n != int64(hdr) {
		t.Errorf("HeaderLen = %d, %v; want %d, true", n, ok, hdr)
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
	for _, v := range []string{"v2", "v3"} {
		if b, err := os.ReadFile("testdata/pack-" + v + ".golden"); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { Parse(b, chunk.Namer{}) })
}
