package gc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/internal/cachefile"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// Cache keeps in the store's cache folder what a purge reads that is named
// by its content: the index files (where Index.Load keeps them, each
// checked against the checksum its key names) and the nodes of the
// manifests' trees (gc/nodes/<xx>/<id>, each checked against its ID). So
// a purge run again on the same machine reads from the store only the
// index files and nodes written since the last one, and marks the same
// references it would mark from the store. Manifest objects are read from
// the store every time: nothing in their keys checks a cached copy, and
// the mark must see what the store holds (a copy in the cache folder could
// have been put there to hide references). A nil *Cache caches nothing.
// It is safe for concurrent use.
type Cache struct {
	dir   string
	root  *os.Root
	clock Clock
	since time.Time // files not used since are pruned

	mu   sync.Mutex
	read cacheCounts
}

// cacheCounts says what a mark read from its cache and from the store.
type cacheCounts struct {
	Hits, Misses int
}

// maxNode bounds a cached node read back: a leaf decodes to at most 4 MiB
// (manifest's bound), and its stored bytes are fewer.
const maxNode = 8 << 20

// OpenCache opens the cache in the store's cache folder dir; nil when dir
// is "" or unusable. A node is stamped with clock's time when cached or
// used (nil: the system's clock), and a mark that read every manifest
// prunes the nodes not stamped since the Cache was opened.
func OpenCache(dir string, clock Clock) *Cache {
	root := cachefile.Open(dir)
	if root == nil {
		return nil
	}
	if clock == nil {
		clock = SystemClock{}
	}
	// To the second: a file system's times may be that coarse.
	return &Cache{dir: dir, root: root, clock: clock, since: clock.Now().Truncate(time.Second)}
}

// Close releases the folder.
func (c *Cache) Close() {
	if c != nil {
		c.root.Close()
	}
}

// Counts says how many objects the cache served and how many were read
// from the store (and then cached) since it was opened.
func (c *Cache) Counts() (hits, misses int) {
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read.Hits, c.read.Misses
}

func (c *Cache) count(hit bool) {
	c.mu.Lock()
	if hit {
		c.read.Hits++
	} else {
		c.read.Misses++
	}
	c.mu.Unlock()
}

// indexFile reads a listed index file, from the cache when it holds it.
func (c *Cache) indexFile(ctx context.Context, st remote.Store, info remote.Info) ([]index.PackRecord, error) {
	if c == nil {
		return index.ReadListed(ctx, st, nil, info)
	}
	return index.ReadListed(ctx, st, c.root, info)
}

// Dir returns the cache folder ("" for a nil Cache): where Index.Load and
// index writers keep index files.
func (c *Cache) Dir() string {
	if c == nil {
		return ""
	}
	return c.dir
}

// putIndexFile keeps an index file the purge wrote.
func (c *Cache) putIndexFile(key string, b []byte) {
	if c != nil {
		index.CacheFile(c.root, key, b)
	}
}

// pruneIndex removes cached index files a complete listing no longer
// names.
func (c *Cache) pruneIndex(infos []remote.Info) {
	if c == nil {
		return
	}
	listed := make(map[string]bool, len(infos))
	for _, i := range infos {
		listed[i.Key] = true
	}
	index.PruneCache(c.root, listed)
}

// nodeName is where a node is cached.
func nodeName(id chunk.ID) string {
	s := id.String()
	return "gc/nodes/" + s[:2] + "/" + s
}

// Nodes returns a manifest.Chunks that reads the nodes the cache holds from
// it, the others from next, which it then caches.
func (c *Cache) Nodes(next manifest.Chunks) manifest.Chunks {
	if c == nil {
		return next
	}
	return cachedNodes{c, next}
}

type cachedNodes struct {
	c    *Cache
	next manifest.Chunks
}

func (n cachedNodes) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	var missing []chunk.ID
	for _, id := range ids {
		name := nodeName(id)
		if data, ok := cachefile.Read(n.c.root, name, maxNode); ok && chunk.Sum(data) == id {
			n.c.touch(name)
			n.c.count(true)
			if err := fn(id, data); err != nil {
				return err
			}
			continue
		}
		n.c.count(false)
		missing = append(missing, id)
	}
	if len(missing) == 0 {
		return nil
	}
	return n.next.FetchChunks(ctx, missing, func(id chunk.ID, data []byte) error {
		if cachefile.Write(n.c.root, nodeName(id), data) {
			n.c.touch(nodeName(id))
		}
		return fn(id, data)
	})
}

// touch stamps a cached file used by this purge (prune keeps it).
func (c *Cache) touch(name string) {
	now := c.clock.Now()
	_ = c.root.Chtimes(name, now, now)
}

// prune removes the cached nodes this purge did not use. Only a mark that
// read every manifest may prune: otherwise it would drop what the next one
// needs.
func (c *Cache) prune() error {
	if c == nil {
		return nil
	}
	err := fs.WalkDir(c.root.FS(), "gc/nodes", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(c.since) {
			_ = c.root.Remove(p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("prune the purge's cache: %w", err)
	}
	return nil
}
