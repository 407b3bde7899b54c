package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cassback/cassback/chunk"
)

// A leaf of a table's tree (tree.go) holds a run of the table's files in a
// binary encoding (format 4), which decodes and encodes some thirty times
// faster than the gzipped JSON of format 3 and is smaller (a path shares
// its leading bytes with the one before it; IDs are raw bytes, which gzip
// could not shrink anyway):
//
//	"CBLF"                       magic
//	uvarint format               FormatVersion
//	string host, keyspace, table, table id
//	uvarint files
//	per file:
//	  uvarint shared, string rest   path: its first shared bytes are the
//	                                previous path's (0 for the first file)
//	  same root
//	  uvarint size, mode, uid, gid
//	  same user, group
//	  varint mtime seconds, uvarint nanoseconds (< 10^9)
//	  uvarint inode
//	  byte flags (1: unstored; 2: the sum is the first chunk's ID)
//	  [32]byte BLAKE3 sum, unless flag 2
//	  uvarint chunks, then per chunk [32]byte ID, uvarint length
//
// where a string is its uvarint length and its bytes, and a "same" string
// is uvarint 0 if it equals the previous file's (the empty string before
// the first file), else its length plus one and its bytes. Nothing follows
// the last file. A decoder accepts only what the encoder writes for the
// files it decoded (shortest varints, the longest shared prefix, "same"
// whenever it can be, flag 2 whenever it can be),
// so a leaf has one encoding and equal runs of files are equal leaves; the
// node's ID (its BLAKE3) already guards against damage.

const leafMagic = "CBLF"

// idSize is the bytes of a chunk ID; maxValue bounds one string of a leaf.
const (
	idSize   = len(chunk.ID{})
	maxValue = 64 << 10
)

// Flags of a file in a leaf.
const (
	flagUnstored   = 1
	flagSumIsChunk = 2
)

// minLeafFile and minLeafRef are the fewest bytes a file and a chunk
// reference take in a leaf: a decoder never allocates for more of them
// than the bytes left could hold.
const (
	minLeafFile = 13 + idSize
	minLeafRef  = idSize + 1
)

// encodeLeaf returns the leaf of the given files of table t of the
// manifest's host and keyspace. The files were validated with the manifest.
func (m *Manifest) encodeLeaf(t *Table, files []File) []byte {
	n := 64 + len(m.Host) + len(m.Keyspace) + len(t.Name) + len(t.ID)
	for i := range files {
		n += 80 + len(files[i].Path) + len(files[i].Root) + len(files[i].User) + len(files[i].Group) + len(files[i].Chunks)*(idSize+4)
	}
	b := make([]byte, 0, n)
	b = append(b, leafMagic...)
	b = binary.AppendUvarint(b, FormatVersion)
	b = appendString(b, m.Host)
	b = appendString(b, m.Keyspace)
	b = appendString(b, t.Name)
	b = appendString(b, t.ID)
	b = binary.AppendUvarint(b, uint64(len(files)))
	var prev File
	for i := range files {
		f := &files[i]
		shared := commonPrefix(prev.Path, f.Path)
		b = binary.AppendUvarint(b, uint64(shared))
		b = appendString(b, f.Path[shared:])
		b = appendSame(b, prev.Root, f.Root)
		b = binary.AppendUvarint(b, uint64(f.Size))
		b = binary.AppendUvarint(b, uint64(f.Mode))
		b = binary.AppendUvarint(b, uint64(f.UID))
		b = binary.AppendUvarint(b, uint64(f.GID))
		b = appendSame(b, prev.User, f.User)
		b = appendSame(b, prev.Group, f.Group)
		prev = *f
		mt := f.MTime.UTC()
		b = binary.AppendVarint(b, mt.Unix())
		b = binary.AppendUvarint(b, uint64(mt.Nanosecond()))
		b = binary.AppendUvarint(b, f.Inode)
		// A file of one chunk (most components) has that chunk's BLAKE3
		// as its sum: written once.
		var flags byte
		if f.Unstored {
			flags |= flagUnstored
		}
		if len(f.Chunks) > 0 && f.Chunks[0].ID == f.Sum {
			flags |= flagSumIsChunk
		}
		b = append(b, flags)
		if flags&flagSumIsChunk == 0 {
			b = append(b, f.Sum[:]...)
		}
		b = binary.AppendUvarint(b, uint64(len(f.Chunks)))
		for _, r := range f.Chunks {
			b = append(b, r.ID[:]...)
			b = binary.AppendUvarint(b, uint64(r.Len))
		}
	}
	return b
}

// EncodeLeaf returns the leaf holding all the files of table t of the given
// host and keyspace, without checking them: for tests and tools that build
// a tree by hand (Encode is the way to store a manifest).
func EncodeLeaf(host, keyspace string, t *Table) []byte {
	m := Manifest{Host: host, Keyspace: keyspace}
	return m.encodeLeaf(t, t.Files)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendSame appends s as a "same" string after prev.
func appendSame(b []byte, prev, s string) []byte {
	if s == prev {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(s))+1)
	return append(b, s...)
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// errLeaf is the cause of every malformed leaf.
var errLeaf = errors.New("malformed leaf")

// leafReader reads a leaf's fields; its first error sticks and later reads
// return zero values.
type leafReader struct {
	b   []byte
	err error
}

func (r *leafReader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errLeaf, fmt.Sprintf(format, a...))
	}
}

func (r *leafReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("%s: bad varint", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// small reads a uvarint of at most max.
func (r *leafReader) small(what string, max uint64) uint64 {
	v := r.uvarint(what)
	if v > max {
		r.fail("%s %d: more than %d", what, v, max)
		return 0
	}
	return v
}

func (r *leafReader) bytes(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail("%s: %d bytes, %d left", what, n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

// string reads a string of at most max bytes.
func (r *leafReader) string(what string, max int) string {
	n := r.small(what, uint64(max))
	return string(r.bytes(what, int(n)))
}

// same reads a "same" string of at most max bytes after prev.
func (r *leafReader) same(what, prev string, max int) string {
	n := r.small(what, uint64(max)+1)
	if n == 0 {
		return prev
	}
	return string(r.bytes(what, int(n-1)))
}

// decodeLeaf decodes a leaf of the table t of the manifest's host and
// keyspace and returns its files, never holding more than memLimit bytes
// as MemCost counts them. It never panics, and refuses a leaf of another
// format, host, keyspace or table, one that is not in the one encoding
// encodeLeaf writes for its files, and files that are not valid, sorted
// and unique in that table.
func (m *Manifest) decodeLeaf(data []byte, t *Table, memLimit int64) ([]File, error) {
	r := &leafReader{b: data}
	if string(r.bytes("magic", len(leafMagic))) != leafMagic {
		return nil, fmt.Errorf("%w: not a leaf", errLeaf)
	}
	if f := r.uvarint("format"); r.err == nil && f != FormatVersion {
		return nil, fmt.Errorf("leaf format %d not supported", f)
	}
	host, ks := r.string("host", maxValue), r.string("keyspace", maxValue)
	name, id := r.string("table", maxValue), r.string("table id", maxValue)
	if r.err == nil && (host != m.Host || ks != m.Keyspace || name != t.Name || id != t.ID) {
		return nil, errors.New("not a leaf of this table")
	}
	n := r.uvarint("files")
	if r.err == nil && n > uint64(len(r.b)/minLeafFile) {
		r.fail("%d files in %d bytes", n, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	mem := int64(n) * fileSize
	files := make([]File, 0, n)
	var prev File
	for range n {
		var f File
		shared := r.small("path prefix", uint64(len(prev.Path)))
		f.Path = prev.Path[:shared] + r.string("path", maxValue)
		f.Root = r.same("root", prev.Root, maxValue)
		f.Size = int64(r.small("size", math.MaxInt64))
		f.Mode = uint32(r.small("mode", math.MaxUint32))
		f.UID = uint32(r.small("uid", math.MaxUint32))
		f.GID = uint32(r.small("gid", math.MaxUint32))
		f.User = r.same("user", prev.User, maxValue)
		f.Group = r.same("group", prev.Group, maxValue)
		sec, k := binary.Varint(r.b)
		if k <= 0 && r.err == nil {
			r.fail("mtime: bad varint")
		}
		if r.err == nil {
			r.b = r.b[k:]
		}
		nsec := r.small("mtime nanoseconds", 999_999_999)
		f.MTime = time.Unix(sec, int64(nsec)).UTC()
		f.Inode = r.uvarint("inode")
		var flags byte
		if fl := r.bytes("flags", 1); fl != nil {
			flags = fl[0]
		}
		if flags&^(flagUnstored|flagSumIsChunk) != 0 {
			r.fail("flags %#x", flags)
		}
		f.Unstored = flags&flagUnstored != 0
		if flags&flagSumIsChunk == 0 {
			copy(f.Sum[:], r.bytes("sum", idSize))
		}
		nc := r.uvarint("chunks")
		if r.err == nil && flags&flagSumIsChunk != 0 && nc == 0 {
			r.fail("the sum of a file without chunks taken from its first chunk")
		}
		if r.err == nil && nc > uint64(len(r.b)/minLeafRef) {
			r.fail("%d chunks in %d bytes", nc, len(r.b))
		}
		mem += int64(len(f.Path)+len(f.Root)+len(f.User)+len(f.Group)) + int64(nc)*refSize
		if r.err == nil && mem > memLimit {
			return nil, fmt.Errorf("manifest: more than %d bytes in memory", memLimit)
		}
		if r.err != nil {
			return nil, r.err
		}
		f.Chunks = make([]chunk.Ref, nc)
		for i := range f.Chunks {
			copy(f.Chunks[i].ID[:], r.bytes("chunk", idSize))
			f.Chunks[i].Len = uint32(r.small("chunk length", math.MaxUint32))
		}
		if r.err != nil {
			return nil, r.err
		}
		if flags&flagSumIsChunk != 0 {
			f.Sum = f.Chunks[0].ID
		}
		files = append(files, f)
		prev = f
	}
	if len(r.b) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last file", errLeaf, len(r.b))
	}
	leaf := leafOf(m.Host, m.Keyspace, Table{Name: t.Name, ID: t.ID, Files: files})
	if err := leaf.Validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(leaf.encodeLeaf(&leaf.Tables[0], files), data) {
		return nil, fmt.Errorf("%w: not in its one encoding", errLeaf)
	}
	return files, nil
}
