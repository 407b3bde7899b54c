package manifest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote/local"
)

// Manifests from a store someone hostile can write (issue 11, item 2):
// reading one never costs much more than the manifest it decodes to.

// allocated returns how many bytes fn allocates, freed or not, and how
// many of them are still in use after it (what it returns). Tests that use
// it do not run in parallel.
func allocated(fn func()) (total, kept uint64) {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	total = b.TotalAlloc - a.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&b)
	return total, b.HeapAlloc - min(b.HeapAlloc, a.HeapAlloc)
}

// bigManifest returns a valid manifest of one table holding files of 1000
// chunks each, chunks in all.
func bigManifest(chunks int) *Manifest {
	mtime := time.Date(2026, 11, 25, 23, 59, 59, 0, time.UTC)
	m := &Manifest{Format: FormatVersion, Host: "h", Keyspace: "ks", Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC),
		Session: "0123456789abcdef01234567", Tables: []Table{{Name: "t", ID: id32}}}
	m.Name = BackupName(m.Time, m.Keyspace, m.Host)
	for i := 0; i < chunks; i += 1000 {
		f := File{Path: fmt.Sprintf("ks/t-%s/nb-%d-big-Data.db", id32, i+1), Root: "/var/lib/cassandra/data", Mode: 0o644,
			MTime: mtime, Sum: chunk.Sum([]byte{byte(i), byte(i >> 8), byte(i >> 16)})}
		for k := range min(1000, chunks-i) {
			f.Chunks = append(f.Chunks, chunk.Ref{ID: chunk.Sum(fmt.Appendf(nil, "%d.%d", i, k)), Len: 4 << 20})
			f.Size += 4 << 20
		}
		m.Tables[0].Files = append(m.Tables[0].Files, f)
	}
	m.Sort()
	return m
}

// A valid manifest costs about what it decodes to, not several times its
// JSON (7 GB for a 1 GiB one before).
func TestDecodeLargeManifestMemory(t *testing.T) {
	n := 100_000 // 8.6 MiB of JSON (400,000: 34 MiB, the same ratios)
	if testing.Short() {
		n = 20_000
	}
	b, err := encodeFlat(bigManifest(n))
	if err != nil {
		t.Fatal(err)
	}
	js := int64(len(gunzip(t, b)))
	var m *Manifest
	total, kept := allocated(func() { m, err = decodeFlat(b) })
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(m)
	runtime.KeepAlive(b)
	t.Logf("%d chunks: %d KiB of JSON, %d KiB gzipped; Decode allocated %d KiB (%.2f× the JSON) and keeps %d KiB (%.2f×)",
		n, js>>10, len(b)>>10, total>>10, float64(total)/float64(js), kept>>10, float64(kept)/float64(js))
	if total > uint64(js) {
		t.Errorf("Decode allocated %.2f× the JSON it read, want at most 1×", float64(total)/float64(js))
	}
	if kept > uint64(js)*6/10 {
		t.Errorf("the decoded manifest takes %.2f× its JSON, want at most 0.6×", float64(kept)/float64(js))
	}
}

// bomb is a gzipped stream of head then n copies of the byte c.
func bomb(t *testing.T, head string, c byte, n int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	io.WriteString(zw, head)
	if _, err := io.Copy(zw, io.LimitReader(repeatReader(c), n)); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// Gzip bombs fail having allocated little: zeros, and JSON whose one value
// or white space inflates without end (8 MiB here: anything past 64 KiB
// fails the same way).
func TestDecodeBombsBounded(t *testing.T) {
	n := int64(8 << 20)
	tests := []struct {
		name, head string
		c          byte
	}{
		{"zeros", "", 0},
		{"one huge string", `{"format":3,"name":"`, 'a'},
		{"huge white space", `{"format":3`, ' '},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bomb(t, tt.head, tt.c, n)
			var err error
			total, _ := allocated(func() { _, err = decodeFlat(in) })
			t.Logf("a %d KiB bomb: Decode allocated %d KiB: %v", len(in)>>10, total>>10, err)
			if err == nil || !strings.HasPrefix(err.Error(), "manifest") {
				t.Errorf("Decode = %v, want a manifest error", err)
			}
			if total > 8<<20 {
				t.Errorf("Decode allocated %d MiB, want at most 8 MiB", total>>20)
			}
		})
	}
}

// Bombs of valid JSON values fail having allocated, garbage included, at
// most three times the memory bound: empty objects, which take 20 to 60
// times their JSON in memory (a 1 GiB bomb of empty files took every
// command past 1 GiB), and chunk references, which took 3.8 times what
// they hold while the list grew by append and was copied (453 MiB for a
// 256 MiB bomb).
func TestDecodeValueBombsBounded(t *testing.T) {
	const limit, memLimit = 8 << 20, 2 << 20
	ref := `{"id":"` + strings.Repeat("ab", 32) + `","len":1},`
	tests := []struct {
		name, head, unit, want string
	}{
		{"empty tables", `{"format":3,"tables":[`, `{},`, "bytes in memory"},
		{"empty files", `{"format":3,"tables":[{"files":[`, `{},`, "bytes in memory"},
		{"chunk references", `{"format":3,"tables":[{"files":[{"chunks":[`, ref, "bytes in memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
			io.WriteString(zw, tt.head)
			io.WriteString(zw, strings.Repeat(tt.unit, 2*limit/len(tt.unit)))
			zw.Close()
			var err error
			total, _ := allocated(func() { _, err = decode(bytes.NewReader(buf.Bytes()), limit, memLimit) })
			t.Logf("%d KiB of JSON: decode allocated %d KiB: %v", 2*limit>>10, total>>10, err)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decode = %v, want an error containing %q", err, tt.want)
			}
			if total > 3*memLimit {
				t.Errorf("decode allocated %d KiB, want at most %d KiB", total>>10, 3*memLimit>>10)
			}
		})
	}
}

// A manifest object of 4 GiB (sparse) costs nothing to refuse.
func TestGetRefusesHugeManifest(t *testing.T) {
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := BackupName(time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), "ks", "h")
	key, _ := Key(name)
	file := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 4<<30); err != nil {
		t.Fatal(err)
	}
	total, _ := allocated(func() { _, err = Get(t.Context(), st, name, memChunks{}) })
	t.Logf("Get allocated %d KiB: %v", total>>10, err)
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("Get = %v, want an error naming %s", err, name)
	}
	if total > 8<<20 {
		t.Errorf("Get allocated %d MiB, want at most 8 MiB", total>>20)
	}
}

// A valid manifest larger than the limit is an error naming the limit.
func TestDecodeValidOverLimit(t *testing.T) {
	b, err := encodeFlat(bigManifest(20_000))
	if err != nil {
		t.Fatal(err)
	}
	js := int64(len(gunzip(t, b)))
	if _, err := decode(bytes.NewReader(b), js, MaxDecodedMemory); err != nil {
		t.Errorf("decode at exactly its size: %v", err)
	}
	_, err = decode(bytes.NewReader(b), js-1, MaxDecodedMemory)
	if want := fmt.Sprintf("more than %d bytes", js-1); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("decode over the limit = %v, want an error containing %q", err, want)
	}
}

// emptyBlocks is a gzip header followed by empty stored deflate blocks
// without end: it inflates to nothing, forever.
type emptyBlocks struct{ sent int }

func (e *emptyBlocks) Read(p []byte) (int, error) {
	head := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	block := []byte{0, 0, 0, 0xff, 0xff}
	for i := range p {
		if e.sent < len(head) {
			p[i] = head[e.sent]
		} else {
			p[i] = block[(e.sent-len(head))%len(block)]
		}
		e.sent++
	}
	return len(p), nil
}

// Get reads no more than maxManifest bytes of an object, even one that
// inflates to nothing.
func TestCappedStopsEndlessStream(t *testing.T) {
	_, err := decode(&capped{r: &emptyBlocks{}, left: 1 << 20}, MaxDecodedSize, MaxDecodedMemory)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("decode of an endless stream = %v, want an error saying it is too long", err)
	}
}

// writeCanonical writes what encoding/json writes for the normalized
// manifest, which the golden file pins for the sample.
func TestWriteCanonicalIsEncodingJSON(t *testing.T) {
	for _, m := range []*Manifest{sample(), bigManifest(2500)} {
		c := *m
		c.Time = c.Time.UTC()
		c.Tables = slices.Clone(m.Tables)
		for i := range c.Tables {
			c.Tables[i].Files = slices.Clone(c.Tables[i].Files)
			for j := range c.Tables[i].Files {
				c.Tables[i].Files[j].MTime = c.Tables[i].Files[j].MTime.UTC()
			}
		}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(&c); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeCanonical(&got, m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("writeCanonical differs from encoding/json at byte %d", firstDiff(got.Bytes(), want.Bytes()))
		}
	}
}

// appendRef writes a reference as encoding/json does, and refJSON reads
// it back without allocating; other forms go through encoding/json.
func TestRefJSON(t *testing.T) {
	for _, n := range []uint32{0, 1, 9, 10, 4 << 20, 1<<32 - 1} {
		r := chunk.Ref{ID: chunk.Sum([]byte{byte(n)}), Len: n}
		want, _ := json.Marshal(r)
		got := appendRef(nil, r)
		if !bytes.Equal(got, want) {
			t.Errorf("appendRef = %s, want %s", got, want)
		}
		var back refJSON
		if allocs := testing.AllocsPerRun(10, func() { back.UnmarshalJSON(got) }); allocs > 0 {
			t.Errorf("refJSON.UnmarshalJSON of %s: %v allocations, want 0", got, allocs)
		}
		if chunk.Ref(back) != r {
			t.Errorf("refJSON.UnmarshalJSON(%s) = %+v, want %+v", got, back, r)
		}
	}
	for _, in := range []string{`{"len":5,"id":"` + strings.Repeat("ab", 32) + `"}`, `{"id":"` + strings.Repeat("AB", 32) + `","len":5}`} {
		var back refJSON
		if err := back.UnmarshalJSON([]byte(in)); err != nil || back.Len != 5 {
			t.Errorf("refJSON.UnmarshalJSON(%s) = %+v, %v; want len 5 by encoding/json", in, back, err)
		}
	}
	var back refJSON
	if err := back.UnmarshalJSON([]byte(`{"id":"` + strings.Repeat("ab", 32) + `","len":4294967296}`)); err == nil {
		t.Errorf("refJSON.UnmarshalJSON of a length over 32 bits: no error")
	}
}

// MemCost is exactly what the decoder charges, so Encode refuses what every
// reader would, and a manifest over MaxDecodedMemory is refused by Encode.
func TestMemCostMatchesDecoder(t *testing.T) {
	for _, m := range []*Manifest{sample(), bigManifest(3_000)} {
		b, err := encodeFlat(m)
		if err != nil {
			t.Fatal(err)
		}
		c := m.MemCost()
		if _, err := decode(bytes.NewReader(b), MaxDecodedSize, c); err != nil {
			t.Errorf("%s: decode within MemCost %d: %v", m.Name, c, err)
		}
		if _, err := decode(bytes.NewReader(b), MaxDecodedSize, c-1); err == nil || !strings.Contains(err.Error(), "bytes in memory") {
			t.Errorf("%s: decode within MemCost-1 = %v, want the memory bound", m.Name, err)
		}
	}
	m := bigManifest(int(MaxDecodedMemory/refSize) + 1000)
	_, err := encodeFlat(m)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "MiB a reader accepts") {
		t.Fatalf("Encode of %d MiB in memory = %v, want ErrTooLarge", m.MemCost()>>20, err)
	}
}

// GetHeader reads the manifest object alone: the header and each table's
// count and bytes, allocating a small part of what Get does.
func TestGetHeader(t *testing.T) {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := bigManifest(200_000)
	mc := memChunks{}
	if err := putManifest(t.Context(), st, m, mc); err != nil {
		t.Fatal(err)
	}
	var h *Manifest
	small, _ := allocated(func() { h, err = GetHeader(t.Context(), st, m.Name) })
	if err != nil {
		t.Fatal(err)
	}
	full, _ := allocated(func() { _, err = Get(t.Context(), st, m.Name, mc) })
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != m.Name || h.Session != m.Session || !h.Time.Equal(m.Time) || len(h.Tables) != 1 ||
		h.Tables[0].Count != len(m.Tables[0].Files) || h.Tables[0].Bytes != m.TotalSize() || len(h.Tables[0].Files) != 0 {
		t.Errorf("GetHeader = %+v", h)
	}
	t.Logf("GetHeader allocated %d KiB, Get %d KiB", small>>10, full>>10)
	if small > full/20 {
		t.Errorf("GetHeader allocated %d KiB, over a twentieth of Get's %d KiB", small>>10, full>>10)
	}
}
