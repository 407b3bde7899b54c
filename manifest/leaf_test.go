package manifest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// id32 is a table ID as in a 2.1+ table directory name.
const id32 = "0123456789abcdef0123456789abcdef"

// goldenLeaves holds the leaves of the sample's tables, one a line in hex:
// what encodeLeaf must write and decodeLeaf read forever.
const goldenLeaves = "testdata/leaves-v4.hex"

// sample is the manifest the golden files hold: every field set somewhere,
// every layout, an empty file and a table without files.
func sample() *Manifest {
	at := time.Date(2026, 11, 26, 1, 2, 3, 456789000, time.UTC)
	mtime := time.Date(2026, 11, 25, 23, 59, 59, 123456789, time.UTC)
	id := func(s string) chunk.ID { return chunk.Sum([]byte(s)) }
	file := func(path string, sizes ...uint32) File {
		f := File{Path: path, Root: "/var/lib/cassandra/data", Mode: 0o644, UID: 999, GID: 998, User: "cassandra", Group: "cassandra",
			MTime: mtime, Inode: 1234567, Sum: id("file " + path), Chunks: []chunk.Ref{}}
		for i, n := range sizes {
			f.Chunks = append(f.Chunks, chunk.Ref{ID: id(path + string(rune('a'+i))), Len: n})
			f.Size += int64(n)
		}
		return f
	}
	m := &Manifest{
		Format: FormatVersion, Host: "node-1.dc1.example.com", Keyspace: "ks", Time: at, CassandraVersion: "5.0.2", Session: "0123456789abcdef01234567",
		Tables: []Table{
			{Name: "events", ID: id32, Files: []File{
				file("ks/events-"+id32+"/.by_day/nb-1-big-Data.db", 100),
				file("ks/events-"+id32+"/nb-3fw2_0tj3_3ftw02fh7tq1bd7xso-big-Data.db", 4<<20, 1<<20, 17),
				file("ks/events-"+id32+"/nb-3fw2_0tj3_3ftw02fh7tq1bd7xso-big-TOC.txt", 92),
				file("ks/events-" + id32 + "/oa-7-big-SAI+aa+GroupComplete.db"),
			}},
			{Name: "legacy", Files: []File{
				file("ks/legacy-hd-5-Data.db", 10),
				file("ks/legacy/ks-legacy-ic-2-Data.db", 20),
			}},
			{Name: "users", ID: "fedcba9876543210fedcba9876543210", Files: []File{}},
		},
	}
	// A file from a second data directory (JBOD), with no owner names.
	jbod := file("ks/events-"+id32+"/nb-3fw2_0tj3_3ftw02fh7tq1bd7xso-big-Data.db", 5)
	jbod.Root, jbod.User, jbod.Group, jbod.Inode = "/data2", "", "", 0
	m.Tables[0].Files = append(m.Tables[0].Files, jbod)
	m.Name = BackupName(m.Time, m.Keyspace, m.Host)
	m.Sort()
	return m
}

// leaves returns the leaf of each of m's tables, all its files in one.
func leaves(m *Manifest) [][]byte {
	var out [][]byte
	for i := range m.Tables {
		out = append(out, m.encodeLeaf(&m.Tables[i], m.Tables[i].Files))
	}
	return out
}

func TestLeafGolden(t *testing.T) {
	m := sample()
	var text bytes.Buffer
	for _, b := range leaves(m) {
		text.WriteString(hex.EncodeToString(b) + "\n")
	}
	if *update {
		if err := os.WriteFile(goldenLeaves, text.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenLeaves)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(text.Bytes(), want) {
		t.Errorf("encodeLeaf differs from %s: the format changed; bump FormatVersion or, if intended, run go test -update", goldenLeaves)
	}
	lines := strings.Fields(string(want))
	if len(lines) != len(m.Tables) {
		t.Fatalf("%s: %d leaves, want %d", goldenLeaves, len(lines), len(m.Tables))
	}
	for i, line := range lines {
		b, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.decodeLeaf(b, &m.Tables[i], maxLeafMem)
		if err != nil {
			t.Fatalf("decodeLeaf(%s, leaf %d): %v", goldenLeaves, i, err)
		}
		if !reflect.DeepEqual(got, m.Tables[i].Files) {
			t.Errorf("decodeLeaf(%s, leaf %d) =\n%+v\nwant\n%+v", goldenLeaves, i, got, m.Tables[i].Files)
		}
	}
}

func TestLeafRoundTrip(t *testing.T) {
	m := sample()
	a, b := leaves(m), leaves(m)
	if !reflect.DeepEqual(a, b) {
		t.Error("encodeLeaf is not deterministic")
	}
	for i := range m.Tables {
		got, err := m.decodeLeaf(a[i], &m.Tables[i], maxLeafMem)
		if err != nil || !reflect.DeepEqual(got, m.Tables[i].Files) {
			t.Errorf("decodeLeaf(encodeLeaf(table %d)) = %v, %+v", i, err, got)
		}
	}
	// An mtime in another zone encodes as in UTC, and is not modified.
	loc := time.FixedZone("X", 3600)
	m2 := sample()
	m2.Tables[0].Files[0].MTime = m2.Tables[0].Files[0].MTime.In(loc)
	if !bytes.Equal(leaves(m2)[0], a[0]) {
		t.Error("the zone of an mtime changes the encoding")
	}
	if m2.Tables[0].Files[0].MTime.Location() != loc {
		t.Error("encodeLeaf modified its argument")
	}
	// A leaf is of one host, keyspace and table.
	other := sample()
	other.Host = "node-2"
	if _, err := other.decodeLeaf(a[0], &other.Tables[0], maxLeafMem); err == nil || !strings.Contains(err.Error(), "not a leaf of this table") {
		t.Errorf("a leaf of another host: %v", err)
	}
	if _, err := m.decodeLeaf(a[0], &m.Tables[1], maxLeafMem); err == nil || !strings.Contains(err.Error(), "not a leaf of this table") {
		t.Errorf("a leaf of another table: %v", err)
	}
}

func TestRefsAndTotalSize(t *testing.T) {
	m := sample()
	var n int
	var sum int64
	for r := range m.Refs() {
		n++
		sum += int64(r.Len)
	}
	if n != 8 || sum != m.TotalSize() || m.TotalSize() != 100+5<<20+17+92+10+20+5 {
		t.Errorf("Refs: %d refs of %d bytes, TotalSize %d", n, sum, m.TotalSize())
	}
	for range m.Refs() {
		break // stopping early must not panic
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(m *Manifest)
		want   string // substring of the error
	}{
		{"format", func(m *Manifest) { m.Format = 3 }, "manifest format 3 not supported"},
		{"session", func(m *Manifest) { m.Session = "../x" }, "session"},
		{"name", func(m *Manifest) { m.Name += "x" }, "name does not match"},
		{"host", func(m *Manifest) { m.Host = "a/b" }, "host"},
		{"host empty", func(m *Manifest) { m.Host = "" }, "host"},
		{"keyspace", func(m *Manifest) { m.Keyspace = "k-s" }, "keyspace"},
		{"zero time", func(m *Manifest) { m.Time = time.Time{} }, "year 1"},
		{"nanoseconds", func(m *Manifest) { m.Time = m.Time.Add(1) }, "microsecond"},
		{"version", func(m *Manifest) { m.CassandraVersion = "5.0\n" }, "cassandra version"},
		{"table name", func(m *Manifest) { m.Tables[0].Name = "" }, "table"},
		{"table id", func(m *Manifest) { m.Tables[0].ID = strings.ToUpper(id32) }, "id"},
		{"tables unsorted", func(m *Manifest) { m.Tables[0], m.Tables[1] = m.Tables[1], m.Tables[0] }, "not sorted"},
		{"tables repeated", func(m *Manifest) { m.Tables[1] = m.Tables[0] }, "not sorted"},
		{"files unsorted", func(m *Manifest) { f := m.Tables[0].Files; f[0], f[1] = f[1], f[0] }, "not sorted"},
		{"files repeated", func(m *Manifest) { f := m.Tables[0].Files; f[1] = f[0] }, "not sorted"},
		{"path absolute", func(m *Manifest) { m.Tables[0].Files[0].Path = "/" + m.Tables[0].Files[0].Path }, "absolute"},
		{"path dotdot", func(m *Manifest) { m.Tables[0].Files[0].Path = "ks/../ks/events-" + id32 + "/nb-1-big-Data.db" }, "dot segment"},
		{"path backslash", func(m *Manifest) { m.Tables[0].Files[0].Path = `ks\events-` + id32 + `\nb-1-big-Data.db` }, "backslash"},
		{"path other keyspace", func(m *Manifest) { m.Tables[1].Files[0].Path = "ks2/legacy-hd-5-Data.db" }, "not in keyspace"},
		{"path other table", func(m *Manifest) { m.Tables[1].Files[0].Path = "ks/other-hd-5-Data.db" }, "not in table"},
		{"path other table id", func(m *Manifest) { m.Tables[0].ID = "fedcba9876543210fedcba9876543210" }, "not in table"},
		{"path not a component", func(m *Manifest) { m.Tables[1].Files[0].Path = "ks/legacy/legacy.json" }, "not an SSTable component"},
		{"path temporary", func(m *Manifest) { m.Tables[1].Files[0].Path = "ks/legacy-tmp-hd-5-Data.db" }, "temporary"},
		{"path snapshot", func(m *Manifest) {
			m.Tables[0].Files[0].Path = "ks/events-" + id32 + "/snapshots/1/nb-1-big-Data.db"
		}, "snapshot"},
		{"root", func(m *Manifest) { m.Tables[0].Files[0].Root = "/data\n" }, "root"},
		{"size", func(m *Manifest) { m.Tables[0].Files[0].Size = -1 }, "size -1"},
		{"size vs chunks", func(m *Manifest) { m.Tables[0].Files[0].Size++ }, "chunk lengths add up to 100 bytes, size is 101"},
		{"chunks exceed size", func(m *Manifest) { m.Tables[0].Files[0].Size-- }, "more than 99"},
		{"chunk length 0", func(m *Manifest) { m.Tables[0].Files[0].Chunks[0].Len = 0 }, "length 0"},
		{"mode", func(m *Manifest) { m.Tables[0].Files[0].Mode = 0o100644 }, "mode"},
		{"sum", func(m *Manifest) { m.Tables[0].Files[0].Sum = chunk.ID{} }, "BLAKE3"},
		{"user", func(m *Manifest) { m.Tables[0].Files[0].User = "a\x00b" }, "user"},
		{"mtime", func(m *Manifest) { m.Tables[0].Files[0].MTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "mtime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sample()
			tt.modify(m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, _, err := Encode(m, chunk.Namer{}); err == nil {
				t.Error("Encode accepted it")
			}
		})
	}
}

// uvarintAt returns the uvarint at b[i:] and its length.
func uvarintAt(b []byte, i int) (uint64, int) { return binary.Uvarint(b[i:]) }

// TestLeafRejects: every cut of a leaf, every byte past it, and each way
// of writing it other than its one encoding is refused, never a panic.
func TestLeafRejects(t *testing.T) {
	m := sample()
	tb := &m.Tables[0]
	good := m.encodeLeaf(tb, tb.Files)
	for n := range len(good) {
		if _, err := m.decodeLeaf(good[:n], tb, maxLeafMem); err == nil {
			t.Fatalf("a leaf cut to %d of its %d bytes decoded", n, len(good))
		}
	}
	if _, err := m.decodeLeaf(append(bytes.Clone(good), 0), tb, maxLeafMem); err == nil || !strings.Contains(err.Error(), "after the last file") {
		t.Errorf("a byte after the leaf: %v", err)
	}
	// The header: magic, format, host, keyspace, table, table id, files.
	i := len(leafMagic)
	_, k := uvarintAt(good, i)
	formatAt := i
	i += k
	for range 4 {
		n, k := uvarintAt(good, i)
		i += k + int(n)
	}
	filesAt := i
	nfiles, k := uvarintAt(good, filesAt)
	firstFile := filesAt + k
	splice := func(at, drop int, with ...byte) []byte {
		b := append(bytes.Clone(good[:at]), with...)
		return append(b, good[at+drop:]...)
	}
	_, k1 := uvarintAt(good, firstFile+1)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"magic", splice(0, 1, 'X'), "not a leaf"},
		{"format", splice(formatAt, 1, 5), "leaf format 5 not supported"},
		{"format padded", splice(formatAt, 1, 0x84, 0), "not in its one encoding"},
		{"files padded", splice(filesAt, k, byte(nfiles)|0x80, 0), "not in its one encoding"},
		{"more files than bytes", splice(filesAt, k, 0xff, 0xff, 0xff, 0xff, 0x0f), "files in"},
		{"shared prefix past the previous path", splice(firstFile, 1, 1), "path prefix"},
		{"path too long", splice(firstFile+1, k1, binary.AppendUvarint(nil, maxValue+1)...), "path"},
		{"varint too long", splice(filesAt, k, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "bad varint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.decodeLeaf(tt.in, tb, maxLeafMem)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeLeaf = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// Flags other than 0 and 1: a leaf of one unstored file ends in its
	// flags, its (zero) sum and its count of chunks (0).
	one := tb.Files[0]
	one.Unstored, one.Sum, one.Chunks, one.Size = true, chunk.ID{}, []chunk.Ref{}, 0
	unstored := m.encodeLeaf(tb, []File{one})
	at := len(unstored) - 1 - idSize - 1
	if unstored[at] != 1 {
		t.Fatalf("byte %d of the leaf is %d, not the flags", at, unstored[at])
	}
	if _, err := m.decodeLeaf(splice2(unstored, at, 4), tb, maxLeafMem); err == nil || !strings.Contains(err.Error(), "flags") {
		t.Errorf("flags 4: %v", err)
	}
	if _, err := m.decodeLeaf(splice2(unstored, at, 3), tb, maxLeafMem); err == nil || !strings.Contains(err.Error(), "without chunks") {
		t.Errorf("flags 3 on a file without chunks: %v", err)
	}
	if _, err := m.decodeLeaf(unstored, tb, maxLeafMem); err != nil {
		t.Errorf("an unstored file: %v", err)
	}
}

// splice2 returns b with the byte at i set to v.
func splice2(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

// The memory decodeLeaf charges is what the files cost by MemCost, so
// Encode refuses what every reader would.
func TestLeafMemoryBound(t *testing.T) {
	for _, m := range []*Manifest{sample(), bigManifest(3_000)} {
		tb := &m.Tables[0]
		b := m.encodeLeaf(tb, tb.Files)
		var c int64
		for i := range tb.Files {
			c += tb.Files[i].memCost()
		}
		if _, err := m.decodeLeaf(b, tb, c); err != nil {
			t.Errorf("%s: decodeLeaf within the files' cost %d: %v", m.Name, c, err)
		}
		if _, err := m.decodeLeaf(b, tb, c-1); err == nil || !strings.Contains(err.Error(), "bytes in memory") {
			t.Errorf("%s: decodeLeaf within cost-1 = %v, want the memory bound", m.Name, err)
		}
	}
	// A manifest of any size encodes, but not a file past what a reader
	// joins of its parts.
	m := bigManifest(3_000)
	f := &m.Tables[0].Files[0]
	f.Chunks = slices.Repeat(f.Chunks[:1], int(maxFileMem/refSize)+1)
	f.Size = int64(len(f.Chunks)) * int64(f.Chunks[0].Len)
	if _, _, err := Encode(m, chunk.Namer{}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "MiB a reader accepts") {
		t.Fatalf("Encode of a file of %d MiB in memory = %v, want ErrTooLarge", f.memCost()>>20, err)
	}
}

// Decoding a leaf allocates about what it decodes to.
func TestLeafDecodeAllocates(t *testing.T) {
	m := bigManifest(16_000)
	tb := &m.Tables[0]
	b := m.encodeLeaf(tb, tb.Files)
	var files []File
	var err error
	total, kept := allocated(func() { files, err = m.decodeLeaf(b, tb, maxLeafMem) })
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(files)
	t.Logf("%d files of %d chunks in %d KiB: decode allocated %d KiB, keeps %d KiB", len(files), 16_000, len(b)>>10, total>>10, kept>>10)
	if total > 3*uint64(len(b)) {
		t.Errorf("decodeLeaf allocated %d KiB for a leaf of %d KiB", total>>10, len(b)>>10)
	}
}

func FuzzDecodeLeaf(f *testing.F) {
	m := sample()
	for _, b := range leaves(m) {
		f.Add(b)
	}
	f.Add([]byte(leafMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := range m.Tables {
			tb := &m.Tables[i]
			files, err := m.decodeLeaf(b, tb, maxLeafMem)
			if err != nil {
				continue
			}
			if again := m.encodeLeaf(tb, files); !bytes.Equal(again, b) {
				t.Fatalf("decodeLeaf accepted bytes encodeLeaf does not write")
			}
			leaf := leafOf(m.Host, m.Keyspace, Table{Name: tb.Name, ID: tb.ID, Files: files})
			if err := leaf.Validate(); err != nil {
				t.Fatalf("decodeLeaf accepted files Validate refuses: %v", err)
			}
		}
	})
}

// A file of one chunk has that chunk's BLAKE3 as its sum: written once,
// and the leaf that writes it twice is not the one encoding.
func TestLeafSumIsChunk(t *testing.T) {
	m := sample()
	tb := &m.Tables[1]
	f := &tb.Files[0]
	f.Sum = f.Chunks[0].ID
	if len(f.Chunks) != 1 {
		t.Fatalf("sample file of %d chunks", len(f.Chunks))
	}
	b := m.encodeLeaf(tb, tb.Files)
	got, err := m.decodeLeaf(b, tb, maxLeafMem)
	if err != nil || !reflect.DeepEqual(got, tb.Files) {
		t.Fatalf("round trip: %v, %+v", err, got)
	}
	// The same file with its sum written out: flags 0, then the sum.
	other := sample()
	twice := other.encodeLeaf(&other.Tables[1], other.Tables[1].Files)
	if len(twice)-len(b) != idSize {
		t.Errorf("a one-chunk file's leaf is %d bytes with the sum written once, %d with it apart: want %d fewer", len(b), len(twice), idSize)
	}
	at := firstDiffAt(b, twice)
	forged := append(bytes.Clone(b[:at]), 0)
	forged = append(forged, f.Sum[:]...)
	forged = append(forged, b[at+1:]...)
	if _, err := m.decodeLeaf(forged, tb, maxLeafMem); err == nil || !strings.Contains(err.Error(), "one encoding") {
		t.Errorf("the sum written out though it is the chunk's ID: %v", err)
	}
}

func firstDiffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
