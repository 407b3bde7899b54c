package gc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/remote"
)

// The ledger is what a purge judges packs from: one compact record for
// every pack of the store, in memory, and every copy of every chunk the
// index files and orphan headers name, in shards by the first bits of the
// chunk's ID — in memory when the store is small against the purge's
// memory bound, else spilled to files — so that a purge's memory grows
// with the store's packs (64 bytes each), not its chunks. The references
// a mark finds are sharded the same way (refSpill), and the collector
// chooses each chunk's keeper a shard at a time (keepers). docs/design.md
// §4.3 and §6.

// idLen is the length of a chunk or pack ID.
const idLen = 32

var _ chunk.ID = [idLen]byte{} // idLen is the length of an ID

// A copy record in a shard: chunk ID, pack number, offset, length.
const copyLen = idLen + 12

// finalPack marks a copy record's pack number as final (an orphan's, read
// from its header after the packs were numbered) rather than provisional
// (the position of the pack's record among all index files' records).
const finalPack = 1 << 31

const (
	packStored     = 1 << iota // in the store listing (and not doomed)
	packFromHeader             // its entries were read from its header: no index file names it
	packAssumed                // stored by the index files' word: the packs were not listed
	// packMisfit: listed at a size other than the one its index files
	// give, or its header found damaged (ledger.confirm): damaged in the
	// store. It is no chunk's copy, as a writer's dedup takes it for gone
	// (index.Writer.present), so it is condemned like any dead pack once
	// every referenced chunk it holds is kept elsewhere (a purge that
	// finds a chunk kept nowhere else deletes nothing: validate names it).
	// Between scans it is not known, and may be kept.
	packMisfit
)

// packRec is one pack as the index files and the store listing see it.
type packRec struct {
	ID        chunk.ID
	Size      int64 // from the index files or its header; -1 if unknown
	StoreSize int64
	ModTime   int64 // store time of its write, Unix nanoseconds
	flags     uint8
}

func (p *packRec) stored() bool     { return p.flags&packStored != 0 }
func (p *packRec) fromHeader() bool { return p.flags&packFromHeader != 0 }
func (p *packRec) assumed() bool    { return p.flags&packAssumed != 0 }
func (p *packRec) misfit() bool     { return p.flags&packMisfit != 0 }

// ledgerFile is an index file the ledger read, and the packs it names.
type ledgerFile struct {
	Key     string
	ModTime int64 // store time of its write, Unix nanoseconds
	Packs   []uint32
}

// A scan says how a ledger learns which packs the store holds.
type scan struct {
	// full lists every pack: the indexed ones missing from the store are
	// found, and the stored ones no index file names (orphans) are read
	// from their headers. Otherwise every indexed pack is assumed stored,
	// written no later than the newest index file naming it, and a pack
	// is judged dead only after the packs kept instead of it are confirmed
	// (ledger.confirm): what the purge reads is then what changed, not
	// every pack of the store (design §4.3 step 2, "Scans").
	full bool
	// extra, without full, are packs whose header is read if no index
	// file names them: the packs of the condemned sets a sweep judges.
	extra map[chunk.ID]bool
}

type ledger struct {
	st      remote.Store
	memory  int64  // the bound
	root    string // where the spill folder is made
	fixed   bool   // the number of shards was given
	dir     string // spill folder; "" when the shards are in memory
	shift   uint   // a chunk's shard is the first 32 bits of its ID >> shift
	shards  []*spill
	packs   []packRec // packs[:indexed] sorted by ID, then the orphans sorted by ID
	indexed int
	files   []ledgerFile
	remap   []uint32 // provisional pack number -> final
	// disputed holds every size the index files give a pack they do not
	// agree on (rare: a damaged or hostile file), by pack number.
	disputed map[uint32][]int64
	// namer is the store's chunk.Namer, to check the nodes it reads.
	namer chunk.Namer

	Bad        map[string]error   // index files that could not be read or decoded
	BadOrphans map[chunk.ID]error // orphans whose header could not be read
}

// shardsFor returns how many shards (a power of two, at most 256) keep
// one shard of about n records of recLen bytes (and the references beside
// them) within a quarter of the memory bound, and whether they must be
// spilled to disk.
func shardsFor(n int64, memory int64) (int, bool) {
	need, quarter := n*(copyLen+idLen+16), max(memory/4, 1)
	if need <= quarter {
		return 1, false
	}
	s := 1 << bits.Len64(uint64(need/quarter))
	return min(s, 256), true
}

// provRec is a pack as one index file names it, while the ledger loads.
type provRec struct {
	ID   chunk.ID
	Size int64
	File uint32
}

// loadLedger lists and reads every index file, then, with a full scan,
// lists every pack and reads the header of every stored pack no index
// file names (two ranged reads each), so that the chunks such a pack holds
// are known copies: a collector must never judge a pack whose content it
// does not know. Without a full scan it reads the headers of sc.extra's
// unindexed packs only. shards, if not 0, fixes the number of shards (to
// match references already spilled).
func loadLedger(ctx context.Context, st remote.Store, memory int64, dir string, shards int, cache *Cache, sc scan) (_ *ledger, err error) {
	var infos []remote.Info
	var total int64
	if err := st.List(ctx, "index/", func(i remote.Info) error {
		infos = append(infos, i)
		total += i.Size
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list index files: %w", err)
	}
	slices.SortFunc(infos, func(a, b remote.Info) int { return strings.Compare(a.Key, b.Key) })
	n, disk := shardsFor(total/32, memory)
	if shards > 0 {
		n = shards
	}
	l := &ledger{st: st, memory: memory, root: dir, fixed: shards > 0, Bad: map[string]error{}, BadOrphans: map[chunk.ID]error{}}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if disk {
		if l.dir, err = spillDir(dir); err != nil {
			return nil, err
		}
	}
	l.shift = shiftFor(n)
	for range n {
		s, err := newSpill(l.dir)
		if err != nil {
			return nil, err
		}
		l.shards = append(l.shards, s)
	}
	var prov provRecs
	for _, info := range infos {
		recs, err := cache.indexFile(ctx, st, info)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if errors.Is(err, index.ErrDamaged) {
			l.Bad[info.Key] = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read index file %s: %w", info.Key, err)
		}
		f := uint32(len(l.files))
		l.files = append(l.files, ledgerFile{Key: info.Key, ModTime: info.ModTime.UnixNano()})
		for _, r := range recs {
			if err := l.spillCopies(uint32(prov.n), r.Entries); err != nil {
				return nil, err
			}
			prov.add(provRec{ID: r.ID, Size: r.Size, File: f})
		}
	}
	cache.pruneIndex(infos)
	l.number(&prov)
	prov = provRecs{}
	if sc.full {
		if err := l.list(ctx, st); err != nil {
			return nil, err
		}
	} else {
		l.assume(sc.extra)
	}
	if err := l.readOrphans(ctx, st); err != nil {
		return nil, err
	}
	return l, l.prepare()
}

// spillCopies writes the copy records of a pack's entries.
func (l *ledger) spillCopies(packNo uint32, entries []pack.Entry) error {
	var rec [copyLen]byte
	for _, e := range entries {
		copy(rec[:], e.ID[:])
		binary.LittleEndian.PutUint32(rec[32:], packNo)
		binary.LittleEndian.PutUint32(rec[36:], e.Off)
		binary.LittleEndian.PutUint32(rec[40:], e.Len)
		if err := l.shards[l.shardOf(e.ID)].write(rec[:]); err != nil {
			return err
		}
	}
	return nil
}

func (l *ledger) shardOf(id chunk.ID) int {
	return int(binary.BigEndian.Uint32(id[:4]) >> l.shift)
}

// provRecs holds the provisional records in blocks, so that growing it
// never copies what it holds (a store of 4 million packs has 190 MB of
// them).
type provRecs struct {
	blocks [][]provRec
	n      int
}

const provBlock = 1 << 16

func (p *provRecs) add(r provRec) {
	switch {
	case p.n%provBlock == 0 && p.n > 0:
		p.blocks = append(p.blocks, make([]provRec, 0, provBlock))
	case p.n == 0:
		// The first block grows by doubling (a small store's purge
		// would otherwise clear a 3 MB block for a few packs).
		p.blocks = [][]provRec{make([]provRec, 0, 64)}
	}
	b := &p.blocks[len(p.blocks)-1]
	if len(*b) == cap(*b) {
		*b = append(make([]provRec, 0, min(2*cap(*b), provBlock)), *b...)
	}
	*b = append(*b, r)
	p.n++
}

func (p *provRecs) at(i uint32) *provRec { return &p.blocks[i/provBlock][i%provBlock] }

// number sorts the index files' packs by ID into the ledger's packs and
// maps each provisional number to its pack's.
func (l *ledger) number(prov *provRecs) {
	perm := make([]uint32, prov.n)
	for i := range perm {
		perm[i] = uint32(i)
	}
	slices.SortFunc(perm, func(a, b uint32) int {
		return cmp.Or(bytes.Compare(prov.at(a).ID[:], prov.at(b).ID[:]), cmp.Compare(a, b))
	})
	unique := 0
	for i, p := range perm {
		if i == 0 || prov.at(perm[i-1]).ID != prov.at(p).ID {
			unique++
		}
	}
	// Room for a few orphans, which the pack listing appends.
	l.packs = make([]packRec, 0, unique+unique/64+1024)
	l.remap = make([]uint32, prov.n)
	for _, i := range perm {
		r := prov.at(i)
		if len(l.packs) == 0 || l.packs[len(l.packs)-1].ID != r.ID {
			l.packs = append(l.packs, packRec{ID: r.ID, Size: r.Size})
		}
		n := uint32(len(l.packs) - 1)
		if p := &l.packs[n]; r.Size != p.Size {
			if l.disputed == nil {
				l.disputed = map[uint32][]int64{}
			}
			if l.disputed[n] == nil {
				l.disputed[n] = []int64{p.Size}
			}
			if !slices.Contains(l.disputed[n], r.Size) {
				l.disputed[n] = append(l.disputed[n], r.Size)
			}
		}
		l.remap[i] = n
		f := &l.files[r.File]
		if len(f.Packs) == 0 || f.Packs[len(f.Packs)-1] != n {
			f.Packs = append(f.Packs, n)
		}
	}
	for i := range l.files {
		slices.Sort(l.files[i].Packs)
		l.files[i].Packs = slices.Compact(l.files[i].Packs)
	}
	l.indexed = len(l.packs)
}

// list lists the stored packs: it marks the indexed ones stored and adds
// the others as orphans.
func (l *ledger) list(ctx context.Context, st remote.Store) error {
	var orphans []packRec
	err := st.List(ctx, "packs/", func(i remote.Info) error {
		id, err := chunk.ParseID(i.Key[strings.LastIndexByte(i.Key, '/')+1:])
		if err != nil || pack.Key(id) != i.Key {
			return nil // not a pack of ours
		}
		rec := packRec{ID: id, Size: -1}
		p := &rec
		if n, ok := l.find(id); ok {
			p = &l.packs[n]
			if !l.fits(n, i.Size) {
				p.flags |= packMisfit
			}
		}
		p.flags |= packStored
		p.StoreSize, p.ModTime = i.Size, i.ModTime.UnixNano()
		if p == &rec {
			orphans = append(orphans, rec)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list packs: %w", err)
	}
	slices.SortFunc(orphans, func(a, b packRec) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	orphans = slices.CompactFunc(orphans, func(a, b packRec) bool { return a.ID == b.ID })
	l.packs = append(l.packs, orphans...)
	return nil
}

// assume takes every indexed pack as stored, as the index files say,
// written when the newest file naming it was (a pack is uploaded before
// any index file names it), and adds the packs of extra that no index
// file names, to be read from their headers.
func (l *ledger) assume(extra map[chunk.ID]bool) {
	for _, f := range l.files {
		for _, n := range f.Packs {
			p := &l.packs[n]
			p.flags |= packStored | packAssumed
			p.StoreSize, p.ModTime = p.Size, max(p.ModTime, f.ModTime)
		}
	}
	var orphans []packRec
	for id := range extra {
		if _, ok := l.find(id); !ok {
			orphans = append(orphans, packRec{ID: id, Size: -1, flags: packStored | packAssumed})
		}
	}
	slices.SortFunc(orphans, func(a, b packRec) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	l.packs = append(l.packs, orphans...)
}

// fits reports whether pack n, stored with size bytes, is the pack its
// index files name: of the size they give, or of one of them where they
// disagree (readers let the store settle such a dispute, index.Load). A
// pack read from its header only fits.
func (l *ledger) fits(n uint32, size int64) bool {
	p := &l.packs[n]
	if d, ok := l.disputed[n]; ok {
		return slices.Contains(d, size)
	}
	return p.Size < 0 || size == p.Size
}

// find returns the number of the pack id.
func (l *ledger) find(id chunk.ID) (uint32, bool) {
	cmpID := func(p packRec, id chunk.ID) int { return bytes.Compare(p.ID[:], id[:]) }
	if i, ok := slices.BinarySearchFunc(l.packs[:l.indexed], id, cmpID); ok {
		return uint32(i), true
	}
	if i, ok := slices.BinarySearchFunc(l.packs[l.indexed:], id, cmpID); ok {
		return uint32(l.indexed + i), true
	}
	return 0, false
}

// readOrphans reads the header of every orphan pack.
func (l *ledger) readOrphans(ctx context.Context, st remote.Store) error {
	for n := l.indexed; n < len(l.packs); n++ {
		p := &l.packs[n]
		entries, size, err := pack.ReadHeader(ctx, st, pack.Key(p.ID))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.flags &^= packStored // deleted meanwhile
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil:
			l.BadOrphans[p.ID] = err
		default:
			if p.assumed() {
				p.StoreSize = size // not listed: its header vouches for it
			}
			p.Size = size
			p.flags |= packFromHeader
			p.flags &^= packAssumed
			if err := l.spillCopies(uint32(n)|finalPack, entries); err != nil {
				return err
			}
			// The index files said little (they were lost, say): once
			// the headers' copies pass the bound, they go to disk.
			if l.dir == "" && l.spilled() > max(l.memory/4, 1) {
				if err := l.reshard(len(l.shards)); err != nil {
					return err
				}
			}
		}
	}
	if n, _ := shardsFor(l.spilled()/copyLen, l.memory); n > len(l.shards) && !l.fixed {
		return l.reshard(n)
	}
	return nil
}

// spilled returns the bytes of copy records the shards hold.
func (l *ledger) spilled() int64 {
	var n int64
	for _, s := range l.shards {
		n += s.n
	}
	return n
}

// reshard moves the copy records into n shards in files.
func (l *ledger) reshard(n int) (err error) {
	if l.dir == "" {
		if l.dir, err = spillDir(l.root); err != nil {
			return err
		}
	}
	old := l.shards
	l.shards, l.shift = nil, shiftFor(n)
	for range n {
		s, err := newSpill(l.dir)
		if err != nil {
			return err
		}
		l.shards = append(l.shards, s)
	}
	for _, s := range old {
		err := s.each(copyLen, func(rec []byte) error { return l.shards[l.shardOf(chunk.ID(rec[:idLen]))].write(rec) })
		s.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// shiftFor returns the shift that takes the first 32 bits of an ID to one
// of n shards (a power of two).
func shiftFor(n int) uint { return uint(32 - bits.Len(uint(n-1))) }

// prepare gives every copy record its final pack number and sorts each
// shard by chunk ID and pack.
func (l *ledger) prepare() error {
	for _, s := range l.shards {
		b, err := s.load()
		if err != nil {
			return err
		}
		recs := slices.Collect(records(b, copyLen))
		for _, r := range recs {
			n := binary.LittleEndian.Uint32(r[32:])
			if n&finalPack != 0 {
				n &^= finalPack
			} else {
				n = l.remap[n]
			}
			binary.LittleEndian.PutUint32(r[32:], n)
		}
		slices.SortFunc(recs, func(a, b []byte) int { return bytes.Compare(a[:36], b[:36]) })
		out := make([]byte, 0, len(b))
		for i, r := range recs {
			if i > 0 && bytes.Equal(recs[i-1][:36], r[:36]) {
				continue // a pack two index files name
			}
			out = append(out, r...)
		}
		if err := s.replace(out); err != nil {
			return err
		}
	}
	l.remap = nil
	return nil
}

// records splits b into records of n bytes.
func records(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for off := 0; off+n <= len(b); off += n {
			if !yield(b[off : off+n : off+n]) {
				return
			}
		}
	}
}

// copyOf decodes a copy record: its pack's number and the entry (the
// chunk's ID, offset and length).
func copyOf(r []byte) (packNo uint32, e pack.Entry) {
	e.ID = chunk.ID(r[:idLen])
	e.Off = binary.LittleEndian.Uint32(r[36:])
	e.Len = binary.LittleEndian.Uint32(r[40:])
	return binary.LittleEndian.Uint32(r[32:]), e
}

// copies returns the copy records of id, from its shard on disk.
func (l *ledger) copies(id chunk.ID) ([][]byte, error) {
	s := l.shards[l.shardOf(id)]
	n := s.n / copyLen
	rec := make([]byte, copyLen)
	at := func(i int64) ([]byte, error) { return rec, s.readAt(rec, i*copyLen) }
	lo, hi := int64(0), n
	for lo < hi {
		mid := lo + (hi-lo)/2
		r, err := at(mid)
		if err != nil {
			return nil, err
		}
		if bytes.Compare(r[:32], id[:]) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	var out [][]byte
	for i := lo; i < n; i++ {
		r, err := at(i)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(r[:32], id[:]) {
			break
		}
		out = append(out, bytes.Clone(r))
	}
	return out, nil
}

// stamp implements stamper: the first stored copy of id, as FetchChunks
// reads it first, by its pack's ID, size and time in the listing.
func (l *ledger) stamp(id chunk.ID) (string, error) {
	recs, err := l.copies(id)
	if err != nil {
		return "", err
	}
	first := -1
	for _, r := range recs {
		n, _ := copyOf(r)
		if l.packs[n].stored() && (first < 0 || int(n) < first) {
			first = int(n)
		}
	}
	if first < 0 {
		return "", nil
	}
	p := l.packs[first]
	if p.assumed() {
		// Not listed: the pack's time is unknown (stampMatches).
		return fmt.Sprintf("%s %d *", p.ID, p.Size), nil
	}
	return fmt.Sprintf("%s %d %d", p.ID, p.StoreSize, p.ModTime), nil
}

// stampMatches reports whether a cached node stamped head may serve a look
// whose stamp of its first stored copy is stamp. A look that did not list
// the packs knows the copy's pack and size, not its time: any stamp of
// that pack and size matches (design §4.3 step 2: between scans a warm
// cache does not notice a pack replaced in the store since it cached the
// node; the next scan does).
func stampMatches(head, stamp string) bool {
	if open, ok := strings.CutSuffix(stamp, "*"); ok {
		return strings.HasPrefix(head, open)
	}
	return head == stamp
}

// FetchChunks reads chunks (a manifest's tree nodes) from the stored packs
// the ledger places them in: the mark reads manifests through it.
func (l *ledger) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	in := map[uint32][]pack.Entry{}
	for _, id := range ids {
		recs, err := l.copies(id)
		if err != nil {
			return err
		}
		for _, r := range recs {
			n, e := copyOf(r)
			if l.packs[n].stored() {
				in[n] = append(in[n], e)
			}
		}
	}
	// Every stored copy, indexed packs first (their numbers come first),
	// so a copy that fails its check is read from the next.
	var packs []index.PackRecord
	for _, n := range slices.Sorted(maps.Keys(in)) {
		p, entries := l.packs[n], in[n]
		slices.SortFunc(entries, func(a, b pack.Entry) int { return cmp.Compare(a.Off, b.Off) })
		packs = append(packs, index.PackRecord{ID: p.ID, Size: p.Size, Entries: entries})
	}
	idx := index.New()
	idx.AddCopies("ledger", packs)
	return index.Source{Store: l.st, Index: idx, Parallel: 1, Namer: l.namer}.FetchChunks(ctx, ids, fn)
}

// forget treats the packs on doom lists as gone: a sweep decided to
// delete them, and a delete of them may land at any moment.
func (l *ledger) forget(doomed map[chunk.ID]bool) {
	for id := range doomed {
		if n, ok := l.find(id); ok {
			l.packs[n].flags &^= packStored
		}
	}
}

// state returns pack n as a PackState, without its entries.
func (l *ledger) state(n uint32) *PackState {
	p := l.packs[n]
	return &PackState{
		ID: p.ID, Size: p.Size, Stored: p.stored(),
		StoreSize: p.StoreSize, ModTime: time.Unix(0, p.ModTime), FromHeader: p.fromHeader(),
	}
}

func (l *ledger) close() {
	for _, s := range l.shards {
		s.close()
	}
	removeSpillDir(l.dir)
}

// refSpill is the set of chunks the manifests reference, sharded as the
// ledger's copies are. A mark adds references to an in-memory set that is
// written out to the shards when it holds max of them (a host's backups
// share most chunks, so it dedups most); each shard is sorted and
// compacted when first read.
type refSpill struct {
	dir    string // its own spill folder, "" in memory
	shift  uint
	shards []*spill
	sorted []bool
	buf    map[chunk.ID]struct{}
	max    int
}

// newRefSpill returns an empty set sharded as l, holding at most max
// references in memory before it writes them out: to files in a folder of
// its own under dir if l spills to files.
func newRefSpill(l *ledger, max int, dir string) (r *refSpill, err error) {
	r = &refSpill{shift: l.shift, buf: map[chunk.ID]struct{}{}, max: max, sorted: make([]bool, len(l.shards))}
	if l.dir != "" {
		if r.dir, err = spillDir(dir); err != nil {
			return nil, err
		}
	}
	for range l.shards {
		s, err := newSpill(r.dir)
		if err != nil {
			r.close()
			return nil, err
		}
		r.shards = append(r.shards, s)
	}
	return r, nil
}

func (r *refSpill) add(id chunk.ID) error {
	r.buf[id] = struct{}{}
	if len(r.buf) >= r.max {
		return r.flush()
	}
	return nil
}

func (r *refSpill) flush() error {
	for id := range r.buf {
		if err := r.shards[int(binary.BigEndian.Uint32(id[:4])>>r.shift)].write(id[:]); err != nil {
			return err
		}
	}
	clear(r.buf)
	return nil
}

// shard returns the references of shard i, sorted, each once.
func (r *refSpill) shard(i int) ([]chunk.ID, error) {
	if len(r.buf) > 0 {
		if err := r.flush(); err != nil {
			return nil, err
		}
	}
	b, err := r.shards[i].load()
	if err != nil {
		return nil, err
	}
	ids := make([]chunk.ID, 0, len(b)/idLen)
	for rec := range records(b, idLen) {
		ids = append(ids, chunk.ID(rec))
	}
	if !r.sorted[i] {
		slices.SortFunc(ids, chunk.Compare)
		ids = slices.Compact(ids)
		out := make([]byte, 0, len(ids)*idLen)
		for _, id := range ids {
			out = append(out, id[:]...)
		}
		if err := r.shards[i].replace(out); err != nil {
			return nil, err
		}
		r.sorted[i] = true
	}
	return ids, nil
}

func (r *refSpill) close() {
	for _, s := range r.shards {
		s.close()
	}
	removeSpillDir(r.dir)
}

// eachReferenced calls fn, shard by shard, with each referenced chunk and
// the copy records of it the ledger holds (none for a chunk no index file
// or header names).
func (l *ledger) eachReferenced(refs *refSpill, fn func(id chunk.ID, copies [][]byte)) error {
	if len(refs.shards) != len(l.shards) {
		return errors.New("purge: references and copies sharded differently")
	}
	for s := range l.shards {
		ids, err := refs.shard(s)
		if err != nil {
			return err
		}
		b, err := l.shards[s].load()
		if err != nil {
			return err
		}
		var group [][]byte
		for _, id := range ids {
			for len(b) >= copyLen && bytes.Compare(b[:32], id[:]) < 0 {
				b = b[copyLen:]
			}
			group = group[:0]
			for len(b) >= copyLen && bytes.Equal(b[:32], id[:]) {
				group = append(group, b[:copyLen:copyLen])
				b = b[copyLen:]
			}
			fn(id, group)
		}
	}
	return nil
}

// kept is the keepers' choice: for every referenced chunk, the pack whose
// copy is kept.
type kept struct {
	live []bool  // by pack number: keeps some referenced chunk
	used []int64 // by pack number: bytes of referenced chunks it holds
	lost []chunk.ID
	// choose returns the pack kept of a chunk's copies, and whether any
	// copy counts.
	choose func(copies [][]byte) (uint32, bool)
}

// keepers chooses, for every referenced chunk, the pack whose copy is kept:
// among stored packs not avoided, the one holding the most referenced
// chunks (so sparse packs empty out), ties to the lower ID. A chunk with
// no copy outside the avoided packs keeps a copy inside them. Referenced
// chunks with no stored copy at all are lost. Two passes over the shards:
// one counts each pack's referenced chunks, one chooses.
func (l *ledger) keepers(refs *refSpill, avoid map[chunk.ID]bool) (k kept, err error) {
	avoided := make([]bool, len(l.packs))
	for id := range avoid {
		if n, ok := l.find(id); ok {
			avoided[n] = true
		}
	}
	// A copy counts if its pack is stored at its indexed size. With hole
	// 4 put back, the collector judges orphans without their content, as
	// if it had not read their headers.
	blind := hole.On(hole.SkipBadIndex)
	counts := func(n uint32) bool {
		p := &l.packs[n]
		return p.stored() && !p.misfit() && !(blind && p.fromHeader())
	}
	score := make([]int32, len(l.packs))
	k.used = make([]int64, len(l.packs))
	err = l.eachReferenced(refs, func(_ chunk.ID, copies [][]byte) {
		for _, r := range copies {
			n, e := copyOf(r)
			if counts(n) {
				score[n]++
				k.used[n] += int64(e.Len)
			}
		}
	})
	if err != nil {
		return k, err
	}
	better := func(a, b uint32) bool { // is pack a a better keeper than pack b
		pa, pb := &l.packs[a], &l.packs[b]
		if avoided[a] != avoided[b] {
			return !avoided[a]
		}
		if pa.fromHeader() != pb.fromHeader() {
			return !pa.fromHeader() // an indexed copy, which readers find at once
		}
		if score[a] != score[b] {
			return score[a] > score[b]
		}
		return bytes.Compare(pa.ID[:], pb.ID[:]) < 0
	}
	k.choose = func(copies [][]byte) (uint32, bool) {
		best, found := uint32(0), false
		for _, r := range copies {
			n, _ := copyOf(r)
			if counts(n) && (!found || better(n, best)) {
				best, found = n, true
			}
		}
		return best, found
	}
	k.live = make([]bool, len(l.packs))
	err = l.eachReferenced(refs, func(id chunk.ID, copies [][]byte) {
		if best, found := k.choose(copies); found {
			k.live[best] = true
		} else {
			k.lost = append(k.lost, id)
		}
	})
	return k, err
}

// confirm checks, before the packs in dying are deleted, every pack kept
// instead of them for a referenced chunk they hold: that it is in the
// store at its indexed size and that its header names those chunks where
// the ledger places them. Three requests a distinct keeper (a header
// read), so the requests follow what is deleted, not the store. It
// returns the keepers found missing or damaged. A HEAD alone passed a
// keeper truncated or replaced by garbage, and a listing shows neither a
// garbage pack of the right size (TestScanAttackTruncatedKeeper,
// TestScanAttackGarbageKeeper). A ledger that only assumed its packs
// stored (no full scan) must then be loaded again with one, which sees a
// keeper gone or misfit; a listed ledger spoils the damaged keepers and
// chooses again. (Damage inside a chunk's bytes, under a whole header, it
// does not see: validate --checksum does.)
func (l *ledger) confirm(ctx context.Context, refs *refSpill, k kept, dying map[chunk.ID]bool) ([]chunk.ID, error) {
	if len(dying) == 0 {
		return nil, nil
	}
	die := make([]bool, len(l.packs))
	for id := range dying {
		if n, ok := l.find(id); ok {
			die[n] = true
		}
	}
	check := map[uint32][]pack.Entry{} // keeper -> its copies of the chunks of dying packs
	err := l.eachReferenced(refs, func(_ chunk.ID, copies [][]byte) {
		best, found := k.choose(copies)
		if !found {
			return
		}
		for _, r := range copies {
			if n, _ := copyOf(r); n != best && die[n] {
				for _, r := range copies {
					if n, e := copyOf(r); n == best {
						check[best] = append(check[best], e)
					}
				}
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	var bad []chunk.ID
	for _, n := range slices.Sorted(maps.Keys(check)) {
		id := l.packs[n].ID
		entries, size, err := pack.ReadHeader(ctx, l.st, pack.Key(id))
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil || !l.fits(n, size) || !holds(entries, check[n]):
			// Gone, or damaged; a store failing to answer counts as
			// damage too: it keeps packs, it never deletes one.
			bad = append(bad, id)
		default:
			l.packs[n].flags &^= packAssumed
		}
	}
	return bad, nil
}

// holds reports whether a pack's header entries hold each chunk of want
// where want places it (ID, offset and length); want may place a chunk
// twice (index files that disagree), and one place held is enough.
func holds(entries, want []pack.Entry) bool {
	at := make(map[pack.Entry]bool, len(entries))
	for _, e := range entries {
		at[e] = true
	}
	held := map[chunk.ID]bool{}
	for _, e := range want {
		if at[e] {
			held[e.ID] = true
		}
	}
	for _, e := range want {
		if !held[e.ID] {
			return false
		}
	}
	return true
}

// spoil takes the packs for damaged (misfit): no chunk's copy.
func (l *ledger) spoil(ids []chunk.ID) {
	for _, id := range ids {
		if n, ok := l.find(id); ok {
			l.packs[n].flags |= packMisfit
		}
	}
}

// referencedIn returns the referenced chunks each of the packs numbered in
// want holds.
func (l *ledger) referencedIn(refs *refSpill, want map[uint32]bool) (map[uint32][]pack.Entry, error) {
	out := map[uint32][]pack.Entry{}
	err := l.eachReferenced(refs, func(_ chunk.ID, copies [][]byte) {
		for _, r := range copies {
			if n, e := copyOf(r); want[n] {
				out[n] = append(out[n], e)
			}
		}
	})
	for _, entries := range out {
		slices.SortFunc(entries, func(a, b pack.Entry) int { return cmp.Compare(a.Off, b.Off) })
	}
	return out, err
}
