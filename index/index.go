package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
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
}

// Index is the set of chunks known to be durable in the store, with where
// each one is. It is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	packs   []packInfo
	packOrd map[chunk.ID]uint32
	sorted  []entry            // from index files; sorted by id
	added   map[chunk.ID]entry // added by this process since the last merge
	loaded  map[string]bool    // index keys already merged
	// excluded packs are condemned: their chunks are not "known", so a
	// writer uploads such a chunk again rather than reference a pack the
	// collector may delete.
	excluded map[uint32]bool
	// avoided packs are condemned too, but a reader may still use them
	// when they hold the only copy it knows (Avoid).
	avoided map[uint32]bool
}

// New returns an empty Index.
func New() *Index {
	return &Index{packOrd: map[chunk.ID]uint32{}, added: map[chunk.ID]entry{}, loaded: map[string]bool{}, excluded: map[uint32]bool{}, avoided: map[uint32]bool{}}
}

// Len returns the number of known chunks.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.sorted) + len(x.added)
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
	i, _ := slices.BinarySearchFunc(x.sorted, id, func(e entry, id chunk.ID) int { return bytes.Compare(e.id[:], id[:]) })
	for ; i < len(x.sorted) && x.sorted[i].id == id; i++ {
		if try(x.sorted[i]) {
			return x.sorted[i], true
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
		x.avoided[x.packOrdinal(p, -1)] = true
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
			x.excluded[x.packOrdinal(p, -1)] = true
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

// Has reports whether the chunk is known to be stored.
func (x *Index) Has(id chunk.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.find(id)
	return ok
}

// Lookup returns where the chunk is stored.
func (x *Index) Lookup(id chunk.ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.find(id)
	if !ok {
		return Location{}, false
	}
	return Location{Pack: x.packs[e.pack].id, Off: e.off, Len: e.len}, true
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

func (x *Index) packOrdinal(id chunk.ID, size int64) uint32 {
	if o, ok := x.packOrd[id]; ok {
		if x.packs[o].size < 0 {
			x.packs[o].size = size // excluded before it was loaded
		}
		return o
	}
	o := uint32(len(x.packs))
	x.packs = append(x.packs, packInfo{id, size})
	x.packOrd[id] = o
	return o
}

// Add records a durable pack's chunks.
func (x *Index) Add(p PackRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	o := x.packOrdinal(p.ID, p.Size)
	for _, e := range p.Entries {
		if _, ok := x.find(e.ID); !ok {
			x.added[e.ID] = entry{e.ID, o, e.Off, e.Len}
		}
	}
}

// merge adds the packs of one index file to the sorted entries.
func (x *Index) merge(key string, packs []PackRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loaded[key] {
		return
	}
	x.loaded[key] = true
	n := len(x.sorted)
	for _, p := range packs {
		o := x.packOrdinal(p.ID, p.Size)
		for _, e := range p.Entries {
			x.sorted = append(x.sorted, entry{e.ID, o, e.Off, e.Len})
		}
	}
	if len(x.sorted) > n {
		// Copies of a chunk in several packs (two nodes raced, or a
		// repack) all stay, so a condemned copy can be skipped.
		slices.SortStableFunc(x.sorted, func(a, b entry) int { return bytes.Compare(a.id[:], b.id[:]) })
		x.sorted = slices.Compact(x.sorted)
	}
	for id, e := range x.added {
		i, _ := slices.BinarySearchFunc(x.sorted, id, func(e entry, id chunk.ID) int { return bytes.Compare(e.id[:], id[:]) })
		for ; i < len(x.sorted) && x.sorted[i].id == id; i++ {
			if x.sorted[i].pack == e.pack {
				delete(x.added, id)
				break
			}
		}
	}
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
func (x *Index) Load(ctx context.Context, st remote.Store, cacheDir string) (LoadStats, error) {
	ls := LoadStats{Damaged: map[string]error{}}
	for range 3 {
		missed, err := x.load(ctx, st, cacheDir, &ls)
		if err != nil {
			return ls, err
		}
		if missed == 0 {
			break
		}
	}
	if len(ls.Damaged) > 0 {
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
	var orphans []chunk.ID
	err := st.List(ctx, "packs/", func(i remote.Info) error {
		id, err := chunk.ParseID(i.Key[strings.LastIndexByte(i.Key, '/')+1:])
		if err != nil || pack.Key(id) != i.Key {
			return nil
		}
		if x.PackSize(id) < 0 {
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
		x.Add(PackRecord{ID: id, Size: size, Entries: entries})
		n++
	}
	return n, nil
}

func (x *Index) load(ctx context.Context, st remote.Store, cacheDir string, ls *LoadStats) (missed int, err error) {
	var keys []string
	err = st.List(ctx, "index/", func(i remote.Info) error {
		x.mu.RLock()
		done := x.loaded[i.Key]
		x.mu.RUnlock()
		if !done && ls.Damaged[i.Key] == nil {
			keys = append(keys, i.Key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list index files: %w", err)
	}
	for _, key := range keys {
		b, hit := readCache(cacheDir, key)
		var packs []PackRecord
		if hit {
			packs, err = decodeNamed(key, b)
			hit = err == nil
		}
		if !hit {
			b, err = readAll(ctx, st, key)
			if isNotExist(err) {
				// A purge replaced it between our List and Get; its
				// replacement has another key: list again.
				missed++
				continue
			}
			if err != nil {
				return missed, fmt.Errorf("read index file %s: %w", key, err)
			}
			ls.Fetched++
			if packs, err = decodeNamed(key, b); err != nil {
				ls.Damaged[key] = err
				continue
			}
			writeCache(cacheDir, key, b)
		}
		x.merge(key, packs)
	}
	return missed, nil
}

func readAll(ctx context.Context, st remote.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func readCache(dir, key string) ([]byte, bool) {
	if dir == "" {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
	return b, err == nil && len(b) >= 48
}

// writeCache stores an index file in the cache, best effort: a cache that
// cannot be written only costs time later.
func writeCache(dir, key string, b []byte) {
	if dir == "" {
		return
	}
	p := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return
	}
	_ = os.Rename(tmp, p)
}

// isNotExist reports a not-found error from a store.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
