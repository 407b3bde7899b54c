package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// Lazy loading: what a backup does with other hosts' index files. Load
// reads only the head of such a file (headLen bytes: its filter and bucket
// table, about 2.6 bytes a chunk) and keeps it in a scratch file, not in
// memory; a lookup that misses what is loaded probes each head's filter
// (one 64-byte block read from the scratch file) and, where the filter
// says "maybe", reads that file's one bucket of entries from the store (a
// ranged read of about 256 entries, checked by its sum), which answers
// it. A file that keeps answering "here" (wholeAfter times) is read whole,
// verified and admitted like any other: the node shares much with that
// host (it replaced it, or clones it). So a node's memory grows with its
// own data and the chunks it shares with others, not with the fleet's,
// while every host's chunks still deduplicate.
//
// A file that cannot be read when a lookup needs it (a purge replaced it,
// or it is damaged) leaves the chunk unknown: the backup uploads it again.
//
// Other hosts' files are not even listed until a lookup misses the host's
// own (or a reader must know every pack: faultAll), so that opening the
// store costs what the host's own files changed, not the fleet's: an
// unchanged backup of a warm node lists only index/<host>/. Listing later
// than the session's start is as safe as listing at it (design §4.2 W1):
// the packs found are checked before they are relied on, and condemned
// ones are excluded by ID whenever they are admitted.

// wholeAfter is how many lookups a file's buckets answer before the file
// is read whole.
const wholeAfter = 16

// lazy holds the heads of index files not loaded yet.
type lazy struct {
	own string // "index/<host>/": loaded whole
	// ownOnly: a lookup that misses the host's own files does not look in
	// other hosts' (OwnOnly).
	ownOnly bool

	// listMu is held while other hosts' files are listed for the first
	// time (listOthers); listed says that was done.
	listMu sync.Mutex
	listed bool

	// Set by Load: the store and cache lookups read files from, and the
	// context they read them under (the command's).
	ctx   context.Context
	st    remote.Store
	cache string

	mu     sync.Mutex
	files  map[string]*lazyFile
	order  []*lazyFile // files in the order Load listed them: lookups read them in it
	heads  heads
	layout *layout // most files' filters by region of the IDs (layout.go); nil: none
}

type lazyFile struct {
	info remote.Info
	n    int   // entries
	at   int64 // where its filter starts in lazy.heads; its bucket table follows
	hits int   // lookups its buckets answered (under lazy.mu)

	mu     sync.Mutex // held while the file is read whole: lookups wait for it
	loaded bool       // read and admitted, or found gone or damaged (under mu and lazy.mu)
}

func (f *lazyFile) filterLen() int64 { return int64(filterLen(f.n)) }

// LoadOthersLazily makes Load read only the heads of index files of hosts
// other than host, and lookups read one bucket of such a file when its
// filter may hold the chunk looked up. Call it before the first Load.
func (x *Index) LoadOthersLazily(host string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.lazy = &lazy{own: "index/" + host + "/", files: map[string]*lazyFile{}}
}

// OwnOnly makes an index LoadOthersLazily set up deduplicate within the
// host's own index files only: a lookup that misses them lists and reads
// no other host's (a backup's --dedup-scope host, for fleets whose other
// hosts' filters cost a node more than the chunks they share). A reader
// that must know every pack (RebuildOrphans) still reads them all.
func (x *Index) OwnOnly() {
	if l := x.lazyOf(); l != nil {
		l.mu.Lock()
		l.ownOnly = true
		l.mu.Unlock()
	}
}

// filtered returns how many index files are known by their head only,
// and the bytes of filter and bucket table those heads take.
func (x *Index) filtered() (files int, bytes int64) {
	l := x.lazyOf()
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.order {
		if !f.loaded {
			files++
			bytes += headLen(f.n) - int64(idxHeader)
		}
	}
	return files, bytes
}

func (x *Index) lazyOf() *lazy {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.lazy
}

// deferred reports whether Load reads only the head of the listed file.
func (l *lazy) deferred(key string) bool { return l != nil && !strings.HasPrefix(key, l.own) }

// known reports whether Load has the head of key already.
func (l *lazy) known(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.files[key] != nil
}

// cacheDir returns the cache folder Load was given.
func (l *lazy) cacheDir() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cache
}

// forget stops probing the files not listed: a purge replaced them (a
// continuous backup loads again and again; a listed file is probed).
func (l *lazy) forget(listed map[string]bool) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.order = slices.DeleteFunc(l.order, func(f *lazyFile) bool { return !listed[f.info.Key] })
	for k, f := range l.files {
		if !listed[k] {
			f.loaded = true // a lookup under way reads it no more
			delete(l.files, k)
		}
	}
}

// loadHead reads the head of the listed index file, from the cache (the
// head or the whole file) or the store, which it then caches, and keeps
// its filter and bucket table in the scratch file.
func (l *lazy) loadHead(ctx context.Context, st remote.Store, cache *os.Root, cacheDir string, info remote.Info) (fetched bool, err error) {
	if info.Size < 0 {
		if info, err = st.Stat(ctx, info.Key); err != nil {
			return false, err
		}
	}
	if info.Size > MaxFileSize {
		return false, damaged{fmt.Errorf("index file %s: %d bytes is more than %d", info.Key, info.Size, MaxFileSize)}
	}
	n := entriesIn(info.Size)
	if n < 0 {
		return false, damaged{fmt.Errorf("index file %s: %d bytes is not the size of an index file", info.Key, info.Size)}
	}
	var h head
	ok := false
	if b, found := readCache(cache, info.Key+".head"); found {
		h, err = decodeHead(b, info.Size)
		ok = err == nil
	}
	if b, found := readCache(cache, info.Key); !ok && found && named(info.Key, b) {
		h, err = decodeHead(b, info.Size)
		ok = err == nil
	}
	if !ok {
		b, err := readRange(ctx, st, info.Key, 0, headLen(n))
		if err != nil {
			return true, err
		}
		if h, err = decodeHead(b, info.Size); err != nil {
			return true, damaged{fmt.Errorf("%s: %w", info.Key, err)}
		}
		writeCache(cache, info.Key+".head", b)
		fetched = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files[info.Key] != nil {
		return fetched, nil
	}
	at, err := l.heads.add(cacheDir, h.filter, h.table)
	if err != nil {
		return fetched, err
	}
	f := &lazyFile{info: info, n: h.n, at: at}
	l.files[info.Key] = f
	l.order = append(l.order, f)
	return fetched, nil
}

// othersListed reports whether other hosts' index files were listed.
func (l *lazy) othersListed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listed
}

// prefix returns what Load lists: the host's own files until other hosts'
// were listed once (listOthers), then all.
func (l *lazy) prefix() string {
	if l != nil && !l.othersListed() {
		return l.own
	}
	return "index/"
}

// listOthers lists every index file once, when a lookup first misses the
// host's own, and loads the heads of other hosts' files as Load does. A
// failure leaves them unlisted: the lookup's chunk is unknown (uploaded
// again), and the next lookup tries again.
func (x *Index) listOthers(ctx context.Context, l *lazy) {
	l.listMu.Lock()
	defer l.listMu.Unlock()
	l.mu.Lock()
	st, cacheDir, listed := l.st, l.cache, l.listed
	if ctx == nil {
		ctx = l.ctx
	}
	l.mu.Unlock()
	if listed || st == nil {
		return
	}
	cache := openCache(cacheDir)
	if cache != nil {
		defer cache.Close()
	}
	ls := LoadStats{Damaged: map[string]error{}}
	for range 3 {
		missed, err := x.load(ctx, st, cache, &ls, "index/")
		if err != nil {
			return
		}
		l.mu.Lock()
		l.listed = true
		l.mu.Unlock()
		if missed == 0 {
			break
		}
	}
}

// fault looks id up in the not yet loaded index files whose filter may
// hold it, under ctx (nil: the one Load was given), reading one bucket of
// each; what it finds is merged into the index.
func (x *Index) fault(ctx context.Context, id chunk.ID) {
	l := x.lazyOf()
	if l == nil {
		return
	}
	l.mu.Lock()
	ownOnly := l.ownOnly
	l.mu.Unlock()
	if ownOnly {
		return
	}
	if !l.othersListed() {
		x.listOthers(ctx, l)
	}
	l.mu.Lock()
	files := slices.Clone(l.order)
	if ctx == nil {
		ctx = l.ctx
	}
	st, cacheDir, lay := l.st, l.cache, l.layout
	l.mu.Unlock()
	if st == nil {
		return
	}
	var hits []*lazyFile
	if lay != nil {
		var err error
		if hits, err = lay.probe(id); err != nil {
			lay, hits = nil, nil // probe file by file
		}
	}
	for _, f := range files {
		if lay != nil && lay.in[f] {
			continue
		}
		if maybe, err := l.heads.filterHas(f.at, f.filterLen(), id); err == nil && maybe {
			hits = append(hits, f)
		}
	}
	for _, f := range hits {
		if f.done(l) {
			continue
		}
		found, err := x.readBucket(ctx, l, st, f, id)
		switch {
		case err == nil && found:
			l.mu.Lock()
			f.hits++
			whole := f.hits >= wholeAfter
			l.mu.Unlock()
			if whole {
				x.readLazy(ctx, l, st, cacheDir, f)
			}
		case errors.Is(err, ErrDamaged):
			// The bucket or the head it was read by is damaged: the
			// cached head goes, and the file is read whole and checked
			// against its name (if that fails too, it is not read again).
			removeCache(cacheDir, f.info.Key+".head")
			x.readLazy(ctx, l, st, cacheDir, f)
		case isNotExist(err):
			l.mu.Lock()
			f.loaded = true // gone: not read again
			l.mu.Unlock()
		}
		// Any other failure may pass: the next lookup tries again, this
		// chunk is uploaded again.
	}
}

// done reports whether f was read whole, or found gone or damaged.
func (f *lazyFile) done(l *lazy) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f.loaded
}

// readBucket reads the bucket of f that would hold id from the store,
// checks it, and admits the copies of id it lists.
func (x *Index) readBucket(ctx context.Context, l *lazy, st remote.Store, f *lazyFile, id chunk.ID) (bool, error) {
	nf, nb := f.filterLen(), bucketsFor(f.n)
	bk := bucketOf(id, nb)
	lo, hi, sum, err := l.heads.bucket(f.at+nf, bk)
	if err != nil {
		return false, err
	}
	if lo < 0 || hi < lo || hi > f.n {
		return false, damaged{fmt.Errorf("index file %s: bucket table out of order", f.info.Key)}
	}
	if hi == lo {
		return false, nil
	}
	off := headLen(f.n) + int64(lo)*idxEntrySize
	b, err := readRange(ctx, st, f.info.Key, off, int64(hi-lo)*idxEntrySize)
	if err != nil {
		return false, err
	}
	es, err := decodeBucket(nil, bk, nb, lo, hi, sum, b)
	if err != nil {
		return false, damaged{fmt.Errorf("%s: %w", f.info.Key, err)}
	}
	var packs []PackRecord
	for _, e := range es {
		if e.ID != id {
			continue
		}
		packs = append(packs, PackRecord{ID: e.pack, Size: e.size, Entries: []pack.Entry{e.Entry}})
	}
	if len(packs) == 0 {
		return false, nil
	}
	ls := LoadStats{Damaged: map[string]error{}}
	if err := x.admitFound(ctx, st, f.info.Key, packs, &ls); err != nil {
		return false, err
	}
	if err := ls.Damaged[f.info.Key]; err != nil {
		return false, err
	}
	return true, nil
}

// readLazy reads f whole unless it was, and returns why a read failed for
// a reason that may pass (the store, the context): the next lookup that
// needs the file tries again. A file found gone or damaged is not read
// again. Lookups of chunks of one file wait for one read of it.
func (x *Index) readLazy(ctx context.Context, l *lazy, st remote.Store, cacheDir string, f *lazyFile) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done(l) {
		return nil
	}
	err := x.loadLazy(ctx, st, cacheDir, f.info)
	if err != nil && !isNotExist(err) && !errors.Is(err, ErrDamaged) {
		return err
	}
	l.mu.Lock()
	f.loaded = true
	l.mu.Unlock()
	return nil
}

// faultAll reads whole every index file known by its head only: what a
// reader does before it indexes orphan packs from their headers (with
// other hosts' files unread, every pack of theirs would look orphaned).
func (x *Index) faultAll(ctx context.Context) error {
	l := x.lazyOf()
	if l == nil {
		return nil
	}
	if !l.othersListed() {
		x.listOthers(ctx, l)
		if !l.othersListed() {
			return errors.New("list index files: other hosts' files could not be listed")
		}
	}
	l.mu.Lock()
	files := slices.Clone(l.order)
	st, cacheDir := l.st, l.cache
	l.mu.Unlock()
	for _, f := range files {
		if err := x.readLazy(ctx, l, st, cacheDir, f); err != nil {
			return fmt.Errorf("read index file %s: %w", f.info.Key, err)
		}
	}
	return nil
}

// loadLazy reads one index file whole and admits it, as Load does; a file
// that cannot be read is left out (its chunks are uploaded again).
func (x *Index) loadLazy(ctx context.Context, st remote.Store, cacheDir string, info remote.Info) error {
	cache := openCache(cacheDir)
	if cache != nil {
		defer cache.Close()
	}
	packs, _, err := readIndexFile(ctx, st, cache, info)
	if err != nil {
		return err
	}
	ls := LoadStats{Damaged: map[string]error{}}
	if err := x.admit(ctx, st, info.Key, packs, &ls); err != nil {
		return err
	}
	x.settle()
	if err := ls.Damaged[info.Key]; err != nil {
		return err
	}
	return nil
}

// readRange reads n bytes at off of the object under key.
func readRange(ctx context.Context, st remote.Store, key string, off, n int64) ([]byte, error) {
	rc, err := st.Get(ctx, key, off, n)
	if errors.Is(err, remote.ErrCorrupt) {
		return nil, damaged{fmt.Errorf("index file %s: %w", key, err)}
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, damaged{errors.New("index file " + key + ": shorter than listed")}
		}
		if errors.Is(err, remote.ErrCorrupt) {
			return nil, damaged{fmt.Errorf("index file %s: %w", key, err)}
		}
		return nil, err
	}
	return b, nil
}

// heads holds the filters and bucket tables of lazily loaded index files:
// in memory up to headsInMemory bytes, then in an unlinked scratch file
// in the cache folder (or the temporary one), so that a backup's memory
// does not grow with the fleet. Probes read one 64-byte block.
type heads struct {
	mu       sync.RWMutex // add writes, probes read
	mem      []byte
	file     *os.File
	size     int64
	inMemory bool // spilling failed
}

// headsInMemory is how many bytes of heads stay in memory before they
// move to a scratch file.
const headsInMemory = 1 << 20

// add appends a filter and its bucket table and returns where they start.
// Callers hold lazy.mu.
func (h *heads) add(dir string, filter, table []byte) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := h.size
	n := int64(len(filter) + len(table))
	h.room(dir, n)
	if h.file == nil {
		h.mem = append(append(h.mem, filter...), table...)
	} else {
		if _, err := h.file.WriteAt(append(slices.Clip(filter), table...), at); err != nil {
			return 0, fmt.Errorf("index heads: %w", err)
		}
	}
	h.size += n
	return at, nil
}

// room moves the heads to a scratch file when n more bytes would take them
// past headsInMemory; if none can be made, they stay in memory. Callers
// hold h.mu.
func (h *heads) room(dir string, n int64) {
	if h.file != nil || h.inMemory || h.size+n <= headsInMemory {
		return
	}
	if h.file = spill(dir, h.mem); h.file != nil {
		h.mem = nil
	} else {
		h.inMemory = true // no scratch file can be made: memory it is
	}
}

// spill returns an unlinked scratch file in dir (or the temporary folder)
// holding b, or nil if none can be made: the heads then stay in memory.
func spill(dir string, b []byte) *os.File {
	for _, d := range slices.Compact([]string{dir, ""}) {
		f, err := os.CreateTemp(d, "cassback-heads-*")
		if err != nil {
			continue
		}
		os.Remove(f.Name()) // unlinked: gone with the process
		if _, err := f.Write(b); err == nil {
			return f
		}
		f.Close()
	}
	return nil
}

// grow appends n zero bytes and returns where they start.
func (h *heads) grow(dir string, n int64) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := h.size
	h.room(dir, n)
	if h.file == nil {
		h.mem = append(h.mem, make([]byte, n)...)
	} else if err := h.file.Truncate(at + n); err != nil {
		return 0, fmt.Errorf("index heads: %w", err)
	}
	h.size += n
	return at, nil
}

// writeAt overwrites bytes that grow added.
func (h *heads) writeAt(p []byte, off int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off < 0 || off+int64(len(p)) > h.size {
		return errors.New("index heads: write out of range")
	}
	if h.file == nil {
		copy(h.mem[off:], p)
		return nil
	}
	_, err := h.file.WriteAt(p, off)
	return err
}

// readAt reads len(p) bytes at off. Safe beside add, which never moves
// what is written.
func (h *heads) readAt(p []byte, off int64) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if off < 0 || off+int64(len(p)) > h.size {
		return errors.New("index heads: read out of range")
	}
	if h.file != nil {
		_, err := h.file.ReadAt(p, off)
		return err
	}
	copy(p, h.mem[off:])
	return nil
}

// filterHas probes the filter of nf bytes at at for id.
func (h *heads) filterHas(at, nf int64, id chunk.ID) (bool, error) {
	if nf < filterBlock {
		return false, nil
	}
	var block [filterBlock]byte
	if err := h.readAt(block[:], at+filterBlockIndex(nf, id)*filterBlock); err != nil {
		return false, err
	}
	return blockHas(block[:], id), nil
}

// bucket returns bucket bk of the bucket table at at: its entries [lo, hi)
// and sum.
func (h *heads) bucket(at int64, bk int) (lo, hi int, sum [8]byte, err error) {
	var b [2 * idxBucketSize]byte
	if bk == 0 {
		err = h.readAt(b[idxBucketSize:], at)
	} else {
		err = h.readAt(b[:], at+int64(bk-1)*idxBucketSize)
	}
	if err != nil {
		return 0, 0, sum, err
	}
	lo = int(binary.LittleEndian.Uint32(b[:]))
	hi = int(binary.LittleEndian.Uint32(b[idxBucketSize:]))
	return lo, hi, [8]byte(b[idxBucketSize+4:]), nil
}
