package index

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/cachefile"
	"github.com/cassback/cassback/remote"
)

// Location says where a chunk's bytes are stored.
type Location struct {
	Pack chunk.ID
	Off  uint32
	Len  uint32
}

// entry is one known chunk in memory. It costs 44 bytes: the 32-byte ID plus
// three uint32s (pack ordinal, offset, length); a pack's ID and size are held
// once in the pack table (40 bytes per pack, about 0.005 bytes per chunk at
// 8 chunks per pack). Entries loaded from index files sit in one sorted slice
// searched by bisection; only chunks added by this process also go into a map.
type entry struct {
	id   chunk.ID
	pack uint32
	off  uint32
	len  uint32
}

type packInfo struct {
	id   chunk.ID
	size int64
	// from is the index file (files) whose record set size, or -1 (Add),
	// so that the file is named when the store shows the size is wrong.
	from int32
	// partial: known only from buckets of lazily read index files
	// (mergeFound), whose other buckets may be damaged: RebuildOrphans
	// reads its header as an orphan's.
	partial bool
}

// Index is the set of chunks known to be durable in the store, with where
// each one is. It is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	packs   []packInfo
	packOrd map[chunk.ID]uint32
	sorted  []entry            // from index files; sorted by id
	pending []entry            // from index files being loaded (settleLocked)
	added   map[chunk.ID]entry // added by this process since the last merge
	// found holds the copies of chunks read from one bucket of a lazily
	// loaded index file (lazy.go), sorted like the sorted entries.
	found  map[chunk.ID][]entry
	loaded map[string]bool // index keys already merged
	// entries counts the entries of each index file merged whole or
	// written by this process (a Writer compacts its host's by it).
	entries map[string]int
	files   []string // index keys merged, in order (packInfo.from)
	// excluded packs are condemned: their chunks are not "known", so a
	// writer uploads such a chunk again rather than reference a pack the
	// collector may delete.
	excluded map[uint32]bool
	// avoided packs are condemned too, but a reader may still use them
	// when they hold the only copy it knows (Avoid).
	avoided map[uint32]bool
	// lazy, if set, holds the filters of other hosts' index files, read
	// whole only when a lookup needs them (lazy.go).
	lazy *lazy
}

// New returns an empty Index.
func New() *Index {
	return &Index{packOrd: map[chunk.ID]uint32{}, added: map[chunk.ID]entry{}, found: map[chunk.ID][]entry{}, loaded: map[string]bool{}, entries: map[string]int{}, excluded: map[uint32]bool{}, avoided: map[uint32]bool{}}
}

// Len returns the number of known chunks.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.sorted) + len(x.added) + len(x.found)
}

// Packs returns the number of known packs.
func (x *Index) Packs() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.packs)
}

// find returns a copy of the chunk in a pack that is not excluded,
// preferring one that is not avoided.
func (x *Index) find(id chunk.ID) (entry, bool) {
	var fallback entry
	found := false
	try := func(e entry) bool {
		if x.excluded[e.pack] {
			return false
		}
		if !x.avoided[e.pack] {
			return true
		}
		if !found {
			fallback, found = e, true
		}
		return false
	}
	if e, ok := x.added[id]; ok && try(e) {
		return e, true
	}
	i, _ := x.searchSorted(id)
	for ; i < len(x.sorted) && x.sorted[i].id == id; i++ {
		if try(x.sorted[i]) {
			return x.sorted[i], true
		}
	}
	for _, e := range x.found[id] {
		if try(e) {
			return e, true
		}
	}
	return fallback, found
}

// Avoid makes lookups prefer other copies to those in these packs, and
// use them only when there is none: what a reader does with condemned
// packs, which are deleted only once no committed backup needs them.
func (x *Index) Avoid(packs []chunk.ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range packs {
		x.avoided[x.packOrdinal(p, -1, -1)] = true
	}
}

// Exclude stops the index from offering chunks stored in these packs,
// which the collector has condemned.
func (x *Index) Exclude(packs []chunk.ID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range packs {
		if o, ok := x.packOrd[p]; ok {
			x.excluded[o] = true
		} else {
			x.excluded[x.packOrdinal(p, -1, -1)] = true
		}
	}
}

// Excluded reports whether the pack is excluded (condemned, or found gone).
func (x *Index) Excluded(pack chunk.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	o, ok := x.packOrd[pack]
	return ok && x.excluded[o]
}

// Refuted reports whether the loaded index files name the chunk only in
// excluded packs (condemned, or found gone): known, with no usable copy.
// A chunk they do not name is not refuted, and no file is read for it.
func (x *Index) Refuted(id chunk.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if _, ok := x.find(id); ok {
		return false
	}
	if _, ok := x.added[id]; ok {
		return true
	}
	_, ok := x.searchSorted(id)
	return ok || len(x.found[id]) > 0
}

// Has reports whether the chunk is known to be stored.
func (x *Index) Has(id chunk.ID) bool {
	_, ok := x.Lookup(id)
	return ok
}

// Lookup returns where the chunk is stored. In lazy mode a chunk not
// loaded yet is looked up in the index files whose filter may hold it,
// read under the context Load was given (LookupContext names another).
func (x *Index) Lookup(id chunk.ID) (Location, bool) {
	return x.LookupContext(nil, id)
}

// LookupContext is Lookup reading lazily loaded index files under ctx.
// A copy in an avoided pack is returned only when the lazily loaded files
// hold no other.
func (x *Index) LookupContext(ctx context.Context, id chunk.ID) (Location, bool) {
	if l, ok, avoided := x.lookupAvoided(id); ok && !avoided {
		return l, true
	}
	x.fault(ctx, id) // a file read whole meanwhile counts too: look again
	return x.lookup(id)
}

func (x *Index) lookup(id chunk.ID) (Location, bool) {
	l, ok, _ := x.lookupAvoided(id)
	return l, ok
}

// lookupAvoided is lookup, also reporting whether the copy found is in an
// avoided pack (the only one known).
func (x *Index) lookupAvoided(id chunk.ID) (l Location, ok, avoided bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.find(id)
	if !ok {
		return Location{}, false, false
	}
	return Location{Pack: x.packs[e.pack].id, Off: e.off, Len: e.len}, true, x.avoided[e.pack]
}

// PackSize returns the size recorded for a pack, or -1 if the pack is unknown.
func (x *Index) PackSize(id chunk.ID) int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	o, ok := x.packOrd[id]
	if !ok {
		return -1
	}
	return x.packs[o].size
}

// orphan reports whether no index file read whole, nor Add, named the pack.
func (x *Index) orphan(id chunk.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	o, ok := x.packOrd[id]
	return !ok || x.packs[o].size < 0 || x.packs[o].partial
}

// packOrdinal returns the ordinal of a pack, adding it with size (-1:
// unknown) recorded by index file from (-1: none) if it is new.
func (x *Index) packOrdinal(id chunk.ID, size int64, from int32) uint32 {
	if o, ok := x.packOrd[id]; ok {
		if x.packs[o].size < 0 {
			x.packs[o].size, x.packs[o].from = size, from // excluded before it was loaded
		}
		return o
	}
	o := uint32(len(x.packs))
	x.packs = append(x.packs, packInfo{id: id, size: size, from: from})
	x.packOrd[id] = o
	return o
}

// Add records a durable pack's chunks. An entry that reaches past the
// size already recorded for the pack is never offered: a range is never
// larger than its pack.
func (x *Index) Add(p PackRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	o := x.packOrdinal(p.ID, p.Size, -1)
	x.packs[o].partial = false
	size := x.packs[o].size
	for _, e := range p.Entries {
		if int64(e.Off)+int64(e.Len) > size {
			continue
		}
		if _, ok := x.find(e.ID); !ok {
			x.added[e.ID] = entry{e.ID, o, e.Off, e.Len}
		}
	}
}

// AddCopies records packs as an index file named key would be: every copy
// of a chunk stays, in the order of packs, so a reader whose copy fails
// its check reads the next.
func (x *Index) AddCopies(key string, packs []PackRecord) {
	x.merge(key, packs)
	x.settle()
}

// merge adds the packs of one index file to the pending entries, which
// settleLocked sorts into the others once the files read together are all
// merged. Load checks the file against the index first (admit); if a
// pack's recorded size changed since (another file was admitted
// meanwhile), merge adds nothing and returns the packs now disputed.
func (x *Index) merge(key string, packs []PackRecord) (disputed []PackRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loaded[key] {
		return nil
	}
	if d := x.disputedLocked(packs); len(d) > 0 {
		return d
	}
	x.loaded[key] = true
	from := x.fileOrdinal(key)
	add := 0
	for _, p := range packs {
		add += len(p.Entries)
	}
	x.entries[key] = add
	x.pending = slices.Grow(x.pending, add)
	for _, p := range packs {
		o := x.packOrdinal(p.ID, p.Size, from)
		x.packs[o].partial = false
		for _, e := range p.Entries {
			x.pending = append(x.pending, entry{e.ID, o, e.Off, e.Len})
		}
	}
	return nil
}

// fileOrdinal returns the ordinal of an index file in x.files, adding it.
func (x *Index) fileOrdinal(key string) int32 {
	if i := slices.Index(x.files, key); i >= 0 {
		return int32(i)
	}
	x.files = append(x.files, key)
	return int32(len(x.files) - 1)
}

// mergeFound adds copies of one chunk read from a bucket of the index
// file key (lazy.go), which stays not loaded, as merge does: nothing if a
// pack's recorded size changed since it was checked (it returns those
// packs). A copy the sorted entries hold already is not added again.
func (x *Index) mergeFound(key string, packs []PackRecord) (disputed []PackRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if d := x.disputedLocked(packs); len(d) > 0 {
		return d
	}
	from := x.fileOrdinal(key)
	for _, p := range packs {
		_, known := x.packOrd[p.ID]
		o := x.packOrdinal(p.ID, p.Size, from)
		if !known {
			x.packs[o].partial = true // until a whole file or Add names it
		}
		for _, e := range p.Entries {
			n := entry{e.ID, o, e.Off, e.Len}
			if x.inSorted(n) {
				continue
			}
			es := append(x.found[e.ID], n)
			slices.SortFunc(es, compareEntries)
			x.found[e.ID] = slices.Compact(es)
		}
	}
	return nil
}

// settleLocked sorts the pending entries into the sorted ones: one sort of
// what was read and one pass over the whole, however many files it came
// from (sorting the whole again for each file cost files × entries).
// Copies of a chunk in several packs (two nodes raced, or a repack) all
// stay, ordered by pack ordinal, so a condemned copy can be skipped; the
// same entry named by two files is kept once.
func (x *Index) settleLocked() {
	if len(x.pending) == 0 {
		return
	}
	slices.SortFunc(x.pending, compareEntries)
	x.pending = slices.Compact(x.pending)
	if len(x.sorted) == 0 {
		x.sorted, x.pending = x.pending, nil
	} else {
		// Merge from the back, in place in the grown sorted slice.
		n, m := len(x.sorted), len(x.pending)
		x.sorted = slices.Grow(x.sorted, m)[:n+m]
		i, j := n-1, m-1
		for k := n + m - 1; j >= 0; k-- {
			if i >= 0 && compareEntries(x.sorted[i], x.pending[j]) > 0 {
				x.sorted[k] = x.sorted[i]
				i--
			} else {
				x.sorted[k] = x.pending[j]
				j--
			}
		}
		x.sorted = slices.Compact(x.sorted)
		x.pending = nil
	}
	for id, e := range x.added {
		if x.inSorted(e) {
			delete(x.added, id)
		}
	}
	for id, es := range x.found {
		if es = slices.DeleteFunc(es, x.inSorted); len(es) == 0 {
			delete(x.found, id)
		} else {
			x.found[id] = es
		}
	}
}

// searchSorted returns where the sorted entries of id begin, and whether
// there are any.
func (x *Index) searchSorted(id chunk.ID) (int, bool) {
	return slices.BinarySearchFunc(x.sorted, id, func(e entry, id chunk.ID) int { return bytes.Compare(e.id[:], id[:]) })
}

// inSorted reports whether the sorted entries hold e's chunk in e's pack.
func (x *Index) inSorted(e entry) bool {
	i, _ := x.searchSorted(e.id)
	for ; i < len(x.sorted) && x.sorted[i].id == e.id; i++ {
		if x.sorted[i].pack == e.pack {
			return true
		}
	}
	return false
}

func (x *Index) settle() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.settleLocked()
}

func compareEntries(a, b entry) int {
	if c := bytes.Compare(a.id[:], b.id[:]); c != 0 {
		return c
	}
	if c := cmp.Compare(a.pack, b.pack); c != 0 {
		return c
	}
	if c := cmp.Compare(a.off, b.off); c != 0 {
		return c
	}
	return cmp.Compare(a.len, b.len)
}

// reserve makes room in the pending entries for the index files about to
// be read, from their listed sizes (each entry takes idxEntrySize bytes of
// a file): one allocation instead of one per file, so a cold load of a
// large store holds its entries once, not again in a grown copy.
func (x *Index) reserve(infos []remote.Info) {
	n := 0
	for _, i := range infos {
		if i.Size > 0 {
			n += int(min(i.Size, MaxFileSize) / idxEntrySize)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pending = slices.Grow(x.pending, n)
}

// LoadStats says what Load did.
type LoadStats struct {
	Fetched int              // index files read from the store (not the cache)
	Damaged map[string]error // index files skipped: unreadable or not matching their name
	Rebuilt int              // packs indexed from their own headers because of them
}

// Load reads every index file in the store that x has not merged yet. Index
// files are immutable, so each is fetched once and kept in cacheDir (if not
// empty); a lost or damaged cache costs only the time to fetch again. A
// damaged index file is skipped; then every stored pack that no index file
// names has its header read (two ranged reads each) and is indexed from
// it, so a damaged file costs time, never data.
//
// Nothing read from the store is trusted: an index file larger than
// MaxFileSize is damaged before a byte of it is read; cache files are
// opened below cacheDir only (os.Root), so no key can name a file outside
// it; and an index file that gives a pack another size than the index
// already records is checked against the store, the file that is wrong
// being damaged (admit), so a range is never larger than its pack.
func (x *Index) Load(ctx context.Context, st remote.Store, cacheDir string) (LoadStats, error) {
	return x.loadFrom(ctx, st, cacheDir, false)
}

// LoadOwn is Load of the host's own index files only, in lazy mode (other
// hosts' files, once listed, stay as they were read): what a long-running
// writer refreshes often, since its own host's files change under it (a
// one-shot backup beside it, compaction) and other hosts' files only cost
// dedup while they are not read. An index not in lazy mode loads every
// file.
func (x *Index) LoadOwn(ctx context.Context, st remote.Store, cacheDir string) (LoadStats, error) {
	return x.loadFrom(ctx, st, cacheDir, true)
}

func (x *Index) loadFrom(ctx context.Context, st remote.Store, cacheDir string, own bool) (LoadStats, error) {
	ls := LoadStats{Damaged: map[string]error{}}
	cache := openCache(cacheDir)
	if cache != nil {
		defer cache.Close()
	}
	if l := x.lazyOf(); l != nil {
		l.mu.Lock()
		l.ctx, l.st, l.cache = ctx, st, cacheDir
		l.mu.Unlock()
	}
	for range 3 {
		prefix := x.lazyOf().prefix()
		if l := x.lazyOf(); own && l != nil {
			prefix = l.own
		}
		missed, err := x.load(ctx, st, cache, &ls, prefix)
		if err != nil {
			return ls, err
		}
		if missed == 0 {
			break
		}
	}
	if len(ls.Damaged) > 0 {
		// In lazy mode other hosts' packs are not loaded and would all
		// look orphaned: their files are read whole first (damaged index
		// files are rare; a backup that meets one holds every host's).
		if err := x.faultAll(ctx); err != nil {
			return ls, err
		}
		n, err := x.RebuildOrphans(ctx, st)
		ls.Rebuilt = n
		if err != nil {
			return ls, err
		}
	}
	return ls, nil
}

// RebuildOrphans indexes, from their headers, the stored packs that no
// loaded index file names, and returns how many. It lists every pack: a
// reader calls it only when an index file is damaged or a chunk it needs
// is in none (an index file was lost).
func (x *Index) RebuildOrphans(ctx context.Context, st remote.Store) (int, error) {
	// Other hosts' files known by their heads are read whole first: their
	// packs would all look orphaned.
	if err := x.faultAll(ctx); err != nil {
		return 0, err
	}
	var orphans []chunk.ID
	err := st.List(ctx, "packs/", func(i remote.Info) error {
		id, err := chunk.ParseID(i.Key[strings.LastIndexByte(i.Key, '/')+1:])
		if err != nil || pack.Key(id) != i.Key {
			return nil
		}
		// A pack known only from the buckets of an index file read
		// lazily, then found damaged (seed 677075), is an orphan too:
		// the damaged bucket may hold its other chunks.
		if x.orphan(id) {
			orphans = append(orphans, id)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list packs: %w", err)
	}
	n := 0
	for _, id := range orphans {
		entries, size, err := pack.ReadHeader(ctx, st, pack.Key(id))
		if err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			continue // unreadable too: its chunks are not offered
		}
		// Merged like an index file's, not added: every copy stays, so a
		// chunk that a stale index file also places in a pack that is gone
		// is read from this one.
		x.merge(pack.Key(id), []PackRecord{{ID: id, Size: size, Entries: entries}})
		n++
	}
	x.settle()
	return n, nil
}

func (x *Index) load(ctx context.Context, st remote.Store, cache *os.Root, ls *LoadStats, prefix string) (missed int, err error) {
	var infos, deferred []remote.Info
	lz := x.lazyOf()
	listed := map[string]bool{}
	err = st.List(ctx, prefix, func(i remote.Info) error {
		x.mu.RLock()
		done := x.loaded[i.Key]
		x.mu.RUnlock()
		if lz != nil {
			listed[i.Key] = true
		}
		switch {
		case done || ls.Damaged[i.Key] != nil:
		case lz.deferred(i.Key):
			if !lz.known(i.Key) {
				deferred = append(deferred, i)
			}
		default:
			infos = append(infos, i)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list index files: %w", err)
	}
	if prefix == "index/" {
		lz.forget(listed) // else it knows no other host's file yet
	}
	for _, info := range deferred {
		fetched, err := lz.loadHead(ctx, st, cache, lz.cacheDir(), info)
		if fetched {
			ls.Fetched++
		}
		switch {
		case isNotExist(err):
			missed++
		case errors.Is(err, ErrDamaged):
			ls.Damaged[info.Key] = err
		case err != nil:
			return missed, fmt.Errorf("read index file %s: %w", info.Key, err)
		}
	}
	lz.relayout()
	x.reserve(infos)
	defer x.settle()
	for _, info := range infos {
		packs, fetched, err := readIndexFile(ctx, st, cache, info)
		if fetched {
			ls.Fetched++
		}
		switch {
		case isNotExist(err):
			// A purge replaced it between our List and Get; its
			// replacement has another key: list again.
			missed++
			continue
		case errors.Is(err, ErrDamaged):
			ls.Damaged[info.Key] = err
			continue
		case err != nil:
			return missed, fmt.Errorf("read index file %s: %w", info.Key, err)
		}
		if err := x.admit(ctx, st, info.Key, packs, ls); err != nil {
			return missed, err
		}
	}
	return missed, nil
}

// readIndexFile returns the packs of the listed index file, from the
// cache if it holds a good copy, else from the store (fetched), which it
// then caches.
func readIndexFile(ctx context.Context, st remote.Store, cache *os.Root, info remote.Info) (packs []PackRecord, fetched bool, err error) {
	if b, ok := readCache(cache, info.Key); ok {
		if packs, err := decodeNamed(info.Key, b); err == nil {
			return packs, false, nil
		}
	}
	b, err := readObject(ctx, st, info.Key, info.Size)
	if err != nil {
		return nil, !isNotExist(err), err
	}
	if packs, err = decodeNamed(info.Key, b); err != nil {
		return nil, true, err
	}
	writeCache(cache, info.Key, b)
	return packs, true, nil
}

// admit merges the packs of the index file key unless it gives a pack
// another size than the one recorded. Two honest files never disagree (a
// pack's ID is the hash of its bytes), so on a disagreement the pack's
// size is read from the store: a file that is wrong is damaged, and when
// it is the one recorded, the entries it gave past the pack's true end
// are dropped. No entry ever reaches past the size recorded for its pack.
func (x *Index) admit(ctx context.Context, st remote.Store, key string, packs []PackRecord, ls *LoadStats) error {
	return x.admitWith(ctx, st, key, packs, ls, x.merge)
}

// admitFound is admit for copies of a chunk read from one bucket of the
// index file key (mergeFound).
func (x *Index) admitFound(ctx context.Context, st remote.Store, key string, packs []PackRecord, ls *LoadStats) error {
	return x.admitWith(ctx, st, key, packs, ls, x.mergeFound)
}

// admitWith checks the sizes packs give against the index and merges
// them; when another file changed a recorded size between the check and
// the merge (lookups and loads run at once), it checks again.
func (x *Index) admitWith(ctx context.Context, st remote.Store, key string, packs []PackRecord, ls *LoadStats, merge func(string, []PackRecord) []PackRecord) error {
	for range 4 {
		if err := x.checkSizes(ctx, st, key, packs, ls); err != nil || ls.Damaged[key] != nil {
			return err
		}
		if len(merge(key, packs)) == 0 {
			return nil
		}
	}
	ls.Damaged[key] = damaged{fmt.Errorf("index file %s: the sizes of its packs keep changing under it", key)}
	return nil
}

// checkSizes checks the packs of the index file key whose size differs
// from the one recorded against the store (admit).
func (x *Index) checkSizes(ctx context.Context, st remote.Store, key string, packs []PackRecord, ls *LoadStats) error {
	for _, p := range x.disputed(packs) {
		info, err := st.Stat(ctx, pack.Key(p.ID))
		if isNotExist(err) {
			info.Size = -1
		} else if err != nil {
			return fmt.Errorf("index file %s: check pack %s: %w", key, p.ID, err)
		}
		if info.Size != p.Size {
			ls.Damaged[key] = damaged{fmt.Errorf("index file %s: pack %s has %d bytes in the store, not %d", key, p.ID, info.Size, p.Size)}
			return nil
		}
		if liar, was := x.correct(p.ID, p.Size); liar != "" {
			ls.Damaged[liar] = damaged{fmt.Errorf("index file %s: pack %s has %d bytes in the store, not %d", liar, p.ID, p.Size, was)}
		}
	}
	return nil
}

// disputed returns the packs whose size differs from the one recorded.
func (x *Index) disputed(packs []PackRecord) []PackRecord {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.disputedLocked(packs)
}

func (x *Index) disputedLocked(packs []PackRecord) []PackRecord {
	var d []PackRecord
	for _, p := range packs {
		if o, ok := x.packOrd[p.ID]; ok && x.packs[o].size >= 0 && x.packs[o].size != p.Size {
			d = append(d, p)
		}
	}
	return d
}

// correct records the true size of a pack, drops the entries that reach
// past it, and returns the index file that recorded another size, with
// that size.
func (x *Index) correct(id chunk.ID, size int64) (liar string, was int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.settleLocked()
	o := x.packOrd[id]
	p := &x.packs[o]
	if p.size == size {
		return "", size
	}
	if p.from >= 0 {
		liar = x.files[p.from]
	}
	was, p.size, p.from = p.size, size, -1
	beyond := func(e entry) bool { return e.pack == o && int64(e.off)+int64(e.len) > size }
	x.sorted = slices.DeleteFunc(x.sorted, beyond)
	maps.DeleteFunc(x.added, func(_ chunk.ID, e entry) bool { return beyond(e) })
	for id, es := range x.found {
		if es = slices.DeleteFunc(es, beyond); len(es) == 0 {
			delete(x.found, id)
		} else {
			x.found[id] = es
		}
	}
	return liar, was
}

// readObject reads the index file under key, of size bytes as listed (-1:
// unknown, then stated first). One larger than MaxFileSize is damaged and
// not read; one that is not size bytes when read is damaged too.
func readObject(ctx context.Context, st remote.Store, key string, size int64) ([]byte, error) {
	if size < 0 {
		info, err := st.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		size = info.Size
	}
	if size < 0 {
		return nil, damaged{fmt.Errorf("index file %s: stored at a size no sealed object has", key)}
	}
	if size > MaxFileSize {
		return nil, damaged{fmt.Errorf("index file %s: %d bytes is more than %d", key, size, MaxFileSize)}
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if errors.Is(err, remote.ErrCorrupt) {
		return nil, damaged{fmt.Errorf("index file %s: %w", key, err)}
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, size)
	if _, err := io.ReadFull(rc, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, damaged{fmt.Errorf("index file %s: shorter than its %d bytes", key, size)}
		}
		if errors.Is(err, remote.ErrCorrupt) {
			return nil, damaged{fmt.Errorf("index file %s: %w", key, err)}
		}
		return nil, err
	}
	if n, _ := io.ReadFull(rc, make([]byte, 1)); n > 0 {
		return nil, damaged{fmt.Errorf("index file %s: longer than its %d bytes", key, size)}
	}
	return b, nil
}

// openCache opens the cache folder, creating it; nil means no cache.
func openCache(dir string) *os.Root { return cachefile.Open(dir) }

// readCache returns the cached copy of an index file, if there is a
// plausible one: a regular file of at least 48 and at most MaxFileSize
// bytes, read below the cache folder only.
func readCache(cache *os.Root, key string) ([]byte, bool) {
	b, ok := cachefile.Read(cache, key, MaxFileSize)
	return b, ok && len(b) >= 48
}

// removeCache removes a cached file, best effort.
func removeCache(cacheDir, key string) {
	if cache := openCache(cacheDir); cache != nil {
		_ = cache.Remove(filepath.FromSlash(key))
		cache.Close()
	}
}

// named reports whether b ends with its checksum, which key names.
func named(key string, b []byte) bool {
	return len(b) >= 32 && chunk.Sum(b[:len(b)-32]) == chunk.ID(b[len(b)-32:]) &&
		strings.HasSuffix(key, "/"+chunk.ID(b[len(b)-32:]).String())
}

// writeCache stores an index file in the cache, best effort: a cache that
// cannot be written only costs time later. It writes below the cache
// folder only.
func writeCache(cache *os.Root, key string, b []byte) { cachefile.Write(cache, key, b) }

// isNotExist reports a not-found error from a store.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
