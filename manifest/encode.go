package manifest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest/sstable"
)

// The encoding (format 1) is the manifest as canonical JSON, one line plus a
// newline, inside a single gzip member with a fixed header (no name, no
// comment, mtime 0, OS 255).
//
// Canonical means: the fields in the order of the Go structs, tables sorted
// by name then ID, files by path then root, no insignificant white space, no
// HTML escaping, empty lists as [], times in UTC as RFC 3339 with the
// fraction Go's encoding/json writes (the manifest time has at most
// microseconds). Decode accepts only bytes whose JSON is exactly what Encode
// writes for the manifest they describe, so one manifest has one JSON text:
// duplicate keys, differently cased keys, unknown fields, other time zones or
// extra white space are all rejected.
//
// Why gzip rather than plain JSON: a manifest is mostly hex chunk IDs and
// repeated keys, which gzip halves or better, and its CRC-32 catches a
// truncated or damaged manifest before JSON parsing starts. The compressed
// bytes may differ between Go releases (compress/flate is not frozen); the
// JSON inside may not, and the golden file testdata/manifest-v1.json pins it.

// MaxDecodedSize bounds the JSON Decode inflates, against gzip bombs. At
// about 100 bytes per chunk it allows some ten million chunks, tens of
// terabytes of one keyspace at MiB-scale chunks.
const MaxDecodedSize = 1 << 30

// Encode validates m and returns its encoding. m is not modified; nil lists
// are written as empty ones and times in UTC.
func Encode(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	js, err := canonicalJSON(m)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.Name, err)
	}
	var buf bytes.Buffer
	// A gzip writer allocates about 1 MB; continuous backup writes many
	// manifests, so writers are reused (Reset keeps the zero Header: no
	// name, no comment, mtime 0).
	zw, _ := gzipWriters.Get().(*gzip.Writer)
	if zw == nil {
		zw = gzip.NewWriter(&buf)
	} else {
		zw.Reset(&buf)
	}
	defer gzipWriters.Put(zw)
	if _, err := zw.Write(js); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var gzipWriters sync.Pool

// canonicalJSON encodes a normalized copy of m.
func canonicalJSON(m *Manifest) ([]byte, error) {
	c := *m
	c.Time = c.Time.UTC()
	c.Tables = make([]Table, len(m.Tables))
	for i, t := range m.Tables {
		t.Files = slices.Clone(t.Files)
		if t.Files == nil {
			t.Files = []File{}
		}
		for j := range t.Files {
			f := &t.Files[j]
			f.MTime = f.MTime.UTC()
			if f.Chunks == nil {
				f.Chunks = []chunk.Ref{}
			}
		}
		c.Tables[i] = t
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode parses and validates an encoded manifest. It never panics, and it
// refuses a format other than FormatVersion with "manifest format N not
// supported", input that inflates beyond MaxDecodedSize, anything after the
// gzip member, and JSON that is not the canonical encoding of a valid
// manifest. Empty lists decode as empty, non-nil slices.
func Decode(b []byte) (*Manifest, error) {
	return decode(b, MaxDecodedSize)
}

func decode(b []byte, limit int64) (*Manifest, error) {
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("manifest: not gzip: %w", err)
	}
	zr.Multistream(false)
	js, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("manifest: gunzip: %w", err)
	}
	if int64(len(js)) > limit {
		return nil, fmt.Errorf("manifest: more than %d bytes uncompressed", limit)
	}
	if br.Len() != 0 {
		return nil, errors.New("manifest: data after the gzip stream")
	}
	return decodeJSON(js)
}

func decodeJSON(js []byte) (*Manifest, error) {
	var head struct {
		Format json.RawMessage `json:"format"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if head.Format == nil {
		return nil, errors.New("manifest: no format field")
	}
	var format int
	if err := json.Unmarshal(head.Format, &format); err != nil {
		return nil, fmt.Errorf("manifest: format %.20s: not a number", head.Format)
	}
	if format != FormatVersion {
		return nil, fmt.Errorf("manifest format %d not supported", format)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	m := new(Manifest)
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	canon, err := canonicalJSON(m)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.Name, err)
	}
	if !bytes.Equal(canon, js) {
		return nil, fmt.Errorf("manifest %s: not in canonical form (at byte %d)", m.Name, firstDiff(canon, js))
	}
	return m, nil
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Sort puts tables in order by name then ID, and each table's files by
// path then root, as Validate requires.
func (m *Manifest) Sort() {
	slices.SortFunc(m.Tables, compareTables)
	for i := range m.Tables {
		slices.SortFunc(m.Tables[i].Files, compareFiles)
	}
}

func compareTables(a, b Table) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func compareFiles(a, b File) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	return strings.Compare(a.Root, b.Root)
}

// Refs yields every chunk reference of every file, in manifest order; a
// chunk used twice is yielded twice.
func (m *Manifest) Refs() iter.Seq[chunk.Ref] {
	return func(yield func(chunk.Ref) bool) {
		for _, t := range m.Tables {
			for _, f := range t.Files {
				for _, r := range f.Chunks {
					if !yield(r) {
						return
					}
				}
			}
		}
	}
}

// TotalSize returns the sum of the sizes of all files.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, t := range m.Tables {
		for _, f := range t.Files {
			n += f.Size
		}
	}
	return n
}

// Validate checks every field of m: the format, the name against host,
// keyspace and time (UTC, whole microseconds, years 1970 – 9999), tables
// sorted by name then ID and unique, and for each file a clean relative path
// that sstable.ParsePath reads as a final SSTable component of this keyspace and
// table (not in a snapshot or backups/ directory), files sorted by path then
// root and unique, a size ≥ 0, permission bits only, a non-zero BLAKE3 sum,
// and chunks of positive length that add up to the size.
func (m *Manifest) Validate() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("manifest format %d not supported", m.Format)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("manifest %.300q: %s", m.Name, fmt.Sprintf(format, a...))
	}
	if !sstable.IsName(m.Keyspace) {
		return bad("keyspace %.300q: want letters, digits and '_'", m.Keyspace)
	}
	if err := checkHost(m.Host); err != nil {
		return bad("%v", err)
	}
	if err := checkTime(m.Time); err != nil {
		return bad("time: %v", err)
	}
	if m.Time.Location() != time.UTC {
		return bad("time %s: not UTC", m.Time)
	}
	if m.Time.Nanosecond()%1000 != 0 {
		return bad("time %s: finer than a microsecond", m.Time)
	}
	if want := BackupName(m.Time, m.Keyspace, m.Host); m.Name != want {
		return bad("name does not match host, keyspace and time (want %s)", want)
	}
	if m.Session != "" && !isHexID(m.Session) {
		return bad("session %.100q: want 24 lowercase hex digits", m.Session)
	}
	if !printableASCII(m.CassandraVersion, 64) {
		return bad("cassandra version %.100q: want at most 64 printable ASCII characters", m.CassandraVersion)
	}
	for i := range m.Tables {
		t := &m.Tables[i]
		if !sstable.IsName(t.Name) {
			return bad("table %.300q: want letters, digits and '_'", t.Name)
		}
		if t.ID != "" && !sstable.IsTableID(t.ID) {
			return bad("table %s: id %.100q: want 32 lowercase hex digits", t.Name, t.ID)
		}
		if i > 0 && compareTables(m.Tables[i-1], *t) >= 0 {
			return bad("table %s %s: tables not sorted by name and id, or repeated", t.Name, t.ID)
		}
		for j := range t.Files {
			f := &t.Files[j]
			if err := m.checkFile(t, f); err != nil {
				return bad("table %s: file %.300q: %v", t.Name, f.Path, err)
			}
			if j > 0 && compareFiles(t.Files[j-1], *f) >= 0 {
				return bad("table %s: file %s: files not sorted by path and root, or repeated", t.Name, f.Path)
			}
		}
	}
	return nil
}

func (m *Manifest) checkFile(t *Table, f *File) error {
	p, err := sstable.ParsePath(f.Path)
	switch {
	case err != nil:
		return err
	case p.Kind != sstable.KindComponent:
		return errors.New("not an SSTable component")
	case p.Temporary:
		return errors.New("a temporary file")
	case p.Snapshot != "" || p.InBackups:
		return errors.New("in a snapshot or backups directory")
	case p.Keyspace != m.Keyspace:
		return fmt.Errorf("not in keyspace %s", m.Keyspace)
	case p.Table != t.Name || p.TableID != t.ID:
		return fmt.Errorf("not in table %s %s", t.Name, t.ID)
	}
	// Root only records where the file was read (restore writes below its
	// own data directory), so any printable path is accepted as given.
	if !utf8.ValidString(f.Root) || hasControl(f.Root) || len(f.Root) > 4096 {
		return fmt.Errorf("root %.300q: want a printable path of at most 4096 bytes", f.Root)
	}
	if f.Size < 0 {
		return fmt.Errorf("size %d", f.Size)
	}
	if f.Mode&^0o7777 != 0 {
		return fmt.Errorf("mode %#o: want permission bits only", f.Mode)
	}
	if !validOwner(f.User) || !validOwner(f.Group) {
		return fmt.Errorf("user %.100q or group %.100q: want at most 256 printable characters", f.User, f.Group)
	}
	if y := f.MTime.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("mtime: year %d: want 0 to 9999", y)
	}
	if f.Unstored {
		// Recorded by --ignore-existing: known to exist, never read.
		if len(f.Chunks) != 0 || !f.Sum.IsZero() {
			return errors.New("unstored file with chunks or a sum")
		}
		return nil
	}
	if f.Sum.IsZero() {
		return errors.New("no BLAKE3 sum")
	}
	var total int64
	for k, r := range f.Chunks {
		if r.Len == 0 {
			return fmt.Errorf("chunk %d: length 0", k)
		}
		total += int64(r.Len)
		if total > f.Size {
			break // also keeps total from overflowing
		}
	}
	if total != f.Size {
		return fmt.Errorf("chunk lengths add up to %s bytes, size is %d", atLeast(total, f.Size), f.Size)
	}
	return nil
}

func atLeast(total, size int64) string {
	if total > size {
		return fmt.Sprintf("more than %d", size)
	}
	return fmt.Sprint(total)
}

// checkTime keeps times that JSON and backup names can hold, and refuses the
// zero time a forgotten field has.
func checkTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return fmt.Errorf("year %d: want 1970 to 9999", y)
	}
	return nil
}

func printableASCII(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func validOwner(s string) bool {
	return len(s) <= 256 && utf8.ValidString(s) && !hasControl(s)
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return true
		}
	}
	return false
}

// isHexID reports whether s is a session ID: 24 lowercase hex digits.
func isHexID(s string) bool {
	return len(s) == 24 && strings.Trim(s, "0123456789abcdef") == ""
}
