package manifest

import (
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// id32 is a table ID as in a 2.1+ table directory name.
const id32 = "0123456789abcdef0123456789abcdef"

const (
	goldenJSON = "testdata/manifest-v3.json"    // the canonical JSON Encode must write
	goldenGzip = "testdata/manifest-v3.json.gz" // an encoding Decode must read forever
)

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

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestGolden(t *testing.T) {
	m := sample()
	b, err := encodeFlat(m)
	if err != nil {
		t.Fatal(err)
	}
	js := gunzip(t, b)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenJSON, js, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenGzip, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenJSON)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(js, want) {
		t.Errorf("Encode JSON differs from %s at byte %d: the format changed; bump FormatVersion or, if intended, run go test -update\n got %s\nwant %s",
			goldenJSON, firstDiff(js, want), js, want)
	}
	stored, err := os.ReadFile(goldenGzip)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeFlat(stored)
	if err != nil {
		t.Fatalf("decodeFlat(%s): %v", goldenGzip, err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("decodeFlat(%s) =\n%+v\nwant\n%+v", goldenGzip, got, m)
	}
	// The header is fixed: no name, no mtime.
	if !bytes.Equal(b[:10], []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) {
		t.Errorf("gzip header % x, want fixed", b[:10])
	}
}

func TestRoundTrip(t *testing.T) {
	m := sample()
	b1, err := encodeFlat(m)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := encodeFlat(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Error("Encode is not deterministic")
	}
	got, err := decodeFlat(b1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("decodeFlat(encodeFlat(m)) =\n%+v\nwant\n%+v", got, m)
	}

	// Times in another zone and nil lists encode like UTC and empty lists.
	loc := time.FixedZone("X", 3600)
	m2 := sample()
	m2.Time = m2.Time.In(loc)
	m2.Tables[0].Files[0].MTime = m2.Tables[0].Files[0].MTime.In(loc)
	m2.Tables[2].Files = nil
	if err := m2.Validate(); err == nil {
		t.Error("Validate accepts a manifest time that is not UTC")
	}
	m2.Time = m2.Time.UTC()
	b3, err := encodeFlat(m2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gunzip(t, b3), gunzip(t, b1)) {
		t.Error("mtime zone or nil list changes the encoding")
	}
	if m2.Tables[2].Files != nil || m2.Tables[0].Files[0].MTime.Location() != loc {
		t.Error("Encode modified its argument")
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
		{"format", func(m *Manifest) { m.Format = 4 }, "manifest format 4 not supported"},
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
			if _, err := encodeFlat(m); err == nil {
				t.Error("Encode accepted it")
			}
		})
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestDecodeRejects(t *testing.T) {
	golden, err := os.ReadFile(goldenJSON)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte {
		if !bytes.Contains(golden, []byte(old)) {
			t.Fatalf("golden has no %q", old)
		}
		return gz(bytes.Replace(golden, []byte(old), []byte(new), 1))
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not gzip"},
		{"plain JSON", golden, "not gzip"},
		{"truncated", gz(golden)[:40], "gunzip"},
		{"trailing data", append(gz(golden), 0), "after the gzip stream"},
		{"two members", append(gz(golden), gz(golden)...), "after the gzip stream"},
		{"format 4", edit(`"format":3`, `"format":4`), "manifest format 4 not supported"},
		{"format missing", edit(`"format":3,`, ``), "no format field"},
		{"format string", edit(`"format":3`, `"format":"3"`), "not a number"},
		{"not JSON", gz([]byte("{")), "manifest:"},
		{"unknown field", edit(`"format":3,`, `"format":3,"x":1,`), "unknown field"},
		{"duplicate key", edit(`"format":3,`, `"format":3,"format":3,`), "canonical"},
		{"key case", edit(`"host"`, `"Host"`), "canonical"},
		{"white space", edit(`"format":3,`, `"format": 3,`), "canonical"},
		{"time zone", edit(`"2026-11-26T01:02:03.456789Z"`, `"2026-11-26T02:02:03.456789+01:00"`), "not UTC"},
		{"mtime zone", edit(`"2026-11-25T23:59:59.123456789Z"`, `"2026-11-26T00:59:59.123456789+01:00"`), "canonical"},
		{"trailing zeros", edit(`"2026-11-26T01:02:03.456789Z"`, `"2026-11-26T01:02:03.456789000Z"`), "canonical"},
		{"no newline", gz(bytes.TrimSuffix(golden, []byte("\n"))), "canonical"},
		{"trailing JSON", gz(append(bytes.Clone(golden), []byte("{}\n")...)), "after top-level value"},
		{"bad chunk id", edit(`"chunks":[{"id":"`, `"chunks":[{"id":"zz`), "chunk id"},
		{"negative len", edit(`"len":100}`, `"len":-100}`), "manifest:"},
		{"size", edit(`"size":100,`, `"size":101,`), "chunk lengths"},
		{"dotdot path", edit(`"path":"ks/events-`, `"path":"ks/../ks/events-`), "dot segment"},
		{"null chunks", edit(`"chunks":[]`, `"chunks":null`), "canonical"},
		{"escaped slash", edit(`"path":"ks/legacy-hd-5-Data.db"`, `"path":"ks\/legacy-hd-5-Data.db"`), "canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decodeFlat(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode = %v, %v; want an error containing %q", m != nil, err, tt.want)
			}
		})
	}
}

// zeros is a reader of n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), z.n)]
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func TestDecodeBomb(t *testing.T) {
	// decode is Decode with the limit as a parameter, so a small bomb will do.
	const limit = 1 << 20
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.Copy(zw, &zeros{64 << 20}); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	if _, err := decode(bytes.NewReader(buf.Bytes()), limit, limit); err == nil {
		t.Errorf("decode of a %d-byte gzip bomb of zeros: no error", buf.Len())
	}
	// A bomb of valid JSON values: a limit stops it, here the one on
	// memory, as tables take 57 bytes for 24 of JSON.
	buf.Reset()
	zw, _ = gzip.NewWriterLevel(&buf, gzip.BestCompression)
	io.WriteString(zw, `{"format":3,"name":"x","tables":[`)
	for range 1 << 16 {
		io.WriteString(zw, `{"name":"t","files":[]},`)
	}
	zw.Close()
	_, err := decode(bytes.NewReader(buf.Bytes()), limit, limit/2)
	if err == nil || !strings.Contains(err.Error(), "more than 524288 bytes in memory") {
		t.Errorf("decode of a %d-byte gzip bomb: %v", buf.Len(), err)
	}
}

func fuzzSeeds(f *testing.F) (golden, stored []byte) {
	golden, err := os.ReadFile(goldenJSON)
	if err != nil {
		f.Fatal(err)
	}
	stored, err = os.ReadFile(filepath.FromSlash(goldenGzip))
	if err != nil {
		f.Fatal(err)
	}
	return golden, stored
}

// checkDecoded is what every accepted input must satisfy: it validates, and
// it re-encodes to the very JSON it came from.
func checkDecoded(t *testing.T, js []byte, m *Manifest) {
	if err := m.Validate(); err != nil {
		t.Fatalf("Decode accepted a manifest Validate rejects: %v", err)
	}
	b, err := encodeFlat(m)
	if err != nil {
		t.Fatalf("Encode of a decoded manifest: %v", err)
	}
	if got := gunzip(t, b); !bytes.Equal(got, js) {
		t.Fatalf("accepted JSON is not canonical:\n got %q\nwant %q", js, got)
	}
	m2, err := decodeFlat(b)
	if err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("decodeFlat(encodeFlat(decodeFlat(b))) = %v, differs", err)
	}
}

func FuzzDecode(f *testing.F) {
	golden, stored := fuzzSeeds(f)
	f.Add(stored)
	f.Add(gz(golden))
	f.Add(gz([]byte(`{"format":4}`)))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeFlat(b)
		if err != nil {
			return
		}
		checkDecoded(t, gunzip(t, b), m)
	})
}

// FuzzDecodeJSON fuzzes the JSON inside the gzip stream, which FuzzDecode's
// mutations rarely reach past the CRC.
func FuzzDecodeJSON(f *testing.F) {
	golden, _ := fuzzSeeds(f)
	f.Add(golden)
	f.Add([]byte(`{"format":3}`))
	f.Add([]byte(`{"format":3,"name":"2026_11_26T01_02_03_456789-ks-h","host":"h","keyspace":"ks","time":"2026-11-26T01:02:03.456789Z","tables":[]}` + "\n"))
	f.Fuzz(func(t *testing.T, js []byte) {
		m, err := decodeFlat(gz(js))
		if err != nil {
			return
		}
		checkDecoded(t, js, m)
	})
}
