package manifest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/cassback/cassback/chunk"
)

// Format 3 stores a manifest as a small object (its header, and for each
// table the count and size of its files and the root of a tree) and each
// table's files as a tree of chunks, stored in packs and named by the index
// like any chunk (docs/design.md §1.5). Leaves hold runs of the table's
// files, in order, in a binary encoding (leaf.go) that names the host,
// keyspace and table they belong to. A leaf ends after a
// file whose path hash has its low leafBits zero, or once it holds
// leafCost bytes of decoded memory, so adding or removing one SSTable
// changes only its leaf and one node a level above it: the other nodes keep
// their IDs, and a continuous commit stores only what changed. Inner nodes
// list their children and end after a child whose ID has its low nodeBits
// zero, or at maxChildren. Identical trees dedup like identical files.

// leafTime dates the manifest a leaf's files are validated in (leafOf): a
// leaf's bytes depend only on its host, keyspace, table and files, so an
// unchanged run of files is the same leaf in every backup of the host.
var leafTime = time.Unix(0, 0).UTC()

const (
	leafBits    = 6         // a leaf holds about 64 files
	leafCost    = 256 << 10 // or at most this much decoded memory, past one file
	maxLeafRefs = 1 << 14   // a file of more chunks is cut into parts, a leaf each
	// maxLeafMem bounds what one leaf decodes to: leafCost and one more
	// file of maxLeafRefs chunks with long names fit well within it.
	maxLeafMem  = 4 << 20
	nodeBits    = 5 // an inner node has about 32 children
	maxChildren = 1024
	maxHeight   = 16
	// maxNode bounds an inner node object and its JSON: maxChildren
	// references are under 100 KiB.
	maxNode = 256 << 10
	// maxRoot bounds a manifest object and its JSON: some 5,000 tables
	// (Cassandra warns past 150 in a cluster).
	maxRoot = 1 << 20
)

// Node is one node of a manifest's tree: a chunk to store before the
// manifest object that names it.
type Node struct {
	ID   chunk.ID
	Data []byte
}

// Chunks fetches chunks by ID, checking each against its ID: where Get
// reads the nodes of a manifest's trees from. index.Source implements it.
// fn may be called from several goroutines at once.
type Chunks interface {
	FetchChunks(ctx context.Context, ids []chunk.ID, fn func(id chunk.ID, data []byte) error) error
}

// rootObject is the stored manifest object.
type rootObject struct {
	Format           int         `json:"format"`
	Name             string      `json:"name"`
	Host             string      `json:"host"`
	Keyspace         string      `json:"keyspace"`
	Time             time.Time   `json:"time"`
	CassandraVersion string      `json:"cassandra_version,omitempty"`
	Session          string      `json:"session"`
	Tables           []rootTable `json:"tables"`
}

// rootTable is one table of a manifest object: its files' count and bytes
// and the root of their tree, Height levels of inner nodes above the leaves.
type rootTable struct {
	Name   string    `json:"name"`
	ID     string    `json:"id,omitempty"`
	Files  int       `json:"files"`
	Bytes  int64     `json:"bytes"`
	Height int       `json:"height"`
	Root   chunk.Ref `json:"root"`
}

// innerNode is a node above the leaves.
type innerNode struct {
	Format   int         `json:"format"`
	Children []chunk.Ref `json:"children"`
}

// Encode validates m and returns its manifest object and the nodes of its
// trees, which must be stored (and indexed) before the object. The nodes
// are chunks named by nm, the store's (chunk.Params.Namer), and readers
// check them so. It sets m.Nodes to the nodes' references.
func Encode(m *Manifest, nm chunk.Namer) (obj []byte, nodes []Node, err error) {
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}
	// Readers take a table a batch of leaves and a file at a time
	// (EachFile), so a manifest may be of any size, but not a file nor a
	// table's tree past what they accept.
	for _, t := range m.Tables {
		for i := range t.Files {
			if c := t.Files[i].memCost(); c > maxFileMem {
				return nil, nil, fmt.Errorf("manifest %s: %w: file %s of %d chunks takes %d MiB in memory, more than the %d MiB a reader accepts",
					m.Name, ErrTooLarge, t.Files[i].Path, len(t.Files[i].Chunks), c>>20, maxFileMem>>20)
			}
		}
	}
	ro := rootObject{Format: FormatVersion, Name: m.Name, Host: m.Host, Keyspace: m.Keyspace, Time: m.Time.UTC(),
		CassandraVersion: m.CassandraVersion, Session: m.Session, Tables: []rootTable{}}
	seen := map[chunk.ID]bool{}
	emit := func(data []byte) chunk.Ref {
		n := Node{ID: nm.Sum(data), Data: data}
		if !seen[n.ID] {
			seen[n.ID] = true
			nodes = append(nodes, n)
		}
		return chunk.Ref{ID: n.ID, Len: uint32(len(data))}
	}
	for i := range m.Tables {
		rt, err := m.encodeTree(&m.Tables[i], emit)
		if err != nil {
			return nil, nil, fmt.Errorf("manifest %s: table %s: %w", m.Name, m.Tables[i].Name, err)
		}
		ro.Tables = append(ro.Tables, rt)
	}
	obj, err = gzipJSON(ro)
	if err != nil {
		return nil, nil, err
	}
	if len(obj) > maxRoot {
		return nil, nil, fmt.Errorf("manifest %s: %w: %d tables", m.Name, ErrTooLarge, len(m.Tables))
	}
	m.Nodes = m.Nodes[:0]
	for _, n := range nodes {
		m.Nodes = append(m.Nodes, chunk.Ref{ID: n.ID, Len: uint32(len(n.Data))})
	}
	return obj, nodes, nil
}

// encodeTree cuts a table's files into leaves, and the leaves' references
// into levels of inner nodes until one node is left: the root.
func (m *Manifest) encodeTree(t *Table, emit func([]byte) chunk.Ref) (rootTable, error) {
	rt := rootTable{Name: t.Name, ID: t.ID, Files: len(t.Files)}
	var level []chunk.Ref
	start, cost := 0, int64(0)
	for j := range t.Files {
		f := &t.Files[j]
		rt.Bytes += f.Size
		if len(f.Chunks) > maxLeafRefs {
			// A file of more chunks than a leaf holds (over 64 GiB at the
			// mean chunk) is cut into parts, a leaf each, which readers
			// join again.
			if start < j {
				level = append(level, emit(m.encodeLeaf(t, t.Files[start:j])))
			}
			for k := 0; k < len(f.Chunks); k += maxLeafRefs {
				part := *f
				part.Chunks = f.Chunks[k:min(k+maxLeafRefs, len(f.Chunks))]
				part.Size = 0
				for _, c := range part.Chunks {
					part.Size += int64(c.Len)
				}
				level = append(level, emit(m.encodeLeaf(t, []File{part})))
			}
			start, cost = j+1, 0
			continue
		}
		cost += f.memCost()
		if j < len(t.Files)-1 && !leafEnds(f) && cost < leafCost {
			continue
		}
		level = append(level, emit(m.encodeLeaf(t, t.Files[start:j+1])))
		start, cost = j+1, 0
	}
	if len(level) == 0 { // a table without files: one empty leaf
		level = append(level, emit(m.encodeLeaf(t, nil)))
	}
	if len(level) > maxTableLeaves {
		return rt, fmt.Errorf("%w: %d leaves, more than the %d a reader accepts", ErrTooLarge, len(level), maxTableLeaves)
	}
	for len(level) > 1 {
		var up []chunk.Ref
		start := 0
		for j, c := range level {
			if j < len(level)-1 && c.ID[1]&(1<<nodeBits-1) != 0 && j+1-start < maxChildren {
				continue
			}
			b, err := gzipJSON(innerNode{Format: FormatVersion, Children: level[start : j+1]})
			if err != nil {
				return rt, err
			}
			up = append(up, emit(b))
			start = j + 1
		}
		level = up
		rt.Height++
	}
	rt.Root = level[0]
	return rt, nil
}

// leafEnds reports whether a leaf ends after f: the low leafBits of the
// BLAKE3 of its path and root are zero. Plain BLAKE3 on every store: the
// hash picks cut points and is stored nowhere; the leaves it cuts are
// chunks, named (keyed on an encrypted store) like any other.
func leafEnds(f *File) bool {
	h := chunk.Sum([]byte(f.Path + "\x00" + f.Root))
	return h[0]&(1<<leafBits-1) == 0
}

// leafOf is the manifest of the given host and keyspace dated leafTime
// holding one table, as a leaf's files are validated.
func leafOf(host, keyspace string, t Table) *Manifest {
	return &Manifest{Format: FormatVersion, Name: BackupName(leafTime, keyspace, host), Host: host, Keyspace: keyspace,
		Time: leafTime, Tables: []Table{t}}
}

// memCost is what one file costs a decoder (see Manifest.MemCost).
func (f *File) memCost() int64 {
	return fileSize + int64(len(f.Path)+len(f.Root)+len(f.User)+len(f.Group)) + int64(len(f.Chunks))*refSize
}

// gzipWriters recycles gzip writers (about 1 MB each): continuous backup
// encodes many manifests. Reset keeps the zero Header: no name, no
// comment, mtime 0.
var gzipWriters sync.Pool

// gzipJSON is v as JSON in a gzip member with that fixed header.
func gzipJSON(v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
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

// gunzipJSON decodes a gzip member of at most limit bytes of JSON into v,
// refusing unknown fields, anything after the member, and JSON that is not
// what json.Marshal writes for the value it decodes to.
func gunzipJSON(b []byte, limit int64, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not gzip: %w", err)
	}
	zr.Multistream(false)
	js, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return err
	}
	if int64(len(js)) > limit {
		return fmt.Errorf("more than %d bytes of JSON", limit)
	}
	if n, _ := zr.Read(make([]byte, 1)); n > 0 {
		return errors.New("data after the gzip member")
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if again, err := json.Marshal(v); err != nil || !bytes.Equal(again, js) {
		return errors.New("not in canonical form")
	}
	return nil
}

// decodeRoot decodes a manifest object into the manifest's header and its
// tables without their files (Count and Bytes set), and the tables' roots.
func decodeRoot(obj []byte) (*Manifest, []rootTable, error) {
	var ro rootObject
	err := gunzipJSON(obj, maxRoot, &ro)
	if ro.Format != FormatVersion && ro.Format != 0 {
		return nil, nil, fmt.Errorf("manifest format %d not supported", ro.Format)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("manifest: %w", err)
	}
	m := &Manifest{Format: ro.Format, Name: ro.Name, Host: ro.Host, Keyspace: ro.Keyspace, Time: ro.Time,
		CassandraVersion: ro.CassandraVersion, Session: ro.Session, Tables: []Table{}}
	for _, rt := range ro.Tables {
		if rt.Files < 0 || rt.Bytes < 0 || rt.Height < 0 || rt.Height > maxHeight {
			return nil, nil, fmt.Errorf("manifest %.300q: table %.300q: bad counts", m.Name, rt.Name)
		}
		m.Tables = append(m.Tables, Table{Name: rt.Name, ID: rt.ID, Files: []File{}, Count: rt.Files, Bytes: rt.Bytes})
	}
	m.roots = ro.Tables
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}
	return m, ro.Tables, nil
}

// Read decodes a manifest object and reads its tables' files from src,
// checking every node against its reference, every leaf's host, keyspace
// and table, and the whole manifest as Validate does; it holds at most
// MaxDecodedMemory of decoded files. A manifest larger than that is read a
// table and a leaf at a time instead: GetHeader, then EachFile.
func Read(ctx context.Context, obj []byte, src Chunks) (*Manifest, error) {
	m, roots, err := decodeRoot(obj)
	if err != nil {
		return nil, err
	}
	// What the manifest will hold, as MemCost counts it (and Encode
	// checks): its header and tables now, then each file.
	budget := MaxDecodedMemory - m.MemCost()
	for i, rt := range roots {
		files := []File{}
		err := m.eachFile(ctx, src, rt, budget, func(n chunk.Ref) error {
			m.Nodes = append(m.Nodes, n)
			return nil
		}, func(f *File) error {
			if budget -= f.memCost(); budget < 0 {
				return fmt.Errorf("%w: more than %d bytes in memory", ErrTooLarge, MaxDecodedMemory)
			}
			files = append(files, *f)
			return nil
		})
		if err != nil {
			return nil, err
		}
		m.Tables[i].Files = files
	}
	// Valid as a whole: the header was (decodeRoot), each leaf was, and
	// eachFile checked the order across leaves.
	m.roots = nil
	return m, nil
}

// EachFile calls fn with each file of table i in order, and nodes, when
// not nil, with each node of the table's tree before the files they hold.
// For a manifest from GetHeader it reads the tree from src, checked as
// Read checks it, holding a batch of leaves and one file at a time (so it
// reads a table of any size); otherwise it walks Tables[i].Files, and
// nodes is not called. fn may keep f and its chunk list: neither is
// reused.
func (m *Manifest) EachFile(ctx context.Context, src Chunks, i int, nodes func(chunk.Ref) error, fn func(f *File) error) error {
	if m.roots == nil {
		for j := range m.Tables[i].Files {
			if err := fn(&m.Tables[i].Files[j]); err != nil {
				return err
			}
		}
		return nil
	}
	if nodes == nil {
		nodes = func(chunk.Ref) error { return nil }
	}
	return m.eachFile(ctx, src, m.roots[i], maxFileMem, nodes, fn)
}

// maxTableLeaves bounds the leaves of one table's tree a streaming reader
// accepts: a million leaves of about 64 files each is 64 million files,
// and a forged level of that many references costs 36 MB.
const maxTableLeaves = 1 << 20

// maxFileMem bounds one file's record as a streaming reader joins its
// parts: MaxDecodedMemory, 1.16 million chunks (over 2 TiB at the least
// chunk size).
const maxFileMem = MaxDecodedMemory

// eachFile reads table rt's tree from src, calls nodes with each of its
// nodes a level at a time and fn with each of its files in order, and
// then checks the files' count and bytes against rt. A file cut in parts
// across leaves is joined before fn sees it; one record may cost at most
// fileMem (Manifest.MemCost).
//
// No level may hold more nodes than the table can have leaves: a leaf per
// file and one per 16,384 chunks (of 1 byte or more) of a file cut in
// parts, and no more than maxTableLeaves nor than fileMem has room for
// files when that is less (a leaf holds one file at least; only a table
// without files has an empty leaf). A forged tree naming one child again
// and again is refused that way; a node named twice in a batch is fetched
// and decoded once (the parts of a file of repeated content are equal
// leaves).
func (m *Manifest) eachFile(ctx context.Context, src Chunks, rt rootTable, fileMem int64, nodes func(chunk.Ref) error, fn func(*File) error) error {
	err := m.walkTable(ctx, src, rt, fileMem, nodes, fn)
	if err != nil {
		return fmt.Errorf("manifest %s: table %s: %w", m.Name, rt.Name, err)
	}
	return nil
}

func (m *Manifest) walkTable(ctx context.Context, src Chunks, rt rootTable, fileMem int64, nodes func(chunk.Ref) error, fn func(*File) error) error {
	maxLeaves := int64(maxTableLeaves)
	if n := 1 + int64(rt.Files) + rt.Bytes/maxLeafRefs; n < maxLeaves {
		maxLeaves = n
	}
	if n := 1 + fileMem/fileSize; fileMem < maxFileMem && n < maxLeaves {
		maxLeaves = n
	}
	level := []chunk.Ref{rt.Root}
	for h := rt.Height; ; h-- {
		if int64(len(level)) > maxLeaves {
			return fmt.Errorf("%d nodes at height %d of the tree, more than its %d files can need", len(level), h, rt.Files)
		}
		for _, n := range level {
			if err := nodes(n); err != nil {
				return err
			}
		}
		if h == 0 {
			break
		}
		var next []chunk.Ref
		for i := 0; i < len(level); {
			if err := ctx.Err(); err != nil {
				return err
			}
			end := nextBatch(level, i)
			batch := level[i:end]
			i = end
			for _, r := range batch {
				if r.Len > maxInnerBytes {
					return fmt.Errorf("node %s: %d bytes, more than an inner node has", r.ID, r.Len)
				}
			}
			data, err := fetchNodes(ctx, src, distinct(batch))
			if err != nil {
				return err
			}
			children := map[chunk.ID][]chunk.Ref{} // a node named again is not decoded again
			for _, ref := range batch {
				c, ok := children[ref.ID]
				if !ok {
					if c, err = decodeInner(ref.ID, data[ref.ID]); err != nil {
						return err
					}
					children[ref.ID] = c
				}
				if int64(len(next)+len(c)) > maxLeaves {
					return fmt.Errorf("more than %d nodes at height %d of the tree, more than its %d files can need", maxLeaves, h-1, rt.Files)
				}
				next = append(next, c...)
			}
		}
		level = next
	}
	files, bytes, err := m.eachLeafFile(ctx, src, rt, level, fileMem, fn)
	if err != nil {
		return err
	}
	if files != rt.Files || bytes != rt.Bytes {
		return fmt.Errorf("%d files of %d bytes in its tree, %d of %d in its header", files, bytes, rt.Files, rt.Bytes)
	}
	return nil
}

// decodeInner decodes an inner node of a tree and returns its children.
func decodeInner(id chunk.ID, data []byte) ([]chunk.Ref, error) {
	var n innerNode
	if err := gunzipJSON(data, maxNode, &n); err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	if n.Format != FormatVersion || len(n.Children) == 0 || len(n.Children) > maxChildren {
		return nil, fmt.Errorf("node %s: format %d, %d children", id, n.Format, len(n.Children))
	}
	return n.Children, nil
}

// distinct returns refs without repeats, in order.
func distinct(refs []chunk.Ref) []chunk.Ref {
	var out []chunk.Ref
	for _, r := range refs {
		if !slices.ContainsFunc(out, func(o chunk.Ref) bool { return o.ID == r.ID }) {
			out = append(out, r)
		}
	}
	return out
}

// A Walker walks the references of manifests, reading each table's tree
// once: a table whose tree it read before — the same root node, so the
// same tree, and the same counts in its header — is passed over, as a
// purge's mark passes over the unchanged tables of a host's every backup.
type Walker struct {
	tables map[chunk.ID]tableCounts // roots of the trees read whole
}

type tableCounts struct {
	files int
	bytes int64
}

// NewWalker returns a Walker that has read no tree.
func NewWalker() *Walker { return &Walker{tables: map[chunk.ID]tableCounts{}} }

// Walk reads a manifest object and the trees of its tables it has not read
// before from src, checking each as Read does, and calls fn with every
// chunk they reference: their nodes and their files' chunks. It holds a
// batch of leaves at a time, so it walks a manifest of any size.
func (w *Walker) Walk(ctx context.Context, obj []byte, src Chunks, fn func(chunk.ID) error) error {
	m, roots, err := decodeRoot(obj)
	if err != nil {
		return err
	}
	for _, rt := range roots {
		counts := tableCounts{rt.Files, rt.Bytes}
		if c, ok := w.tables[rt.Root.ID]; ok && c == counts {
			continue
		}
		err := m.eachFile(ctx, src, rt, maxFileMem, func(n chunk.Ref) error {
			return fn(n.ID)
		}, func(f *File) error {
			for _, c := range f.Chunks {
				if err := fn(c.ID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		w.tables[rt.Root.ID] = counts
	}
	return nil
}

// leafBatch is how many nodes are fetched at once.
const leafBatch = 64

// eachLeafFile fetches and decodes the leaves in order, leafBatch at a
// time, calls fn with each of their files (a file cut across leaves
// joined), and returns the number of files and their bytes.
func (m *Manifest) eachLeafFile(ctx context.Context, src Chunks, rt rootTable, refs []chunk.Ref, fileMem int64, fn func(*File) error) (count int, total int64, err error) {
	t := &Table{Name: rt.Name, ID: rt.ID}
	// The last file is held until the next leaf shows whether it goes on
	// there; parts holds the chunks of its further parts, which flush
	// appends to its record in one allocation of their exact size. A leaf
	// goes on with it only as Encode cuts a file: the last file was alone
	// in its leaf, stored, and its last part a full one (maxLeafRefs
	// chunks), and the leaf holds that file's next part alone.
	var last *File
	var parts [][]chunk.Ref
	var lastMem int64
	var lastAlone bool
	lastPart := 0 // chunks in the last part of last
	flush := func() error {
		if last == nil {
			return nil
		}
		if len(parts) > 0 {
			n := len(last.Chunks)
			for _, p := range parts {
				n += len(p)
			}
			all := make([]chunk.Ref, 0, n)
			all = append(all, last.Chunks...)
			for _, p := range parts {
				all = append(all, p...)
			}
			last.Chunks, parts = all, parts[:0]
		}
		count++
		total += last.Size
		if count > rt.Files || total > rt.Bytes {
			return fmt.Errorf("more files or bytes in its tree than the %d files of %d bytes in its header", rt.Files, rt.Bytes)
		}
		f := last
		last = nil
		return fn(f)
	}
	var prevID chunk.ID // the leaf decoded last, named again by the parts of a file of repeated content
	var prev []File
	for i := 0; i < len(refs); {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		end := nextBatch(refs, i)
		batch := refs[i:end]
		i = end
		for _, r := range batch {
			if r.Len > maxLeafBytes {
				return 0, 0, fmt.Errorf("leaf %s: %d bytes, more than a leaf has", r.ID, r.Len)
			}
		}
		data, err := fetchNodes(ctx, src, distinct(batch))
		if err != nil {
			return 0, 0, err
		}
		for _, ref := range batch {
			lf := prev
			if prev == nil || ref.ID != prevID {
				if lf, err = m.decodeLeaf(data[ref.ID], t, maxLeafMem); err != nil {
					return 0, 0, fmt.Errorf("leaf %s: %w", ref.ID, err)
				}
				if len(lf) == 0 && (rt.Files != 0 || len(refs) != 1) {
					return 0, 0, fmt.Errorf("leaf %s: empty, in a table that has files", ref.ID)
				}
				prevID, prev = ref.ID, lf
			}
			if len(lf) == 1 && last != nil && lastAlone && lastPart == maxLeafRefs && !last.Unstored &&
				lf[0].Path == last.Path && lf[0].Root == last.Root {
				// The next part of a file cut across leaves.
				if !samePart(last, &lf[0]) {
					return 0, 0, fmt.Errorf("leaf %s: file %s repeated with other metadata", ref.ID, lf[0].Path)
				}
				if lastMem += int64(len(lf[0].Chunks)) * refSize; lastMem > fileMem {
					return 0, 0, fmt.Errorf("%w: file %s: more than %d bytes in memory", ErrTooLarge, last.Path, fileMem)
				}
				parts = append(parts, lf[0].Chunks)
				last.Size += lf[0].Size
				lastPart = len(lf[0].Chunks)
				continue
			}
			for j := range lf {
				// Each leaf's files are valid and in order (decodeLeaf);
				// so are the table's if each leaf's first follows the
				// last before.
				if j == 0 && last != nil && compareFiles(*last, lf[0]) >= 0 {
					return 0, 0, fmt.Errorf("leaf %s: file %s: files not sorted by path and root, or repeated", ref.ID, lf[0].Path)
				}
				if err := flush(); err != nil {
					return 0, 0, err
				}
				// A copy: the leaf's records are shared with the decoded
				// leaf kept for a repeat; the chunk lists are shared too,
				// but nothing ever appends to one in place (each has no
				// room past its end).
				f := lf[j]
				last, lastMem, lastAlone, lastPart = &f, f.memCost(), len(lf) == 1, len(f.Chunks)
			}
		}
	}
	if err := flush(); err != nil {
		return 0, 0, err
	}
	return count, total, nil
}

// batchBytes bounds the stored bytes of the nodes fetched at once (and
// held raw while a batch is decoded): 64 nodes, or fewer if they are
// large, but at least one.
const batchBytes = 4 << 20

// maxLeafBytes bounds a leaf's stored bytes: what a leaf of maxLeafMem
// decoded memory can take encoded (a chunk reference is at most 37 bytes
// for 36 decoded), with room to spare; maxInnerBytes bounds an inner
// node's gzip member of maxNode bytes of JSON.
const (
	maxLeafBytes  = 2 * maxLeafMem
	maxInnerBytes = maxNode + maxNode/64 + 1024
)

// nextBatch returns the end of the batch of refs that starts at i: at
// most leafBatch nodes and, past the first, batchBytes of them.
func nextBatch(refs []chunk.Ref, i int) int {
	end, size := i+1, int64(refs[i].Len)
	for end < len(refs) && end-i < leafBatch && size+int64(refs[end].Len) <= batchBytes {
		size += int64(refs[end].Len)
		end++
	}
	return end
}

// fetchNodes fetches the nodes of one level, each checked against its
// length (src checks its ID).
func fetchNodes(ctx context.Context, src Chunks, refs []chunk.Ref) (map[chunk.ID][]byte, error) {
	if src == nil {
		return nil, errors.New("no source for the manifest's tree")
	}
	ids := make([]chunk.ID, len(refs))
	for i, r := range refs {
		ids[i] = r.ID
	}
	data := make(map[chunk.ID][]byte, len(refs))
	var mu sync.Mutex // fn may be called from several goroutines at once
	err := src.FetchChunks(ctx, ids, func(id chunk.ID, b []byte) error {
		mu.Lock()
		data[id] = bytes.Clone(b)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		b, ok := data[r.ID]
		if !ok {
			return nil, fmt.Errorf("node %s: not found", r.ID)
		}
		if len(b) != int(r.Len) {
			return nil, fmt.Errorf("node %s: %d bytes, its reference says %d", r.ID, len(b), r.Len)
		}
	}
	return data, nil
}

// samePart reports whether two records are parts of one file: all but
// their size and chunks agree.
func samePart(a, b *File) bool {
	x, y := *a, *b
	x.Size, x.Chunks, y.Size, y.Chunks = 0, nil, 0, nil
	return reflect.DeepEqual(x, y)
}
