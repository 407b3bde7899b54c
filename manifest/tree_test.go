package manifest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// memChunks is a chunk store in memory, for the trees of tests.
type memChunks map[chunk.ID][]byte

func (mc memChunks) FetchChunks(_ context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	for _, id := range ids {
		b, ok := mc[id]
		if !ok {
			return fmt.Errorf("chunk %s: not stored", id)
		}
		if err := fn(id, b); err != nil {
			return err
		}
	}
	return nil
}

// putManifest stores m's nodes in mc and its object in st.
func putManifest(ctx context.Context, st remote.Store, m *Manifest, mc memChunks) error {
	obj, nodes, err := Encode(m, chunk.Namer{})
	if err != nil {
		return err
	}
	for _, n := range nodes {
		mc[n.ID] = n.Data
	}
	return Put(ctx, st, m.Name, obj)
}

// treeManifest is a manifest of one table of n SSTables of two files each.
func treeManifest(n int, at time.Time) *Manifest {
	return treeManifestOf(n, []string{"Data.db", "TOC.txt"}, at)
}

// treeManifestOf is a manifest of one table of n SSTables of the given
// components.
func treeManifestOf(n int, comps []string, at time.Time) *Manifest {
	m := &Manifest{Format: FormatVersion, Host: "h", Keyspace: "ks", Time: at, Session: "0123456789abcdef01234567",
		Tables: []Table{{Name: "t", ID: id32, Files: []File{}}, {Name: "u", ID: id32, Files: []File{}}}}
	m.Name = BackupName(m.Time, m.Keyspace, m.Host)
	for i := range n {
		for _, comp := range comps {
			f := File{Path: fmt.Sprintf("ks/t-%s/nb-%d-big-%s", id32, i+1, comp), Mode: 0o644, MTime: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
				Size: 10, Sum: chunk.Sum(fmt.Appendf(nil, "%d%s", i, comp))}
			f.Chunks = []chunk.Ref{{ID: f.Sum, Len: 10}}
			m.Tables[0].Files = append(m.Tables[0].Files, f)
		}
	}
	m.Sort()
	return m
}

// A manifest round-trips through its tree, which has several levels for
// many files; its Refs hold its nodes.
func TestTreeRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 50, 20_000} {
		m := treeManifest(n, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
		obj, nodes, err := Encode(m, chunk.Namer{})
		if err != nil {
			t.Fatal(err)
		}
		mc := memChunks{}
		for _, nd := range nodes {
			mc[nd.ID] = nd.Data
		}
		got, err := Read(t.Context(), obj, mc)
		if err != nil {
			t.Fatalf("%d SSTables: %v", n, err)
		}
		for i := range got.Tables {
			got.Tables[i].Count, got.Tables[i].Bytes = 0, 0
		}
		byID := func(a, b chunk.Ref) int { return chunk.Compare(a.ID, b.ID) }
		slices.SortFunc(got.Nodes, byID)
		slices.SortFunc(m.Nodes, byID)
		if !reflect.DeepEqual(got.Tables, m.Tables) || got.Name != m.Name || !reflect.DeepEqual(got.Nodes, m.Nodes) {
			t.Errorf("%d SSTables: read back differs", n)
		}
		refs := 0
		for range got.Refs() {
			refs++
		}
		if want := 2*n + len(nodes); refs != want {
			t.Errorf("%d SSTables: %d refs, want %d (files and nodes)", n, refs, want)
		}
		t.Logf("%d SSTables: %d nodes, object %d bytes", n, len(nodes), len(obj))
	}
}

// Adding one SSTable to a large table changes a few nodes: the others keep
// their IDs, so a continuous commit stores kilobytes.
func TestTreeChangeIsLocal(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)
	n, comps := 20_000, []string{"Data.db", "TOC.txt"}
	if os.Getenv("CASSBACK_LONG") == "1" {
		// The most one manifest holds: 15,000 SSTables of 8 components.
		n, comps = 15_000, []string{"CompressionInfo.db", "Data.db", "Digest.crc32", "Filter.db", "Index.db", "Statistics.db", "Summary.db", "TOC.txt"}
	}
	m := treeManifestOf(n, comps, at)
	_, before, err := Encode(m, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	old := map[chunk.ID]bool{}
	for _, n := range before {
		old[n.ID] = true
	}
	m2 := treeManifestOf(n, comps, at.Add(time.Second))
	for _, extra := range slices.Clone(m2.Tables[0].Files[:len(comps)]) { // nb-1's files, as a new SSTable
		extra.Path = strings.Replace(extra.Path, "nb-1-", "nb-999999-", 1)
		m2.Tables[0].Files = append(m2.Tables[0].Files, extra)
	}
	m2.Sort()
	_, after, err := Encode(m2, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	newBytes, newNodes := 0, 0
	for _, n := range after {
		if !old[n.ID] {
			newNodes++
			newBytes += len(n.Data)
		}
	}
	obj, _, _ := Encode(m2, chunk.Namer{})
	t.Logf("one SSTable added to %d of %d files each: %d of %d nodes new, %d bytes; manifest object %d bytes", n, len(comps), newNodes, len(after), newBytes, len(obj))
	if newNodes > 4 || newBytes > 32<<10 {
		t.Errorf("one SSTable added: %d new nodes, %d bytes; want at most 4 and 32 KiB", newNodes, newBytes)
	}
}

// A damaged or foreign node is an error naming it; so is a missing one.
func TestTreeRefusesBadNodes(t *testing.T) {
	m := treeManifest(3_000, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	obj, nodes, err := Encode(m, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	other := treeManifest(10, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	other.Keyspace = "ks2"
	other.Name = BackupName(other.Time, other.Keyspace, other.Host)
	for i := range other.Tables {
		for j := range other.Tables[i].Files {
			other.Tables[i].Files[j].Path = strings.Replace(other.Tables[i].Files[j].Path, "ks/", "ks2/", 1)
		}
	}
	_, foreign, err := Encode(other, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(mc memChunks){
		"missing": func(mc memChunks) { delete(mc, nodes[len(nodes)/2].ID) },
		"short":   func(mc memChunks) { id := nodes[0].ID; mc[id] = mc[id][:len(mc[id])-1] },
		"foreign leaf": func(mc memChunks) {
			mc[nodes[0].ID] = foreign[0].Data
		},
	} {
		mc := memChunks{}
		for _, n := range nodes {
			mc[n.ID] = n.Data
		}
		mutate(mc)
		if _, err := Read(t.Context(), obj, mc); err == nil {
			t.Errorf("%s node: read without error", name)
		} else {
			t.Logf("%s node: %v", name, err)
		}
	}
}

// FuzzRead: a manifest object and a node of any bytes never crash Read,
// and what Read accepts is a valid manifest.
func FuzzRead(f *testing.F) {
	m := treeManifest(200, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	obj, nodes, err := Encode(m, chunk.Namer{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(obj, nodes[0].Data)
	f.Add(obj, []byte{})
	bad, err := gzipJSON(map[string]any{"format": FormatVersion, "tables": []any{map[string]any{"height": 16}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bad, nodes[len(nodes)-1].Data)
	f.Fuzz(func(t *testing.T, obj, node []byte) {
		mc := memChunks{}
		for _, n := range nodes {
			mc[n.ID] = n.Data
		}
		mc[nodes[0].ID] = node // what a forger writes, under a node's ID
		// Walk refuses or walks; what it names of an accepted manifest is
		// what Read finds.
		walked := map[chunk.ID]bool{}
		werr := NewWalker().Walk(t.Context(), obj, mc, func(id chunk.ID) error { walked[id] = true; return nil })
		got, err := Read(t.Context(), obj, mc)
		if err != nil {
			return
		}
		if werr != nil {
			t.Fatalf("Read accepted a manifest Walk refused: %v", werr)
		}
		for r := range got.Refs() {
			if !walked[r.ID] {
				t.Fatalf("Walk did not name %s", r.ID)
			}
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("Read accepted an invalid manifest: %v", err)
		}
	})
}

// A file of more chunks than a leaf holds is cut into parts and joined
// again on reading.
func TestTreeSplitsLargeFile(t *testing.T) {
	m := treeManifest(3, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	f := &m.Tables[0].Files[1]
	f.Chunks, f.Size = nil, 0
	for i := range 3*maxLeafRefs + 7 {
		f.Chunks = append(f.Chunks, chunk.Ref{ID: chunk.Sum(fmt.Appendf(nil, "c%d", i)), Len: 3})
		f.Size += 3
	}
	obj, nodes, err := Encode(m, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	mc := memChunks{}
	for _, n := range nodes {
		mc[n.ID] = n.Data
	}
	got, err := Read(t.Context(), obj, mc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Tables[0].Files, m.Tables[0].Files) {
		t.Errorf("the large file did not come back whole")
	}
	if len(nodes) < 5 {
		t.Errorf("%d nodes, want its four parts in leaves of their own", len(nodes))
	}
}

// A leaf that decodes to more than maxLeafMem (one no encoder makes: a
// file over maxLeafRefs is cut into parts) is refused.
func TestTreeRefusesHugeLeaf(t *testing.T) {
	m := treeManifest(1, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	f := &m.Tables[0].Files[0]
	f.Chunks, f.Size = nil, 0
	for i := range maxLeafMem/int(refSize) + 1 {
		f.Chunks = append(f.Chunks, chunk.Ref{ID: chunk.Sum(fmt.Appendf(nil, "c%d", i)), Len: 1})
		f.Size++
	}
	leaf := m.encodeLeaf(&m.Tables[0], m.Tables[0].Files)
	id := chunk.Sum(leaf)
	obj, err := gzipJSON(rootObject{Format: FormatVersion, Name: m.Name, Host: m.Host, Keyspace: m.Keyspace, Time: m.Time,
		Session: m.Session, Tables: []rootTable{{Name: "t", ID: id32, Files: 2, Bytes: f.Size + 10, Root: chunk.Ref{ID: id, Len: uint32(len(leaf))}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Read(t.Context(), obj, memChunks{id: leaf})
	if err == nil || !strings.Contains(err.Error(), "bytes in memory") {
		t.Errorf("Read of a leaf over %d bytes: %v, want it refused", maxLeafMem, err)
	}
}

// Read holds at most MaxDecodedMemory: a manifest at the bound, with a
// file cut into parts, reads back; one byte of names more is refused by
// Read but encodes, and EachFile reads it a file at a time.
func TestTreeEncodeAtMemBound(t *testing.T) {
	memBound(t)
	m := treeManifest(2, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	f := &m.Tables[0].Files[1]
	n := int((MaxDecodedMemory - m.MemCost()) / refSize)
	f.Chunks = slices.Repeat([]chunk.Ref{{ID: chunk.Sum([]byte("x")), Len: 1}}, n)
	f.Size = int64(n) + 0
	for m.MemCost() < MaxDecodedMemory {
		m.CassandraVersion += "v"
	}
	if m.MemCost() != MaxDecodedMemory {
		t.Fatalf("MemCost %d, want %d", m.MemCost(), MaxDecodedMemory)
	}
	obj, nodes, err := Encode(m, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	mc := memChunks{}
	for _, nd := range nodes {
		mc[nd.ID] = nd.Data
	}
	if _, err := Read(t.Context(), obj, mc); err != nil {
		t.Fatalf("Read of a manifest at the bound: %v", err)
	}
	m.CassandraVersion += "v"
	if obj, nodes, err = Encode(m, chunk.Namer{}); err != nil {
		t.Fatalf("Encode one byte over Read's bound: %v", err)
	}
	for _, nd := range nodes {
		mc[nd.ID] = nd.Data
	}
	if _, err := Read(t.Context(), obj, mc); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read one byte over the bound: %v, want ErrTooLarge", err)
	}
	h, _, err := decodeRoot(obj)
	if err != nil {
		t.Fatal(err)
	}
	var got []File
	if err := h.EachFile(t.Context(), mc, 0, nil, func(f *File) error {
		got = append(got, *f)
		return nil
	}); err != nil {
		t.Fatalf("EachFile one byte over Read's bound: %v", err)
	}
	if !reflect.DeepEqual(got, m.Tables[0].Files) {
		t.Fatalf("EachFile read %d files, not the %d encoded", len(got), len(m.Tables[0].Files))
	}
}

// A forged tree naming one child again and again is refused at once, even
// when its header claims files enough for that many leaves.
func TestTreeRefusesRepeatedChild(t *testing.T) {
	m := treeManifest(0, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	leaf := m.encodeLeaf(&Table{Name: "t", ID: id32}, nil)
	mc := memChunks{chunk.Sum(leaf): leaf}
	ref := chunk.Ref{ID: chunk.Sum(leaf), Len: uint32(len(leaf))}
	for range 2 {
		b, err := gzipJSON(innerNode{Format: FormatVersion, Children: slices.Repeat([]chunk.Ref{ref}, maxChildren)})
		if err != nil {
			t.Fatal(err)
		}
		ref = chunk.Ref{ID: chunk.Sum(b), Len: uint32(len(b))}
		mc[ref.ID] = b
	}
	obj, err := gzipJSON(rootObject{Format: FormatVersion, Name: m.Name, Host: m.Host, Keyspace: m.Keyspace, Time: m.Time,
		Session: m.Session, Tables: []rootTable{{Name: "t", ID: id32, Files: 10_000_000, Height: 2, Root: ref}}})
	if err != nil {
		t.Fatal(err)
	}
	var fetched int
	total, _ := allocated(func() { _, err = Read(t.Context(), obj, countingChunks{memChunks: mc, n: &fetched}) })
	if err == nil || !strings.Contains(err.Error(), "nodes at height 0") {
		t.Errorf("Read of a tree repeating a child: %v, want it refused", err)
	}
	// Counted, not timed: a bound on wall time failed on a loaded machine.
	// Decoding the repeated node once allocates 47 MB (the level of refs
	// up to the bound), decoding it at every mention 265 MB.
	t.Logf("refusing it fetched %d chunks and allocated %d bytes", fetched, total)
	if fetched > 5 || total > 100<<20 {
		t.Errorf("refusing it fetched %d chunks and allocated %d bytes, want at most 5 and %d", fetched, total, 100<<20)
	}
}

// A file cut into parts that are equal leaves (content that repeats every
// part) reads back whole: the parts were joined into the decoded leaf
// itself, which the next equal part then copied, doubling the file's
// chunks at every part until the manifest was refused.
func TestTreeFileOfRepeatedParts(t *testing.T) {
	m := treeManifest(1, time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC))
	f := &m.Tables[0].Files[0]
	n := 3 * maxLeafRefs
	f.Chunks = slices.Repeat([]chunk.Ref{{ID: chunk.Sum([]byte("x")), Len: 1}}, n)
	f.Size = int64(n)
	obj, nodes, err := Encode(m, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	mc := memChunks{}
	for _, nd := range nodes {
		mc[nd.ID] = nd.Data
	}
	got, err := Read(t.Context(), obj, mc)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if g := got.Tables[0].Files[0]; len(g.Chunks) != n || g.Size != int64(n) {
		t.Fatalf("file of %d chunks read back with %d chunks, size %d", n, len(g.Chunks), g.Size)
	}
	// Records share chunk lists with the leaves they were decoded from:
	// none may have room past its end, or an append to one would write
	// into another.
	for _, tb := range got.Tables {
		for _, f := range tb.Files {
			if cap(f.Chunks) != len(f.Chunks) {
				t.Errorf("%s: chunk list of %d with room for %d", f.Path, len(f.Chunks), cap(f.Chunks))
			}
		}
	}
}

// A Walker names every reference Read finds; it passes over a table whose
// tree it read before (a later backup of an unchanged table) and reads a
// changed one whole; a damaged node it must read is an error naming it.
func TestWalkerReadsEachTreeOnce(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)
	m1 := treeManifest(20_000, at)
	m2 := treeManifest(20_000, at.Add(time.Second)) // the same table t
	m3 := treeManifest(20_000, at.Add(2*time.Second))
	extra := slices.Clone(m3.Tables[0].Files[:2])
	for i := range extra {
		extra[i].Path = strings.Replace(extra[i].Path, "nb-1-", "nb-999999-", 1)
		extra[i].Sum = chunk.Sum([]byte(extra[i].Path))
		extra[i].Chunks = []chunk.Ref{{ID: extra[i].Sum, Len: 10}}
	}
	m3.Tables[0].Files = append(m3.Tables[0].Files, extra...)
	m3.Sort()
	mc := memChunks{}
	var objs [][]byte
	for _, m := range []*Manifest{m1, m2, m3} {
		obj, nodes, err := Encode(m, chunk.Namer{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			mc[n.ID] = n.Data
		}
		objs = append(objs, obj)
	}
	refsOf := func(obj []byte) map[chunk.ID]bool {
		m, err := Read(t.Context(), obj, mc)
		if err != nil {
			t.Fatal(err)
		}
		refs := map[chunk.ID]bool{}
		for r := range m.Refs() {
			refs[r.ID] = true
		}
		return refs
	}
	w := NewWalker()
	walk := func(obj []byte) (map[chunk.ID]bool, int) {
		refs, fetched := map[chunk.ID]bool{}, 0
		err := w.Walk(t.Context(), obj, countingChunks{memChunks: mc, n: &fetched}, func(id chunk.ID) error {
			refs[id] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return refs, fetched
	}
	all := map[chunk.ID]bool{} // named by the walks so far
	for i, obj := range objs {
		got, fetched := walk(obj)
		maps.Copy(all, got)
		for id := range refsOf(obj) {
			if !all[id] {
				t.Fatalf("walk %d: %s, a reference Read finds, never named", i, id)
			}
		}
		if i == 1 && (len(got) != 0 || fetched != 0) {
			t.Errorf("the walk of an unchanged table named %d chunks and read %d nodes; want none", len(got), fetched)
		}
		if i == 2 && fetched < 600 {
			t.Errorf("the walk of a changed table read %d nodes; want its whole tree", fetched)
		}
	}
	// A damaged node of a tree not read before is an error naming it.
	m4 := treeManifest(3_000, at)
	obj, nodes, err := Encode(m4, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		mc[n.ID] = n.Data
	}
	mc[nodes[1].ID] = []byte("damaged")
	err = w.Walk(t.Context(), obj, mc, func(chunk.ID) error { return nil })
	if err == nil || !strings.Contains(err.Error(), nodes[1].ID.String()) {
		t.Errorf("walk over damaged node %s: %v", nodes[1].ID, err)
	}
}

// countingChunks counts the nodes fetched.
type countingChunks struct {
	memChunks
	n *int
}

func (c countingChunks) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	*c.n += len(ids)
	return c.memChunks.FetchChunks(ctx, ids, fn)
}
