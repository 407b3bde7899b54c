package index

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// Lazy loading: what a backup does with other hosts' index files. Load
// reads only the filter of such a file (filterBound bytes, about 3 bytes a
// chunk) and keeps it in memory, not the file's entries (44 bytes a
// chunk); a lookup that misses what is loaded probes the filters, and
// reads whole, verified and admitted like any other, the files whose
// filter may hold the chunk. So a node's memory grows with its own data,
// the chunks it shares with others and 3 bytes a chunk of the fleet's,
// not 44, while a node replaced from its backup or a cloned cluster still
// deduplicates against every host.
//
// A file that cannot be read when a lookup needs it (a purge replaced it,
// or it is damaged) leaves the chunk unknown: the backup uploads it again.

// lazy holds the filters of index files not loaded yet.
type lazy struct {
	own string // "index/<host>/": loaded whole

	// Set by Load: the store and cache lookups read files from, and the
	// context they read them under (the command's).
	ctx   context.Context
	st    remote.Store
	cache string

	mu    sync.Mutex
	files map[string]*lazyFile
	order []*lazyFile // files in the order Load listed them: lookups read them in it
}

type lazyFile struct {
	info   remote.Info
	filter []byte // kept once the file is read: a lookup that missed while
	// it was being read hits it again, and finds the chunk

	mu     sync.Mutex // held while the file is read: lookups wait for it
	loaded bool       // read and admitted, or found gone or damaged (under mu and lazy.mu)
}

// LoadOthersLazily makes Load read only the filters of index files of
// hosts other than host, and lookups read such a file whole when its
// filter may hold the chunk looked up. Call it before the first Load.
func (x *Index) LoadOthersLazily(host string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.lazy = &lazy{own: "index/" + host + "/", files: map[string]*lazyFile{}}
}

// filtered returns how many index files are known by their filter only,
// and the bytes those filters take.
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
			bytes += int64(len(f.filter))
		}
	}
	return files, bytes
}

func (x *Index) lazyOf() *lazy {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.lazy
}

// deferred reports whether Load reads only the filter of the listed file.
func (l *lazy) deferred(key string) bool { return l != nil && !strings.HasPrefix(key, l.own) }

// known reports whether Load has the filter of key already.
func (l *lazy) known(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.files[key] != nil
}

// loadFilter reads the filter of the listed index file, from the cache
// (the file itself or its filter) or the store, which it then caches.
func (l *lazy) loadFilter(ctx context.Context, st remote.Store, cache *os.Root, info remote.Info) (fetched bool, err error) {
	var filter []byte
	if b, ok := readCache(cache, info.Key+".filter"); ok {
		filter, err = decodeFilter(b)
	} else if b, ok := readCache(cache, info.Key); ok {
		filter, err = decodeFilter(b)
	}
	if filter == nil {
		if info.Size < 0 {
			if info, err = st.Stat(ctx, info.Key); err != nil {
				return false, err
			}
		}
		if info.Size > MaxFileSize {
			return false, damaged{fmt.Errorf("index file %s: %d bytes is more than %d", info.Key, info.Size, MaxFileSize)}
		}
		b, err := readPrefix(ctx, st, info.Key, filterBound(info.Size))
		if err != nil {
			return true, err
		}
		if filter, err = decodeFilter(b); err != nil {
			return true, err
		}
		writeCache(cache, info.Key+".filter", b[:idxHeader+len(filter)])
		fetched = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files[info.Key] == nil {
		f := &lazyFile{info: info, filter: filter}
		l.files[info.Key] = f
		l.order = append(l.order, f)
	}
	return fetched, nil
}

// fault reads whole the not yet loaded index files whose filter may hold
// id, under ctx (nil: the one Load was given), and reports whether any
// such file was read, now or before (readLazy).
func (x *Index) fault(ctx context.Context, id chunk.ID) bool {
	l := x.lazyOf()
	if l == nil {
		return false
	}
	var hits []*lazyFile
	l.mu.Lock()
	for _, f := range l.order {
		if filterHas(f.filter, id) {
			hits = append(hits, f)
		}
	}
	if ctx == nil {
		ctx = l.ctx
	}
	st, cacheDir := l.st, l.cache
	l.mu.Unlock()
	if len(hits) == 0 || st == nil {
		return false
	}
	for _, f := range hits {
		x.readLazy(ctx, l, st, cacheDir, f)
	}
	return true
}

// readLazy reads f whole unless it was, and returns why a read failed for
// a reason that may pass (the store, the context): the next lookup that
// needs the file tries again. A file found gone or damaged is not read
// again. Lookups of chunks of one file wait for one read of it.
func (x *Index) readLazy(ctx context.Context, l *lazy, st remote.Store, cacheDir string, f *lazyFile) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loaded {
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

// faultAll reads whole every index file known by its filter only: what a
// reader does before it indexes orphan packs from their headers (with
// other hosts' files unread, every pack of theirs would look orphaned).
func (x *Index) faultAll(ctx context.Context) error {
	l := x.lazyOf()
	if l == nil {
		return nil
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

// readPrefix reads the first n bytes of the object under key.
func readPrefix(ctx context.Context, st remote.Store, key string, n int64) ([]byte, error) {
	rc, err := st.Get(ctx, key, 0, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, damaged{errors.New("index file " + key + ": shorter than listed")}
		}
		return nil, err
	}
	return b, nil
}
