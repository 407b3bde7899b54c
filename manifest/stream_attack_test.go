package manifest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
)

// Attacks on the streaming reader of a table's tree (eachFile, and
// EachFile, Read and Walker.Walk on top of it): valid trees read alike by
// all three, forged ones refused by all three, within a bound of memory
// and time, without a panic.

var atkTime = time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)

// atkHeader is the header the forged trees are under: host h, keyspace
// ks, one table t.
func atkHeader() *Manifest {
	m := &Manifest{Format: FormatVersion, Host: "h", Keyspace: "ks", Time: atkTime, Session: "0123456789abcdef01234567",
		Tables: []Table{{Name: "t", ID: id32, Files: []File{}}}}
	m.Name = BackupName(m.Time, m.Keyspace, m.Host)
	return m
}

// atkID is a chunk ID made of two counters: distinct IDs without hashing.
func atkID(a, b uint64) chunk.ID {
	var id chunk.ID
	binary.BigEndian.PutUint64(id[:], a)
	binary.BigEndian.PutUint64(id[8:], b)
	copy(id[16:], "cassback-attack!")
	return id
}

// atkFile is SSTable generation 100000+i of table t (paths sort as i
// does), of n chunks of length ln; same makes them one repeated chunk.
func atkFile(i, n int, ln uint32, same bool) File {
	f := File{Path: fmt.Sprintf("ks/t-%s/nb-%d-big-Data.db", id32, 100000+i), Mode: 0o644,
		MTime: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), Sum: chunk.Sum(fmt.Appendf(nil, "file %d", i))}
	f.Chunks = make([]chunk.Ref, n)
	for j := range f.Chunks {
		id := atkID(uint64(i), uint64(j))
		if same {
			id = atkID(uint64(i), 0)
		}
		f.Chunks[j] = chunk.Ref{ID: id, Len: ln}
	}
	f.Size = int64(n) * int64(ln)
	return f
}

// atkUnstored is file i recorded by --ignore-existing, of the given size.
func atkUnstored(i int, size int64) File {
	return File{Path: fmt.Sprintf("ks/t-%s/nb-%d-big-Data.db", id32, 100000+i), Mode: 0o644, Size: size,
		MTime: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), Unstored: true}
}

func atkRef(b []byte) chunk.Ref { return chunk.Ref{ID: chunk.Sum(b), Len: uint32(len(b))} }

// atkLeaf stores the leaf of the given files of table t in mc.
func atkLeaf(mc memChunks, files ...File) chunk.Ref {
	b := atkHeader().encodeLeaf(&Table{Name: "t", ID: id32}, files)
	mc[chunk.Sum(b)] = b
	return atkRef(b)
}

// atkTree stores inner nodes of at most maxChildren children above the
// leaves in mc, however the encoder would cut them, and returns the root
// and its height.
func atkTree(t testing.TB, mc memChunks, leaves []chunk.Ref) (chunk.Ref, int) {
	t.Helper()
	level, h := leaves, 0
	for len(level) > 1 {
		var up []chunk.Ref
		for i := 0; i < len(level); i += maxChildren {
			b, err := gzipJSON(innerNode{Format: FormatVersion, Children: level[i:min(i+maxChildren, len(level))]})
			if err != nil {
				t.Fatal(err)
			}
			mc[chunk.Sum(b)] = b
			up = append(up, atkRef(b))
		}
		level, h = up, h+1
	}
	return level[0], h
}

// atkObject is the manifest object of atkHeader naming the given tables.
func atkObject(t testing.TB, tables ...rootTable) []byte {
	t.Helper()
	m := atkHeader()
	for i := range tables {
		if tables[i].Name == "" {
			tables[i].Name, tables[i].ID = "t", id32
		}
	}
	obj, err := gzipJSON(rootObject{Format: FormatVersion, Name: m.Name, Host: m.Host, Keyspace: m.Keyspace, Time: m.Time,
		Session: m.Session, Tables: tables})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// atkForge stores a tree above the leaves and returns the object of one
// table t under it with the given header counts.
func atkForge(t testing.TB, mc memChunks, files int, bytes int64, leaves ...chunk.Ref) []byte {
	t.Helper()
	root, h := atkTree(t, mc, leaves)
	return atkObject(t, rootTable{Files: files, Bytes: bytes, Height: h, Root: root})
}

// atkEachFilePeak walks table 0 of the tree g serves with EachFile and
// returns the most it held live, sampled every so many files and at each
// fetch, and the bytes of files it handed on (atkPeak).
func atkEachFilePeak(t testing.TB, g *atkGenerated, obj []byte, every int) (peak uint64, decoded int64) {
	t.Helper()
	m, _, err := decodeRoot(obj)
	if err != nil {
		t.Fatal(err)
	}
	return atkPeak(t, every, func(fn func(*File) error, sample func()) error {
		g.sample = sample
		defer func() { g.sample = nil }()
		return m.EachFile(t.Context(), g, 0, nil, fn)
	})
}

// atkEncode encodes m into an object and a store of its nodes.
func atkEncode(t testing.TB, m *Manifest) ([]byte, memChunks) {
	t.Helper()
	obj, nodes, err := Encode(m, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	mc := memChunks{}
	for _, n := range nodes {
		mc[n.ID] = n.Data
	}
	return obj, mc
}

// atkRead is what each reader makes of an object: EachFile on its header
// (files and nodes of every table), Read and Walk, and whether any of
// them panicked.
type atkRead struct {
	eachFiles [][]File
	eachNodes []chunk.Ref
	eachErr   error
	read      *Manifest
	readErr   error
	walked    []chunk.ID
	walkErr   error
}

func atkReadAll(ctx context.Context, t testing.TB, obj []byte, src Chunks) (r atkRead) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("BREAK: a reader panicked: %v", p)
		}
	}()
	r.eachErr = func() error {
		m, _, err := decodeRoot(obj)
		if err != nil {
			return err
		}
		for i := range m.Tables {
			var files []File
			err := m.EachFile(ctx, src, i, func(n chunk.Ref) error {
				r.eachNodes = append(r.eachNodes, n)
				return nil
			}, func(f *File) error {
				files = append(files, *f)
				return nil
			})
			if err != nil {
				return err
			}
			r.eachFiles = append(r.eachFiles, files)
		}
		return nil
	}()
	r.read, r.readErr = Read(ctx, obj, src)
	r.walkErr = NewWalker().Walk(ctx, obj, src, func(id chunk.ID) error {
		r.walked = append(r.walked, id)
		return nil
	})
	return r
}

// atkAgree checks that all three readers accept obj and read m from it:
// the same files, the same nodes in the same order.
func atkAgree(t *testing.T, m *Manifest, obj []byte, src Chunks) {
	t.Helper()
	r := atkReadAll(t.Context(), t, obj, src)
	if r.eachErr != nil || r.readErr != nil || r.walkErr != nil {
		t.Fatalf("a valid manifest: EachFile %v, Read %v, Walk %v; want all to read it", r.eachErr, r.readErr, r.walkErr)
	}
	if len(r.eachFiles) != len(m.Tables) {
		t.Fatalf("EachFile read %d tables, want %d", len(r.eachFiles), len(m.Tables))
	}
	for i := range m.Tables {
		wf := m.Tables[i].Files
		if !atkSameFiles(r.eachFiles[i], wf) {
			t.Errorf("table %s: EachFile read %d files unlike the %d encoded", m.Tables[i].Name, len(r.eachFiles[i]), len(wf))
		}
		if !atkSameFiles(r.read.Tables[i].Files, wf) {
			t.Errorf("table %s: Read read %d files unlike the %d encoded", m.Tables[i].Name, len(r.read.Tables[i].Files), len(wf))
		}
		if c, b := r.read.Tables[i].Count, r.read.Tables[i].Bytes; c != len(wf) || b != atkBytes(wf) {
			t.Errorf("table %s: Read's Count, Bytes = %d, %d; want %d, %d", m.Tables[i].Name, c, b, len(wf), atkBytes(wf))
		}
	}
	// EachFile names a table's nodes a level at a time, tables one after
	// the other, and Read keeps them as Nodes, in that order (a node named
	// again, such as an equal part of a file, may be listed again or not).
	if a, b := atkDistinct(r.read.Nodes), atkDistinct(r.eachNodes); !slices.Equal(a, b) {
		t.Errorf("Read's Nodes (%d distinct) differ from the nodes EachFile named (%d distinct)", len(a), len(b))
	}
	encoded := map[chunk.ID]bool{}
	for _, n := range m.Nodes {
		encoded[n.ID] = true
	}
	readNodes := map[chunk.ID]bool{}
	for _, n := range r.eachNodes {
		readNodes[n.ID] = true
		if !encoded[n.ID] {
			t.Errorf("node %s read, not one Encode wrote", n.ID)
		}
	}
	if len(readNodes) != len(encoded) {
		t.Errorf("%d distinct nodes read, Encode wrote %d", len(readNodes), len(encoded))
	}
	// What Walk names: per table its nodes, then its files' chunks, as
	// EachFile hands them on.
	var want []chunk.ID
	hm, _, err := decodeRoot(obj)
	if err != nil {
		t.Fatal(err)
	}
	for i := range hm.Tables {
		err := hm.EachFile(t.Context(), src, i, func(n chunk.Ref) error {
			want = append(want, n.ID)
			return nil
		}, func(f *File) error {
			for _, c := range f.Chunks {
				want = append(want, c.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(r.walked, want) {
		t.Errorf("Walk named %d chunks, EachFile's nodes and chunks are %d", len(r.walked), len(want))
	}
	// A manifest Read returns is valid, and EachFile on it walks its files.
	if err := r.read.Validate(); err != nil {
		t.Errorf("Read returned an invalid manifest: %v", err)
	}
	for i := range r.read.Tables {
		var got []File
		if err := r.read.EachFile(t.Context(), nil, i, nil, func(f *File) error { got = append(got, *f); return nil }); err != nil {
			t.Errorf("EachFile on Read's manifest: %v", err)
		}
		if !atkSameFiles(got, m.Tables[i].Files) {
			t.Errorf("EachFile on Read's manifest, table %d: %d files unlike the encoded", i, len(got))
		}
	}
}

// atkSameFiles compares files as reflect.DeepEqual does, without its
// cost on hundreds of thousands of chunk IDs.
func atkSameFiles(a, b []File) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !slices.Equal(a[i].Chunks, b[i].Chunks) {
			return false
		}
		x, y := a[i], b[i]
		x.Chunks, y.Chunks = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// atkDistinct is refs without repeats, in the order they first appear.
func atkDistinct(refs []chunk.Ref) []chunk.Ref {
	seen := map[chunk.ID]bool{}
	var out []chunk.Ref
	for _, r := range refs {
		if !seen[r.ID] {
			seen[r.ID] = true
			out = append(out, r)
		}
	}
	return out
}

func atkBytes(files []File) (n int64) {
	for _, f := range files {
		n += f.Size
	}
	return n
}

// Every reader reads every valid tree alike: tables without files, one
// file, thousands over several levels, and files cut in parts whose parts
// lie across a batch of leaves (leaves 63, 64 and 65), including parts of
// repeated content, which are equal leaves in one batch and across two.
func TestStreamAttackReadersAgree(t *testing.T) {
	type tc struct {
		name string
		mk   func() *Manifest
		// leaves, when set, checks the leaf level the case is about.
		leaves func(t *testing.T, leaves []chunk.Ref)
	}
	cases := []tc{
		{name: "no files", mk: func() *Manifest { return treeManifest(0, atkTime) }},
		{name: "one file", mk: func() *Manifest { return treeManifest(1, atkTime) }},
		{name: "20,000 files", mk: func() *Manifest { return treeManifest(10_000, atkTime) }},
		{name: "a file of 5×16384+3 equal chunks", mk: func() *Manifest {
			m := atkHeader()
			m.Tables[0].Files = []File{atkFile(1, 5*maxLeafRefs+3, 1, true)}
			return m
		}},
		{name: "a file of exactly 2×16384 equal chunks", mk: func() *Manifest {
			m := atkHeader()
			m.Tables[0].Files = []File{atkFile(0, 1, 7, false), atkFile(1, 2*maxLeafRefs, 1, true), atkFile(2, 3, 7, false)}
			return m
		}},
		{name: "small files around parts", mk: func() *Manifest {
			m := atkHeader()
			for i := range 200 {
				n := 1
				if i%37 == 5 {
					n = maxLeafRefs + 1 + i
				}
				m.Tables[0].Files = append(m.Tables[0].Files, atkFile(i, n, 5, i%2 == 0))
			}
			return m
		}},
	}
	// Files of 3 parts each (2×16384 chunks and one more, the first two
	// equal leaves when repeated), after 0 to 2 files of 2 parts: leaves
	// 63, 64 and 65 are one file's (shift 0), or 62, 63 and 64 (shift 1),
	// or two files meet at leaf 64 (shift 2).
	for _, shift := range []int{0, 1, 2} {
		for _, same := range []bool{true, false} {
			if !same && shift > 0 {
				continue // distinct chunks cost time; shift 0 has them
			}
			cases = append(cases, tc{
				name: fmt.Sprintf("parts across a batch, shift %d, repeated %v", shift, same),
				mk: func() *Manifest {
					m := atkHeader()
					fs := &m.Tables[0].Files
					for i := range shift {
						*fs = append(*fs, atkFile(i, maxLeafRefs+1, 1, false)) // 2 leaves
					}
					for i := range 23 {
						*fs = append(*fs, atkFile(10+i, 2*maxLeafRefs+1+i, 1, same)) // 3 leaves
					}
					return m
				},
				leaves: func(t *testing.T, leaves []chunk.Ref) {
					if len(leaves) != 2*shift+3*23 {
						t.Fatalf("%d leaves, want %d", len(leaves), 2*shift+3*23)
					}
					if first := 2 * shift; same && leaves[first] != leaves[first+1] {
						t.Fatalf("leaves %d and %d differ, want the equal parts of a file of repeated content", first, first+1)
					}
					if same && shift == 0 && leaves[63] != leaves[64] {
						t.Fatal("leaves 63 and 64 differ, want equal parts across two batches")
					}
				},
			})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.mk()
			m.Sort()
			obj, mc := atkEncode(t, m)
			atkAgree(t, m, obj, mc)
			if c.leaves != nil {
				// The leaf level is the last the first table's walk names.
				h, roots, err := decodeRoot(obj)
				if err != nil {
					t.Fatal(err)
				}
				var level []chunk.Ref
				err = h.EachFile(t.Context(), mc, 0, func(n chunk.Ref) error { level = append(level, n); return nil }, func(*File) error { return nil })
				if err != nil {
					t.Fatal(err)
				}
				c.leaves(t, level[len(level)-atkLeafCount(t, mc, roots[0]):])
			}
		})
	}
}

// atkLeafCount counts the leaves of a tree by decoding its inner nodes.
func atkLeafCount(t *testing.T, mc memChunks, rt rootTable) int {
	level := []chunk.Ref{rt.Root}
	for range rt.Height {
		var next []chunk.Ref
		for _, r := range level {
			c, err := decodeInner(r.ID, mc[r.ID])
			if err != nil {
				t.Fatal(err)
			}
			next = append(next, c...)
		}
		level = next
	}
	return len(level)
}

// atkCounting counts the nodes a reader asks for.
type atkCounting struct {
	Chunks
	asked int
}

func (c *atkCounting) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	c.asked += len(ids)
	return c.Chunks.FetchChunks(ctx, ids, fn)
}

// atkRefused checks that every reader refuses obj, with an error holding
// want, and that EachFile never handed its fn a file past the header's
// count or bytes, out of order, or one Validate refuses.
func atkRefused(t *testing.T, obj []byte, src Chunks, want string) {
	t.Helper()
	r := atkReadAll(t.Context(), t, obj, src)
	for what, err := range map[string]error{"EachFile": r.eachErr, "Read": r.readErr, "Walk": r.walkErr} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want it refused (%q)", what, err, want)
		}
	}
	m, _, err := decodeRoot(obj)
	if err != nil {
		return
	}
	for i := range m.Tables {
		var last *File
		var n int
		var total int64
		_ = m.EachFile(t.Context(), src, i, nil, func(f *File) error {
			n++
			total += f.Size
			if n > m.Tables[i].Count || total > m.Tables[i].Bytes || f.Size < 0 {
				t.Errorf("EachFile handed file %d (%s, %d bytes), %d bytes so far: past the header's %d files of %d bytes",
					n, f.Path, f.Size, total, m.Tables[i].Count, m.Tables[i].Bytes)
			}
			if err := m.checkFile(&m.Tables[i], f); err != nil {
				t.Errorf("EachFile handed an invalid file: %v", err)
			}
			if last != nil && compareFiles(*last, *f) >= 0 {
				t.Errorf("EachFile handed %s after %s", f.Path, last.Path)
			}
			last = f
			return nil
		})
	}
}

// Forged headers: a count or a total that is not the tree's is refused by
// every reader, and EachFile hands on no file past what the header says.
func TestStreamAttackForgedHeader(t *testing.T) {
	mc := memChunks{}
	var leaves []chunk.Ref
	var files []File
	for i := range 130 {
		f := atkFile(i, 1+i%3, 10, false)
		files = append(files, f)
		leaves = append(leaves, atkLeaf(mc, f))
	}
	n, total := len(files), atkBytes(files)
	for _, c := range []struct {
		name  string
		files int
		bytes int64
		want  string
	}{
		{"one file fewer", n - 1, total, "in its header"},
		{"one file more", n + 1, total, "in its header"},
		{"a byte fewer", n, total - 1, "in its header"},
		{"a byte more", n, total + 1, "in its header"},
		{"one file, every byte", 1, total, ""},
		{"no files", 0, 0, "more than"},
		{"files to widen the bound", 1 << 40, total, "in its header"},
		{"files at the most", int(^uint(0) >> 1), total, ""},
		{"bytes at the most", n, 1<<63 - 1, ""},
		{"both at the most", int(^uint(0) >> 1), 1<<63 - 1, ""},
		{"negative files", -1, total, "bad counts"},
		{"negative bytes", n, -1, "bad counts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			atkRefused(t, atkForge(t, mc, c.files, c.bytes, leaves...), mc, c.want)
		})
	}
	// The same tree under the right header is read.
	m := atkHeader()
	m.Tables[0].Files = files
	r := atkReadAll(t.Context(), t, atkForge(t, mc, n, total, leaves...), mc)
	if r.eachErr != nil || r.readErr != nil || r.walkErr != nil {
		t.Fatalf("the tree under its own counts: %v, %v, %v", r.eachErr, r.readErr, r.walkErr)
	}
}

// A header that claims one file over a tree of many, and bytes enough
// for a million leaves, is refused at the second file: EachFile reads no
// further than a batch of leaves.
func TestStreamAttackFailsEarly(t *testing.T) {
	mc := memChunks{}
	var leaves []chunk.Ref
	for i := range 5000 {
		leaves = append(leaves, atkLeaf(mc, atkFile(i, 1, 10, false)))
	}
	obj := atkForge(t, mc, 1, 1<<40, leaves...)
	m, _, err := decodeRoot(obj)
	if err != nil {
		t.Fatal(err)
	}
	src := &atkCounting{Chunks: mc}
	calls := 0
	err = m.EachFile(t.Context(), src, 0, nil, func(*File) error { calls++; return nil })
	if err == nil || calls > 1 || src.asked > leafBatch+len(mc)-len(leaves) {
		t.Errorf("EachFile of a tree of %d files under a header of 1: %v after %d files, %d nodes fetched; want an error after 1 file and at most a batch of leaves",
			len(leaves), err, calls, src.asked)
	}
	src.asked = 0
	err = NewWalker().Walk(t.Context(), obj, src, func(chunk.ID) error { return nil })
	if err == nil || src.asked > leafBatch+len(mc)-len(leaves) {
		t.Errorf("Walk: %v after %d nodes fetched", err, src.asked)
	}
}

// A tree naming a leaf again: its files repeated are refused, next to
// each other or a batch apart, and so is any order broken where two
// batches of leaves meet.
func TestStreamAttackRepeatedLeavesAndOrder(t *testing.T) {
	type forged struct {
		files  int
		bytes  int64
		leaves []chunk.Ref
	}
	// run leaves of 2 files each, from file 2*from on.
	run := func(mc memChunks, from, n int) (refs []chunk.Ref, files []File) {
		for i := from; i < from+n; i++ {
			fs := []File{atkFile(2*i, 1, 10, false), atkFile(2*i+1, 2, 10, false)}
			refs = append(refs, atkLeaf(mc, fs...))
			files = append(files, fs...)
		}
		return refs, files
	}
	cases := []struct {
		name string
		make func(mc memChunks) forged
		want string
	}{
		{"a leaf of two files twice", func(mc memChunks) forged {
			refs, files := run(mc, 0, 1)
			return forged{2 * len(files), 2 * atkBytes(files), []chunk.Ref{refs[0], refs[0]}}
		}, "not sorted"},
		{"leaf 0 again as leaf 64", func(mc memChunks) forged {
			refs, files := run(mc, 0, 64)
			return forged{len(files) + 2, atkBytes(files) + 30, append(refs, refs[0])}
		}, "not sorted"},
		{"leaf 63 again as leaf 64", func(mc memChunks) forged {
			refs, files := run(mc, 0, 64)
			return forged{len(files) + 2, atkBytes(files) + 30, append(refs, refs[63])}
		}, "not sorted"},
		{"leaf 62 again as leaf 63", func(mc memChunks) forged {
			refs, files := run(mc, 0, 63)
			return forged{len(files) + 2, atkBytes(files) + 30, append(refs, refs[62])}
		}, "not sorted"},
		{"leaves 63 and 64 swapped", func(mc memChunks) forged {
			refs, files := run(mc, 0, 70)
			refs[63], refs[64] = refs[64], refs[63]
			return forged{len(files), atkBytes(files), refs}
		}, "not sorted"},
		{"leaves 64 and 65 swapped", func(mc memChunks) forged {
			refs, files := run(mc, 0, 70)
			refs[64], refs[65] = refs[65], refs[64]
			return forged{len(files), atkBytes(files), refs}
		}, "not sorted"},
		{"a root that sorts first at leaf 64", func(mc memChunks) forged {
			refs, files := run(mc, 0, 63)
			a, b := atkFile(500, 1, 10, false), atkFile(500, 1, 10, false)
			a.Root, b.Root = "/b", "/a"
			refs = append(refs, atkLeaf(mc, a), atkLeaf(mc, b))
			return forged{len(files) + 2, atkBytes(files) + 20, refs}
		}, "not sorted"},
		{"a file again with another mode at leaf 64", func(mc memChunks) forged {
			refs, files := run(mc, 0, 63)
			a := atkFile(500, 1, 10, false)
			b := a
			b.Mode = 0o600
			refs = append(refs, atkLeaf(mc, a), atkLeaf(mc, b))
			return forged{len(files) + 1, atkBytes(files) + 20, refs}
		}, ""},
		{"a part at leaf 64 with another sum", func(mc memChunks) forged {
			refs, files := run(mc, 0, 63)
			f := atkFile(500, maxLeafRefs+1, 1, false)
			p1, p2 := f, f
			p1.Chunks, p1.Size = f.Chunks[:maxLeafRefs], maxLeafRefs
			p2.Chunks, p2.Size, p2.Sum = f.Chunks[maxLeafRefs:], 1, chunk.Sum([]byte("other"))
			refs = append(refs, atkLeaf(mc, p1), atkLeaf(mc, p2))
			return forged{len(files) + 1, atkBytes(files) + f.Size, refs}
		}, "other metadata"},
		{"a part at leaf 64 that is unstored", func(mc memChunks) forged {
			refs, files := run(mc, 0, 63)
			f := atkFile(500, maxLeafRefs, 1, false)
			u := atkUnstored(500, 0)
			u.Sum = chunk.ID{}
			refs = append(refs, atkLeaf(mc, f), atkLeaf(mc, u))
			return forged{len(files) + 1, atkBytes(files) + f.Size, refs}
		}, "other metadata"},
		{"an empty leaf among others", func(mc memChunks) forged {
			refs, files := run(mc, 0, 3)
			refs = append(refs[:1], append([]chunk.Ref{atkLeaf(mc)}, refs[1:]...)...)
			return forged{len(files), atkBytes(files), refs}
		}, "empty"},
		{"an empty leaf twice", func(mc memChunks) forged {
			e := atkLeaf(mc)
			return forged{0, 0, []chunk.Ref{e, e}}
		}, "more than"},
		{"an empty leaf twice, a file claimed", func(mc memChunks) forged {
			e := atkLeaf(mc)
			return forged{1, 10, []chunk.Ref{e, e}}
		}, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mc := memChunks{}
			f := c.make(mc)
			atkRefused(t, atkForge(t, mc, f.files, f.bytes, f.leaves...), mc, c.want)
		})
	}
}

// atkPartLeaf stores the leaf of part p of file f cut as Encode cuts it.
func atkPartLeaf(mc memChunks, f File, p int) chunk.Ref {
	part := f
	part.Chunks = f.Chunks[p*maxLeafRefs : min((p+1)*maxLeafRefs, len(f.Chunks))]
	part.Size = 0
	for _, c := range part.Chunks {
		part.Size += int64(c.Len)
	}
	return atkLeaf(mc, part)
}

// The largest file a reader joins is what Encode writes: 71 parts of
// 16,384 equal chunks (the most that fit in MaxDecodedMemory) are read
// alike by all; a 72nd part of the same file is refused by all, as too
// large, before the join is made.
func TestStreamAttackFileMemBound(t *testing.T) {
	memBound(t)
	if testing.Short() {
		t.Skip("joins files of 40 MiB")
	}
	m := atkHeader()
	m.Tables[0].Files = []File{atkFile(1, 71*maxLeafRefs, 1, true)}
	if c := m.MemCost(); c > MaxDecodedMemory || c+maxLeafRefs*refSize <= maxFileMem {
		t.Fatalf("a file of 71 parts costs %d, want it within %d and a 72nd part over", c, maxFileMem)
	}
	obj, mc := atkEncode(t, m)
	atkAgree(t, m, obj, mc)

	f := atkFile(1, 72*maxLeafRefs, 1, true)
	p := atkPartLeaf(mc, f, 0)
	obj = atkForge(t, mc, 1, f.Size, slices.Repeat([]chunk.Ref{p}, 72)...)
	r := atkReadAll(t.Context(), t, obj, mc)
	for what, err := range map[string]error{"EachFile": r.eachErr, "Read": r.readErr, "Walk": r.walkErr} {
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s of a file of 72 parts of 16,384 chunks: %v, want ErrTooLarge", what, err)
		}
	}
}

// A level wider than the header's files can need is refused before its
// nodes are fetched; so is one wider than maxTableLeaves, however many
// files the header claims, before it is built whole.
func TestStreamAttackWideLevel(t *testing.T) {
	missing := func(n int) []chunk.Ref { // nodes that are nowhere
		refs := make([]chunk.Ref, n)
		for i := range refs {
			refs[i] = chunk.Ref{ID: atkID(9, uint64(i)), Len: 100}
		}
		return refs
	}
	inner := func(t *testing.T, mc memChunks, kids []chunk.Ref) chunk.Ref {
		b, err := gzipJSON(innerNode{Format: FormatVersion, Children: kids})
		if err != nil {
			t.Fatal(err)
		}
		mc[chunk.Sum(b)] = b
		return atkRef(b)
	}
	cases := []struct {
		name string
		make func(t *testing.T, mc memChunks) rootTable
		want string
	}{
		{"100 leaves for 10 files of 10 bytes", func(t *testing.T, mc memChunks) rootTable {
			return rootTable{Files: 10, Bytes: 100, Height: 1, Root: inner(t, mc, missing(100))}
		}, "nodes at height 0"},
		{"1024 inner nodes for 10 files", func(t *testing.T, mc memChunks) rootTable {
			return rootTable{Files: 10, Bytes: 100, Height: 2, Root: inner(t, mc, missing(1024))}
		}, "nodes at height 1"},
		{"no files, 2 leaves", func(t *testing.T, mc memChunks) rootTable {
			return rootTable{Height: 1, Root: inner(t, mc, missing(2))}
		}, "nodes at height 0"},
		{"2^21 leaves for 2^40 files", func(t *testing.T, mc memChunks) rootTable {
			y := inner(t, mc, missing(1024))
			x := inner(t, mc, slices.Repeat([]chunk.Ref{y}, 1024))
			return rootTable{Files: 1 << 40, Bytes: 1 << 50, Height: 3, Root: inner(t, mc, []chunk.Ref{x, x})}
		}, "nodes at height 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mc := memChunks{}
			rt := c.make(t, mc)
			obj := atkObject(t, rt)
			src := &atkCounting{Chunks: mc}
			start := time.Now()
			r := atkReadAll(t.Context(), t, obj, src)
			for what, err := range map[string]error{"EachFile": r.eachErr, "Read": r.readErr, "Walk": r.walkErr} {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: %v; want %q", what, err, c.want)
				}
			}
			if src.asked > 3*(len(mc)+leafBatch) {
				t.Errorf("the readers asked for %d nodes; want at most the %d inner nodes and a batch, three times", src.asked, len(mc))
			}
			// The request count above is the bound; the time only catches
			// a walk gone wild (under -race on a loaded machine a level
			// of 2^20 references takes seconds to build).
			if d := time.Since(start); d > time.Minute {
				t.Errorf("refusing it took %v", d)
			}
		})
	}
}

var errAtkStop = errors.New("stop here")

// fn's error ends the walk and is what the reader returns: EachFile's fn
// and nodes, and Walk's fn, each called no more after it.
func TestStreamAttackCallbackError(t *testing.T) {
	m := treeManifest(3000, atkTime)
	obj, mc := atkEncode(t, m)
	h, _, err := decodeRoot(obj)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{1, 64, 65, 4000, 5999} {
		calls := 0
		err := h.EachFile(t.Context(), mc, 0, nil, func(*File) error {
			if calls++; calls == at {
				return errAtkStop
			}
			return nil
		})
		if !errors.Is(err, errAtkStop) || calls != at {
			t.Errorf("EachFile, fn failing at file %d: %v after %d calls", at, err, calls)
		}
		calls = 0
		err = h.EachFile(t.Context(), mc, 0, func(chunk.Ref) error {
			if calls++; calls == min(at, 3) {
				return errAtkStop
			}
			return nil
		}, func(*File) error { t.Fatal("a file after nodes failed"); return nil })
		if !errors.Is(err, errAtkStop) || calls != min(at, 3) {
			t.Errorf("EachFile, nodes failing at node %d: %v after %d calls", min(at, 3), err, calls)
		}
		calls = 0
		err = NewWalker().Walk(t.Context(), obj, mc, func(chunk.ID) error {
			if calls++; calls == at {
				return errAtkStop
			}
			return nil
		})
		if !errors.Is(err, errAtkStop) || calls != at {
			t.Errorf("Walk, fn failing at chunk %d: %v after %d calls", at, err, calls)
		}
	}
	// A failed walk leaves no mark: the next walk reads the table again.
	w := NewWalker()
	_ = w.Walk(t.Context(), obj, mc, func(chunk.ID) error { return errAtkStop })
	calls := 0
	if err := w.Walk(t.Context(), obj, mc, func(chunk.ID) error { calls++; return nil }); err != nil || calls < len(m.Tables[0].Files) {
		t.Errorf("the walk after a failed one: %v, %d chunks named", err, calls)
	}
}

// atkCtxChunks fails once its context is done, as a store does.
type atkCtxChunks struct{ memChunks }

func (c atkCtxChunks) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.memChunks.FetchChunks(ctx, ids, fn)
}

// A walk whose context ends midway returns the context's error within a
// batch of leaves, from a source that checks it.
func TestStreamAttackCancel(t *testing.T) {
	m := treeManifest(10_000, atkTime)
	obj, mc := atkEncode(t, m)
	h, _, err := decodeRoot(obj)
	if err != nil {
		t.Fatal(err)
	}
	// A source that checks the context, and one that does not (the node
	// cache serves nodes from disk without looking at it).
	for name, src := range map[string]Chunks{"checks ctx": atkCtxChunks{mc}, "ignores ctx": mc} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			calls, after := 0, 0
			err = h.EachFile(ctx, src, 0, nil, func(*File) error {
				if calls++; calls == 100 {
					cancel()
				} else if calls > 100 {
					after++
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) || after > leafBatch*leafBatch*2 {
				t.Errorf("EachFile cancelled at file 100: %v, %d files later", err, after)
			}
			ctx, cancel = context.WithCancel(t.Context())
			calls = 0
			err = NewWalker().Walk(ctx, obj, src, func(chunk.ID) error {
				if calls++; calls == 1000 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Walk cancelled at chunk 1000: %v, after %d chunks", err, calls)
			}
			cancel()
			if _, err := Read(ctx, obj, src); !errors.Is(err, context.Canceled) {
				t.Errorf("Read with a cancelled context: %v", err)
			}
		})
	}
}

// atkGenerated is a tree whose leaves are made again each time they are
// fetched, so the source holds no more than their IDs: a reader's own
// memory can be measured on a tree of any size.
type atkGenerated struct {
	inner  memChunks
	leafOf map[chunk.ID]int
	gen    func(k int) []byte
	sample func()
}

func (g *atkGenerated) FetchChunks(_ context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	for _, id := range ids {
		b, ok := g.inner[id]
		if !ok {
			k, ok := g.leafOf[id]
			if !ok {
				return fmt.Errorf("chunk %s: not stored", id)
			}
			b = g.gen(k)
		}
		if err := fn(id, b); err != nil {
			return err
		}
	}
	if g.sample != nil {
		g.sample()
	}
	return nil
}

// atkGenerate makes the tree of n leaves gen makes, under a header of
// the given counts.
func atkGenerate(t testing.TB, n int, gen func(k int) []byte) (*atkGenerated, []chunk.Ref) {
	g := &atkGenerated{inner: memChunks{}, leafOf: map[chunk.ID]int{}, gen: gen}
	var leaves []chunk.Ref
	for k := range n {
		b := gen(k)
		r := atkRef(b)
		g.leafOf[r.ID] = k
		leaves = append(leaves, r)
	}
	return g, leaves
}

// atkPeak walks with fn dropping each file and returns the most heap
// live (after a collection, at every fetch and at the end of every run of
// every files) above what was live before, and the MemCost of the files.
func atkPeak(t testing.TB, every int, walk func(fn func(*File) error, sample func()) error) (peak uint64, decoded int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	sample := func() {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc-min(ms.HeapAlloc, base))
	}
	n := 0
	err := walk(func(f *File) error {
		decoded += f.memCost()
		// A file is handed on once the next begins: file every-1 is
		// the last before a leaf (or batch) of every files ends.
		if n++; n%every == every-1 {
			sample()
		}
		return nil
	}, sample)
	if err != nil {
		t.Fatal(err)
	}
	return peak, decoded
}

// atkMemTree is a tree of leaves of files of the given chunks, that
// many a leaf, whose files' MemCost adds up to more than want, in a
// source that makes each leaf again when it is fetched.
func atkMemTree(t testing.TB, chunks, perLeaf int, want int64) (*atkGenerated, []byte) {
	h, tb := atkHeader(), &Table{Name: "t", ID: id32}
	gen := func(k int) []byte {
		fs := make([]File, perLeaf)
		for i := range fs {
			fs[i] = atkFile(k*perLeaf+i, chunks, 4<<20, false)
		}
		return h.encodeLeaf(tb, fs)
	}
	f := atkFile(0, chunks, 4<<20, false)
	n := int(want/(int64(perLeaf)*f.memCost())) + 1
	g, leaves := atkGenerate(t, n, gen)
	root, height := atkTree(t, g.inner, leaves)
	nf := n * perLeaf
	return g, atkObject(t, rootTable{Files: nf, Bytes: int64(nf) * f.Size, Height: height, Root: root})
}

// A table far larger than MaxDecodedMemory is streamed holding a small
// part of it: leaves of 64 files of 40 chunks (what Encode writes for
// files of a few hundred MiB), 120 MiB of files in all, are walked by
// EachFile and Walk with at most 30 MiB live at once, as a collection
// after each batch of leaves finds it.
func TestStreamAttackLargeTableMemBound(t *testing.T) {
	memBound(t)
	if testing.Short() {
		t.Skip("walks 120 MiB of files")
	}
	g, obj := atkMemTree(t, 40, 64, 120<<20)
	every := leafBatch * 64 // the last file of each batch, when its every leaf is decoded
	peak, decoded := atkEachFilePeak(t, g, obj, every)
	t.Logf("EachFile: %d MiB of files, at most %d MiB live", decoded>>20, peak>>20)
	if decoded < 120<<20 || peak > 30<<20 {
		t.Errorf("EachFile of %d MiB of files held %d MiB; want over 120 MiB of files, at most 30 MiB held", decoded>>20, peak>>20)
	}
	chunks := 0
	peak, _ = atkPeak(t, 1<<62, func(_ func(*File) error, sample func()) error {
		g.sample = sample
		defer func() { g.sample = nil }()
		return NewWalker().Walk(t.Context(), obj, g, func(chunk.ID) error {
			if chunks++; chunks%(every*40) == 0 {
				sample()
			}
			return nil
		})
	})
	t.Logf("Walk: %d chunks, at most %d MiB live", chunks, peak>>20)
	if peak > 30<<20 {
		t.Errorf("Walk held %d MiB; want at most 30 MiB", peak>>20)
	}
	if _, err := Read(t.Context(), obj, g); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read of %d MiB of files: %v, want ErrTooLarge", decoded>>20, err)
	}
}

// Trees made from a valid one by moving, repeating, dropping and damaging
// its nodes, under its header or under counts that match their files:
// no reader panics, the three accept the same trees, and what they accept
// is a valid manifest they read alike.
func TestStreamAttackMutatedTrees(t *testing.T) {
	m := atkHeader()
	fs := &m.Tables[0].Files
	for i := range 1500 {
		n := 1 + i%4
		if i == 700 { // 3 parts, the first two equal leaves
			n = 2*maxLeafRefs + 1
		}
		f := atkFile(i, n, uint32(1+i%7), i == 700)
		if i%50 == 7 {
			f = atkUnstored(i, int64(i))
		}
		*fs = append(*fs, f)
	}
	obj, base := atkEncode(t, m)
	_, roots, err := decodeRoot(obj)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []chunk.Ref
	h, _, _ := decodeRoot(obj)
	if err := h.EachFile(t.Context(), base, 0, func(n chunk.Ref) error { nodes = append(nodes, n); return nil }, func(*File) error { return nil }); err != nil {
		t.Fatal(err)
	}
	leaves := nodes[len(nodes)-atkLeafCount(t, base, roots[0]):]
	t.Logf("%d files in %d leaves", len(*fs), len(leaves))
	leafFiles := map[chunk.ID][]File{}
	for _, l := range leaves {
		if leafFiles[l.ID], err = m.decodeLeaf(base[l.ID], &m.Tables[0], maxLeafMem); err != nil {
			t.Fatal(err)
		}
	}
	rng := newAtkRand(1)
	accepted := 0
	for iter := range 150 {
		mc := memChunks{}
		for id, b := range base {
			mc[id] = b
		}
		ls := slices.Clone(leaves)
		var what []string
		for range 1 + rng.n(3) {
			i, j := rng.n(len(ls)), rng.n(len(ls))
			switch rng.n(7) {
			case 0:
				ls[i], ls[j] = ls[j], ls[i]
				what = append(what, fmt.Sprintf("swap %d %d", i, j))
			case 1:
				ls = slices.Insert(ls, j, ls[i])
				what = append(what, fmt.Sprintf("repeat %d at %d", i, j))
			case 2:
				if len(ls) > 1 {
					ls = slices.Delete(ls, i, i+1)
					what = append(what, fmt.Sprintf("drop %d", i))
				}
			case 3: // a leaf of some of a leaf's files
				lf := leafFiles[ls[i].ID]
				if len(lf) > 1 {
					k := rng.n(len(lf))
					ls[i] = atkLeaf(mc, slices.Delete(slices.Clone(lf), k, k+1)...)
					what = append(what, fmt.Sprintf("leaf %d without file %d", i, k))
				}
			case 4: // two leaves as one
				if i+1 < len(ls) {
					both := append(slices.Clone(leafFiles[ls[i].ID]), leafFiles[ls[i+1].ID]...)
					if len(both) > 0 {
						ls = slices.Replace(ls, i, i+2, atkLeaf(mc, both...))
						what = append(what, fmt.Sprintf("leaves %d and %d as one", i, i+1))
					}
				}
			case 5: // damage a node where it is stored
				id := ls[i].ID
				b := slices.Clone(mc[id])
				b[rng.n(len(b))] ^= byte(1 + rng.n(255))
				mc[id] = b
				what = append(what, fmt.Sprintf("damage leaf %d", i))
			case 6:
				slices.Reverse(ls[min(i, j):max(i, j)])
				what = append(what, fmt.Sprintf("reverse %d to %d", min(i, j), max(i, j)))
			}
		}
		files, bytes := len(*fs), atkBytes(*fs)
		if rng.n(2) == 0 { // the counts the leaves' files add up to
			files, bytes = 0, 0
			for _, l := range ls {
				for _, f := range leafFiles[l.ID] {
					files++
					bytes += f.Size
				}
			}
		}
		obj := atkForge(t, mc, files, bytes, ls...)
		r := atkReadAll(t.Context(), t, obj, mc)
		ok := [3]bool{r.eachErr == nil, r.readErr == nil, r.walkErr == nil}
		if ok[0] != ok[1] || ok[1] != ok[2] {
			t.Fatalf("mutation %d (%s): EachFile %v, Read %v, Walk %v", iter, strings.Join(what, ", "), r.eachErr, r.readErr, r.walkErr)
		}
		if !ok[0] {
			continue
		}
		accepted++
		if err := r.read.Validate(); err != nil {
			t.Fatalf("mutation %d (%s): Read returned an invalid manifest: %v", iter, strings.Join(what, ", "), err)
		}
		if !atkSameFiles(r.eachFiles[0], r.read.Tables[0].Files) || !reflect.DeepEqual(r.eachNodes, r.read.Nodes) {
			t.Fatalf("mutation %d (%s): EachFile and Read read it differently", iter, strings.Join(what, ", "))
		}
	}
	t.Logf("%d of 150 mutated trees accepted", accepted)
}

// atkRand is a small deterministic random source (a PCG-like LCG), so a
// failure can be replayed.
type atkRand struct{ s uint64 }

func newAtkRand(seed uint64) *atkRand { return &atkRand{s: seed*0x9e3779b97f4a7c15 + 1} }

func (r *atkRand) n(k int) int {
	r.s = r.s*6364136223846793005 + 1442695040888963407
	return int((r.s >> 33) % uint64(k))
}

// Read's budget spans tables: a manifest of two tables at exactly
// MaxDecodedMemory reads back whichever table holds the large file (cut
// in parts), and whichever is left with no room but for its own files.
func TestStreamAttackBudgetAcrossTables(t *testing.T) {
	if testing.Short() {
		t.Skip("reads manifests of 40 MiB")
	}
	for _, bigIn := range []int{0, 1} {
		t.Run(fmt.Sprintf("large file in table %d", bigIn), func(t *testing.T) {
			m := treeManifest(2, atkTime) // tables t (4 files) and u (none)
			u := atkFile(5, 3, 1, false)
			u.Path = strings.Replace(u.Path, "ks/t-", "ks/u-", 1)
			m.Tables[1].Files = []File{u}
			big := &m.Tables[bigIn].Files[0]
			n := int((MaxDecodedMemory - m.MemCost()) / refSize)
			big.Chunks = slices.Repeat([]chunk.Ref{{ID: atkID(7, 7), Len: 1}}, n+len(big.Chunks))
			big.Size = int64(len(big.Chunks))
			for m.MemCost() < MaxDecodedMemory {
				m.CassandraVersion += "v"
			}
			if m.MemCost() != MaxDecodedMemory || len(big.Chunks) <= maxLeafRefs {
				t.Fatalf("MemCost %d, want %d, with a file cut in parts", m.MemCost(), MaxDecodedMemory)
			}
			obj, mc := atkEncode(t, m)
			got, err := Read(t.Context(), obj, mc)
			if err != nil {
				t.Fatalf("Read of a manifest at the bound: %v", err)
			}
			for i := range m.Tables {
				if !atkSameFiles(got.Tables[i].Files, m.Tables[i].Files) {
					t.Errorf("table %s read back differs", m.Tables[i].Name)
				}
			}
		})
	}
}

// An unstored file named in two leaves is never joined as parts: its size
// could wrap past the maximum to a negative one.
func TestStreamAttackUnstoredPartsWrap(t *testing.T) {
	mc := memChunks{}
	big := atkLeaf(mc, atkUnstored(1, 1<<63-1))
	small := atkLeaf(mc, atkUnstored(2, 2))
	obj := atkForge(t, mc, 2, 0, big, big, small)
	if m, err := Read(t.Context(), obj, mc); err == nil {
		t.Errorf("Read accepted it: file %s of size %d; Validate: %v", m.Tables[0].Files[0].Path, m.Tables[0].Files[0].Size, m.Validate())
	}
	atkRefused(t, obj, mc, "")
}

// A leaf of one small file named twice is a repeated file, not a part.
func TestStreamAttackSmallFileRepeated(t *testing.T) {
	for _, at := range []int{0, 62, 63} {
		t.Run(fmt.Sprintf("at leaf %d", at), func(t *testing.T) {
			mc := memChunks{}
			var leaves []chunk.Ref
			var files []File
			for i := range at {
				f := atkFile(i, 1, 10, false)
				files = append(files, f)
				leaves = append(leaves, atkLeaf(mc, f))
			}
			f := atkFile(1000, 2, 10, false)
			l := atkLeaf(mc, f)
			leaves = append(leaves, l, l)
			atkRefused(t, atkForge(t, mc, len(files)+1, atkBytes(files)+2*f.Size, leaves...), mc, "")
		})
	}
}

// Three forged nodes naming one small leaf a million times are refused at
// the second leaf, not after a million fetches.
func TestStreamAttackRepeatedSmallLeafAmplifies(t *testing.T) {
	mc := memChunks{}
	l := atkLeaf(mc, atkFile(1, 1, 1, false))
	mk := func(kids []chunk.Ref) chunk.Ref {
		b, err := gzipJSON(innerNode{Format: FormatVersion, Children: kids})
		if err != nil {
			t.Fatal(err)
		}
		mc[chunk.Sum(b)] = b
		return atkRef(b)
	}
	root := mk(slices.Repeat([]chunk.Ref{mk(slices.Repeat([]chunk.Ref{l}, 1024))}, 1023))
	m, _, err := decodeRoot(atkObject(t, rootTable{Files: 1 << 40, Bytes: 1 << 50, Height: 2, Root: root}))
	if err != nil {
		t.Fatal(err)
	}
	src := &atkCounting{Chunks: mc}
	start := time.Now()
	most := 0
	err = m.EachFile(t.Context(), src, 0, nil, func(f *File) error { most = max(most, len(f.Chunks)); return nil })
	if d := time.Since(start); err == nil || most > 1 || src.asked > 2*leafBatch || d > time.Minute {
		t.Errorf("EachFile of a forged tree of 3 nodes: %v after %v, %d fetches, handing on a file of %d chunks; want it refused at once", err, d, src.asked, most)
	}
}

// Streaming the valid tree of large files holds a batch of bounded bytes,
// not 64 leaves of the largest kind raw and decoded.
func TestStreamAttackLargeFilesMemBound(t *testing.T) {
	memBound(t)
	if testing.Short() {
		t.Skip("builds 120 MiB of files")
	}
	for _, c := range []struct{ chunks, perLeaf int }{{1000, 8}, {maxLeafRefs, 1}} {
		t.Run(fmt.Sprintf("%d files of %d chunks a leaf", c.perLeaf, c.chunks), func(t *testing.T) {
			g, obj := atkMemTree(t, c.chunks, c.perLeaf, 120<<20)
			peak, decoded := atkEachFilePeak(t, g, obj, leafBatch*c.perLeaf)
			if decoded < 120<<20 || peak > 30<<20 {
				t.Errorf("EachFile of %d MiB of files held %d MiB; want over 120 MiB of files, at most 30 MiB held", decoded>>20, peak>>20)
			}
		})
	}
}

// Forged leaves near the largest a leaf may decode to cost a batch of
// bounded bytes, not twice what the forger stored.
func TestStreamAttackForgedLargeLeavesMemBound(t *testing.T) {
	memBound(t)
	if testing.Short() {
		t.Skip("builds 250 MiB of files")
	}
	g, obj := atkMemTree(t, 110_000, 1, 250<<20)
	peak, decoded := atkEachFilePeak(t, g, obj, 1)
	if peak > 64<<20 {
		t.Errorf("EachFile of %d leaves of %d MiB of files held %d MiB; want at most 64 MiB", len(g.leafOf), decoded>>20, peak>>20)
	}
}

// memBound skips a test that decodes hundreds of MiB to measure a memory
// bound when the race detector is on: it takes minutes there, and its
// code runs under the race detector in smaller tests. test.sh runs the
// tests whose names end in MemBound without it, so each such test must be
// named so.
func memBound(t *testing.T) {
	t.Helper()
	if !strings.HasSuffix(t.Name(), "MemBound") {
		t.Fatalf("%s calls memBound: its name must end in MemBound, or test.sh never runs it", t.Name())
	}
	if raceOn {
		t.Skip("a memory bound over hundreds of MiB: measured without the race detector (test.sh runs it so)")
	}
}
