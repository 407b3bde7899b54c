package manifest

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"reflect"
	"slices"
	"strconv"
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
// damaged manifest whose JSON still parses (Decode reads to the end of the
// gzip member, checksum included, before it accepts one). The compressed
// bytes may differ between Go releases (compress/flate is not frozen); the
// JSON inside may not, and the golden file testdata/manifest-v1.json pins it.

// MaxDecodedSize bounds the JSON Decode inflates, against gzip bombs and
// valid but huge manifests.
const MaxDecodedSize = 256 << 20

// MaxDecodedMemory bounds what a decoded manifest holds in memory: its
// tables, files and chunk references at their Go sizes plus the bytes of
// its strings, counted as they are decoded (Manifest.MemCost). It holds
// 1.16 million chunk references of 36 bytes (4.5 TiB of one keyspace on
// one node at the default mean chunk of 4 MiB), or some 140,000 files
// without chunks. Without it `{},`, which decodes to a 184-byte File, made a bomb
// within MaxDecodedSize take 16 GB. A command holds a decoded manifest and,
// while it decodes one, the pieces it assembles it from, and the garbage
// collector lets the heap grow to twice what is live: at this bound every
// command stays under 256 MiB (TestRSSAtObjectLimits in cmd/cassback).
// Encode refuses a manifest over it, so no backup writes what no reader
// could read.
const MaxDecodedMemory = 40 << 20

// maxValue bounds one JSON value Decode reads other than the lists it
// streams (tables, files, chunks): a name, a path, a time. The JSON
// decoder holds one value at a time, so this bounds its buffer.
const maxValue = 64 << 10

// maxFields bounds the fields of one JSON object (the structs have at most
// 13): repeated keys are not canonical, and must not be read forever.
const maxFields = 32

// encodeFlat validates m and returns its flat encoding, which a leaf of
// a manifest's tree is (tree.go). m is not modified; nil lists
// are written as empty ones and times in UTC. The JSON is written straight
// into the compressor, a piece at a time, so memory is the compressed
// manifest.
func encodeFlat(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if c := m.MemCost(); c > MaxDecodedMemory {
		return nil, fmt.Errorf("manifest %s: %w: %d files, %d chunk references take %d MiB in memory, more than the %d MiB a reader accepts",
			m.Name, ErrTooLarge, m.countFiles(), m.countRefs(), c>>20, MaxDecodedMemory>>20)
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
	if err := writeCanonical(zw, m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.Name, err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var gzipWriters sync.Pool

// canonWriters recycles writeCanonical's 64 KiB buffers: validate and
// purge decode thousands of manifests, and each decode writes its manifest
// again to check that it is canonical.
var canonWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// writeCanonical writes the canonical JSON of m to w: what encoding/json
// writes for m with times in UTC and nil lists empty, built a piece at a
// time so that no copy of the whole JSON is ever held. Each struct is
// encoded by encoding/json with its list emptied, and the list's elements
// are written between the brackets; chunk references, which are most of a
// manifest, are formatted directly (TestRefJSON pins them to
// encoding/json's).
func writeCanonical(w io.Writer, m *Manifest) error {
	bw := canonWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		canonWriters.Put(bw)
	}()
	c := &canon{w: bw}
	c.enc = json.NewEncoder(&c.buf)
	c.enc.SetEscapeHTML(false)
	mc := *m
	mc.Time, mc.Tables = mc.Time.UTC(), []Table{}
	post := c.open(&mc, `"tables":[]`)
	for i := range m.Tables {
		c.sep(i)
		tc := m.Tables[i]
		tc.Files = []File{}
		tpost := c.open(&tc, `"files":[]`)
		for j := range m.Tables[i].Files {
			c.sep(j)
			c.file(&m.Tables[i].Files[j])
		}
		c.write(tpost)
	}
	c.write(post)
	if c.err != nil {
		return c.err
	}
	return bw.Flush()
}

// canon writes canonical JSON pieces, keeping the first error.
type canon struct {
	w   *bufio.Writer
	buf bytes.Buffer
	enc *json.Encoder // into buf
	ref []byte        // scratch for one chunk reference
	err error
}

func (c *canon) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *canon) sep(i int) {
	if i > 0 {
		c.write([]byte{','})
	}
}

// open writes the JSON of v up to the '[' of the empty list marker and
// returns the rest: the ']' and what follows.
func (c *canon) open(v any, marker string) []byte {
	c.buf.Reset()
	if err := c.enc.Encode(v); err != nil {
		c.err = cmp.Or(c.err, err)
		return nil
	}
	b := c.buf.Bytes()
	if _, top := v.(*Manifest); !top {
		b = bytes.TrimSuffix(b, []byte("\n")) // only the whole manifest ends in a newline
	}
	// The marker is the list's key: a string value that holds it is
	// escaped (\"), and the list is the last field but omitempty ones.
	k := bytes.LastIndex(b, []byte(marker))
	if k < 0 {
		c.err = cmp.Or(c.err, fmt.Errorf("internal error: no %s in %s", marker, b))
		return nil
	}
	k += len(marker) - 1
	c.write(b[:k])
	return bytes.Clone(b[k:])
}

// file writes the canonical JSON of one file.
func (c *canon) file(f *File) {
	fc := *f
	fc.MTime, fc.Chunks = fc.MTime.UTC(), []chunk.Ref{}
	post := c.open(&fc, `"chunks":[]`)
	for k, r := range f.Chunks {
		c.ref = c.ref[:0]
		if k > 0 {
			c.ref = append(c.ref, ',')
		}
		c.ref = appendRef(c.ref, r)
		c.write(c.ref)
	}
	c.write(post)
}

// appendRef appends the JSON encoding/json writes for r.
func appendRef(b []byte, r chunk.Ref) []byte {
	b = append(b, `{"id":"`...)
	b = hex.AppendEncode(b, r.ID[:])
	b = append(b, `","len":`...)
	b = strconv.AppendUint(b, uint64(r.Len), 10)
	return append(b, '}')
}

// decodeFlat parses and validates a flat encoded manifest (a leaf). It never panics, and it
// refuses a format other than FormatVersion with "manifest format N not
// supported", input that inflates beyond MaxDecodedSize or decodes to more
// than MaxDecodedMemory, anything after the
// gzip member, and JSON that is not the canonical encoding of a valid
// manifest. Empty lists decode as empty, non-nil slices.
func decodeFlat(b []byte) (*Manifest, error) {
	return decode(bytes.NewReader(b), MaxDecodedSize, MaxDecodedMemory)
}

// decode reads an encoded manifest from r, inflating at most limit bytes
// and holding at most memLimit (see decoder.charge).
// It streams: the JSON is decoded a value at a time as it is inflated, and
// checked to be canonical by comparing its BLAKE3 with that of the
// canonical JSON of what it decoded to, so neither is ever held whole.
func decode(r io.Reader, limit, memLimit int64) (*Manifest, error) {
	br := bufio.NewReader(r) // a ByteReader: gzip reads no further than its member
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("manifest: not gzip: %w", err)
	}
	zr.Multistream(false)
	d := newDecoder(zr, limit, memLimit)
	m, err := d.manifest()
	if err != nil {
		return nil, err
	}
	if err := d.end(br); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	h := &hashCounter{h: chunk.NewHasher()}
	if err := writeCanonical(h, m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.Name, err)
	}
	if h.n != d.in.n || h.h.Sum() != d.in.h.Sum() {
		return nil, fmt.Errorf("manifest %s: not in canonical form (%d bytes, canonically %d)", m.Name, d.in.n, h.n)
	}
	return m, nil
}

// ErrTooLarge reports a manifest that readers would refuse as too large.
var ErrTooLarge = errors.New("keyspace too large for one manifest")

// MemCost is what m costs a reader in memory, as the decoder counts it
// against MaxDecodedMemory: tables, files and chunk references at their Go
// sizes, plus the bytes of the strings it decodes.
func (m *Manifest) MemCost() int64 {
	n := int64(len(m.Name) + len(m.Host) + len(m.Keyspace) + len(m.CassandraVersion) + len(m.Session))
	for i := range m.Tables {
		t := &m.Tables[i]
		n += tableSize + int64(len(t.Name)+len(t.ID))
		for j := range t.Files {
			f := &t.Files[j]
			n += fileSize + int64(len(f.Path)+len(f.Root)+len(f.User)+len(f.Group)) + int64(len(f.Chunks))*refSize
		}
	}
	return n
}

func (m *Manifest) countFiles() (n int) {
	for _, t := range m.Tables {
		n += len(t.Files)
	}
	return n
}

func (m *Manifest) countRefs() (n int) {
	for _, t := range m.Tables {
		for _, f := range t.Files {
			n += len(f.Chunks)
		}
	}
	return n
}

// hashCounter hashes and counts what is written to it.
type hashCounter struct {
	h *chunk.Hasher
	n int64
}

func (w *hashCounter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

// inflated is the JSON as the decoder reads it: every byte is hashed and
// counted; none is read past limit, nor, until the next value starts, past
// stop. Its errors stick: the JSON decoder may drop one that came with the
// bytes ending a value.
type inflated struct {
	r        io.Reader
	h        *chunk.Hasher
	n, limit int64
	stop     int64
	err      error
}

func (in *inflated) Read(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if in.n >= in.stop {
		in.err = fmt.Errorf("a value longer than %d bytes", maxValue)
		return 0, in.err
	}
	p = p[:min(int64(len(p)), in.stop-in.n, in.limit+1-in.n)]
	k, err := in.r.Read(p)
	in.n += int64(k)
	in.h.Write(p[:k])
	switch {
	case in.n > in.limit:
		in.err = fmt.Errorf("more than %d bytes uncompressed", in.limit)
	case err == io.EOF:
		return k, err
	case err != nil:
		in.err = fmt.Errorf("gunzip: %w", err)
	}
	return k, in.err
}

// decoder decodes a manifest from a JSON stream a value at a time.
type decoder struct {
	in     *inflated
	dec    *json.Decoder
	tables list[Table]
	files  list[File]      // scratch for the files of one table
	refs   list[chunk.Ref] // scratch for the chunks of one file
	ref    refJSON
	// mem is what the manifest decoded so far holds, memLimit its bound.
	mem, memLimit int64
}

func newDecoder(r io.Reader, limit, memLimit int64) *decoder {
	in := &inflated{r: r, h: chunk.NewHasher(), limit: limit}
	d := &decoder{in: in, dec: json.NewDecoder(in), memLimit: memLimit}
	d.dec.DisallowUnknownFields()
	return d
}

// In-memory sizes of what a manifest holds, for decoder.charge.
var (
	tableSize = int64(reflect.TypeFor[Table]().Size())
	fileSize  = int64(reflect.TypeFor[File]().Size())
	refSize   = int64(reflect.TypeFor[chunk.Ref]().Size())
)

// charge counts n bytes more of decoded manifest against memLimit.
func (d *decoder) charge(n int64) error {
	d.mem += n
	if d.mem > d.memLimit {
		return fmt.Errorf("manifest: more than %d bytes in memory", d.memLimit)
	}
	return nil
}

// chargeValue charges what a decoded field holds beyond its struct: a
// string's bytes, or a list given under a key in another case (which the
// canonical check refuses at the end).
func (d *decoder) chargeValue(v reflect.Value) error {
	switch v.Kind() {
	case reflect.String:
		return d.charge(int64(v.Len()))
	case reflect.Slice:
		return d.charge(int64(v.Len()) * int64(v.Type().Elem().Size()))
	}
	return nil
}

// list collects the elements of a streamed JSON array. Past its first
// block, which grows by append to listBlock elements and is kept for the
// next array, it allocates blocks of listBlock elements, so that a long
// list costs what it holds, not two or three times that while append moves
// it to a larger array (a planted manifest of 3 million chunk references
// took 453 MiB that way).
type list[T any] struct{ blocks [][]T }

const listBlock = 4096

// add appends a zero element and returns it, valid until the next add.
func (l *list[T]) add() *T {
	last := len(l.blocks) - 1
	if last < 0 || len(l.blocks[last]) == listBlock {
		var b []T
		if last >= 0 {
			b = make([]T, 0, listBlock)
		}
		l.blocks = append(l.blocks, b)
		last++
	}
	var zero T
	l.blocks[last] = append(l.blocks[last], zero)
	return &l.blocks[last][len(l.blocks[last])-1]
}

// slice returns the elements in a new slice of their number, never nil.
func (l *list[T]) slice() []T {
	n := 0
	for _, b := range l.blocks {
		n += len(b)
	}
	s := make([]T, 0, n)
	for _, b := range l.blocks {
		s = append(s, b...)
	}
	return s
}

// reset empties l, keeping its first block's array but nothing the
// elements pointed to.
func (l *list[T]) reset() {
	if len(l.blocks) == 0 {
		return
	}
	clear(l.blocks[0])
	clear(l.blocks[1:])
	l.blocks = l.blocks[:1]
	l.blocks[0] = l.blocks[0][:0]
}

// next lets the decoder read one value of up to maxValue bytes.
func (d *decoder) next() { d.in.stop = d.dec.InputOffset() + maxValue }

func (d *decoder) token() (json.Token, error) {
	d.next()
	t, err := d.dec.Token()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return t, nil
}

func (d *decoder) value(v any) error {
	d.next()
	if err := d.dec.Decode(v); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

func (d *decoder) more() bool {
	d.next()
	return d.dec.More()
}

func (d *decoder) delim(want json.Delim) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("manifest: got %v, want %v", t, want)
	}
	return nil
}

// end checks that nothing follows the manifest: no JSON value, no byte of
// the gzip member (whose checksum this reads), nothing after the member.
func (d *decoder) end(br *bufio.Reader) error {
	if d.more() {
		return errors.New("manifest: invalid character after top-level value")
	}
	d.in.stop = d.in.limit + 1
	if _, err := io.Copy(io.Discard, d.in); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("manifest: data after the gzip stream")
	}
	return nil
}

// manifest decodes the top-level object. The format comes first in
// canonical JSON and is checked as soon as it is read, so a manifest of
// another format is refused for that, whatever follows.
func (d *decoder) manifest() (*Manifest, error) {
	m := new(Manifest)
	seen := false
	format := func() error {
		var raw json.RawMessage
		if err := d.value(&raw); err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &m.Format); err != nil {
			return fmt.Errorf("manifest: format %.20s: not a number", raw)
		}
		if m.Format != FormatVersion {
			return fmt.Errorf("manifest format %d not supported", m.Format)
		}
		seen = true
		return nil
	}
	tables := func() error {
		if !seen {
			return errors.New("manifest: no format field")
		}
		d.tables.reset()
		err := d.array(func() error {
			if err := d.charge(tableSize); err != nil {
				return err
			}
			return d.table(d.tables.add())
		})
		if err != nil {
			return err
		}
		m.Tables = d.tables.slice()
		d.tables.reset()
		return nil
	}
	if err := d.object(m, map[string]func() error{"format": format, "tables": tables}); err != nil {
		return nil, err
	}
	if !seen {
		return nil, errors.New("manifest: no format field")
	}
	return m, nil
}

func (d *decoder) table(t *Table) error {
	return d.object(t, map[string]func() error{"files": func() error {
		d.files.reset()
		err := d.array(func() error {
			if err := d.charge(fileSize); err != nil {
				return err
			}
			return d.file(d.files.add())
		})
		if err != nil {
			return err
		}
		t.Files = d.files.slice()
		d.files.reset() // keep no chunk list alive
		return nil
	}})
}

func (d *decoder) file(f *File) error {
	return d.object(f, map[string]func() error{"chunks": func() error {
		d.refs.reset()
		err := d.array(func() error {
			if err := d.value(&d.ref); err != nil {
				return err
			}
			*d.refs.add() = chunk.Ref(d.ref)
			return d.charge(refSize)
		})
		if err != nil {
			return err
		}
		f.Chunks = d.refs.slice()
		return nil
	}})
}

// array calls each for every element of a JSON array. A null is taken
// for an empty array, which the canonical check then refuses.
func (d *decoder) array(each func() error) error {
	t, err := d.token()
	if err != nil || t == nil {
		return err
	}
	if t != json.Delim('[') {
		return fmt.Errorf("manifest: got %v, want [", t)
	}
	for d.more() {
		if err := each(); err != nil {
			return err
		}
	}
	return d.delim(']')
}

// object decodes a JSON object into the struct v points to: each field
// in streams by its function, the others straight into v's field of that
// JSON name, as encoding/json would (a key matching in another case goes
// to the field, and the canonical check refuses it; an unknown key is an
// error).
func (d *decoder) object(v any, streams map[string]func() error) error {
	if err := d.delim('{'); err != nil {
		return err
	}
	rv := reflect.ValueOf(v).Elem()
	fields := jsonFields(rv.Type())
	for n := 0; d.more(); n++ {
		if n == maxFields {
			return fmt.Errorf("manifest: more than %d fields in an object", maxFields)
		}
		t, err := d.token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		if fn := streams[key]; fn != nil {
			err = fn()
		} else if i, ok := lookupField(fields, key); ok {
			err = d.value(rv.Field(i).Addr().Interface())
			if err == nil {
				err = d.chargeValue(rv.Field(i))
			}
		} else {
			err = fmt.Errorf("manifest: json: unknown field %q", key)
		}
		if err != nil {
			return err
		}
	}
	return d.delim('}')
}

// fieldCache maps a struct type to its fields by JSON name.
var fieldCache sync.Map // reflect.Type -> map[string]int

func jsonFields(t reflect.Type) map[string]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]int)
	}
	m := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	fieldCache.Store(t, m)
	return m
}

func lookupField(fields map[string]int, key string) (int, bool) {
	if i, ok := fields[key]; ok {
		return i, true
	}
	for name, i := range fields {
		if strings.EqualFold(name, key) {
			return i, true
		}
	}
	return 0, false
}

// refJSON decodes a chunk reference, most of a manifest, without
// allocating when it is in canonical form, else as encoding/json would.
type refJSON chunk.Ref

func (r *refJSON) UnmarshalJSON(b []byte) error {
	const head, mid = `{"id":"`, `","len":`
	if n := len(head) + 64 + len(mid); len(b) > n+1 && len(b) <= n+11 &&
		string(b[:len(head)]) == head && string(b[len(head)+64:n]) == mid && b[len(b)-1] == '}' {
		l, err := strconv.ParseUint(string(b[n:len(b)-1]), 10, 32)
		if _, herr := hex.Decode(r.ID[:], b[len(head):len(head)+64]); err == nil && herr == nil {
			r.Len = uint32(l)
			return nil
		}
	}
	var c chunk.Ref
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	*r = refJSON(c)
	return nil
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
		for _, r := range m.Nodes {
			if !yield(r) {
				return
			}
		}
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
