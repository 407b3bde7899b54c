package gc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
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
// checked against the checksum its key names), the nodes of the
// manifests' trees (gc/nodes/<xx>/<id>, each checked against its ID) and
// the committed manifest objects (gc/manifests/…, under their store key,
// each checked against the hash its commit marker names). So a purge run
// again on the same machine reads from the store only the index files,
// nodes and manifest objects written since, and the manifests no marker
// names.
//
// A copy stands for the stored object only while the store lists that
// object as it was when the copy was checked against it: an index file
// or a manifest object with the same size and ETag (gc/index-stamps
// records the index files', the stamp heads a cached manifest), a node
// whose first stored copy is in the same pack with the same size and time
// (the stamp heads the cached file). So an object damaged or replaced in
// the store since is read again, and the purge finds the damage and stops
// (or marks what the replacement references) just as a purge with an
// empty cache does. (Damage the store's listing does not show — bytes
// rotting in place under an unchanged ETag and time — a warm cache does
// not see; validate does.) A manifest object is cached only when its
// marker names it: its name checks no copy, and a copy planted in the
// cache folder could hide references; the marker's hash, listed by the
// same look, checks it. A nil *Cache caches nothing. It is safe for
// concurrent use.
type Cache struct {
	dir   string
	root  *os.Root
	clock Clock
	since time.Time // files not used since are pruned

	mu     sync.Mutex
	read   cacheCounts
	stamps map[string]string // index key -> the listing's stamp of the file cached (nil: not loaded)
}

// indexStamps records, for each index file the cache holds, the listing
// it was read or checked under.
const indexStamps = "gc/index-stamps"

// listStamp is how a listing shows an object: its size and ETag, or its
// time when the store gives no ETag.
func listStamp(i remote.Info) string {
	if i.ETag != "" {
		return strconv.FormatInt(i.Size, 10) + " " + strconv.Quote(i.ETag)
	}
	return strconv.FormatInt(i.Size, 10) + " t" + strconv.FormatInt(i.ModTime.UnixNano(), 10)
}

// cacheCounts says what a mark read from its cache and from the store.
type cacheCounts struct {
	Hits, Misses int
}

// maxNode bounds a cached node read back: a leaf decodes to at most 4 MiB
// (manifest's bound), and its stored bytes are fewer.
const maxNode = 8<<20 + 256 // and its stamp

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

// Counts says how many index files and tree nodes the cache served and
// how many were read from the store (and then cached) since it was
// opened. Manifest objects are not counted.
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

// indexFile reads a listed index file, from the cache when it holds it
// under the same listing stamp; else from the store, which it then caches
// under the listing's stamp.
func (c *Cache) indexFile(ctx context.Context, st remote.Store, info remote.Info) ([]index.PackRecord, error) {
	if c == nil {
		return index.ReadListed(ctx, st, nil, info)
	}
	c.mu.Lock()
	if c.stamps == nil {
		c.stamps = map[string]string{}
		if b, ok := cachefile.Read(c.root, indexStamps, 64<<20); ok {
			for line := range strings.Lines(string(b)) {
				if key, stamp, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " "); ok {
					c.stamps[key] = stamp
				}
			}
		}
	}
	stamp := listStamp(info)
	same := c.stamps[info.Key] == stamp
	c.mu.Unlock()
	if !same {
		_ = c.root.Remove(info.Key) // read it from the store
	}
	recs, err := index.ReadListed(ctx, st, c.root, info)
	c.count(same)
	if err == nil {
		c.mu.Lock()
		c.stamps[info.Key] = stamp
		c.mu.Unlock()
	}
	return recs, err
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
// names, and records the stamps of those it holds.
func (c *Cache) pruneIndex(infos []remote.Info) {
	if c == nil {
		return
	}
	listed := make(map[string]bool, len(infos))
	var b strings.Builder
	c.mu.Lock()
	for _, i := range infos {
		listed[i.Key] = true
		if stamp, ok := c.stamps[i.Key]; ok && stamp == listStamp(i) {
			b.WriteString(i.Key + " " + stamp + "\n")
		}
	}
	c.mu.Unlock()
	index.PruneCache(c.root, listed)
	cachefile.Write(c.root, indexStamps, []byte(b.String()))
}

// nodeName is where a node is cached.
func nodeName(id chunk.ID) string {
	s := id.String()
	return "gc/nodes/" + s[:2] + "/" + s
}

// stamper says where the first stored copy of a chunk is: its pack's ID,
// size and time in the store's listing ("" if none). The ledger is one.
type stamper interface {
	stamp(id chunk.ID) (string, error)
}

// Nodes returns a manifest.Chunks that reads the nodes the cache holds
// from it — each checked against its ID, and only while its first stored
// copy is where it was when cached — and the others from next, which it
// then caches. next must say where its copies are (the ledger does);
// otherwise nothing is cached. nm is the store's chunk.Namer.
func (c *Cache) Nodes(next manifest.Chunks, nm chunk.Namer) manifest.Chunks {
	sp, ok := next.(stamper)
	if c == nil || !ok {
		return next
	}
	return cachedNodes{c, next, sp, nm}
}

type cachedNodes struct {
	c    *Cache
	next manifest.Chunks
	sp   stamper
	nm   chunk.Namer
}

func (n cachedNodes) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	var missing []chunk.ID
	stamps := map[chunk.ID]string{}
	for _, id := range ids {
		stamp, err := n.sp.stamp(id)
		if err != nil {
			return err
		}
		stamps[id] = stamp
		name := nodeName(id)
		if b, ok := cachefile.Read(n.c.root, name, maxNode); ok && stamp != "" {
			head, data, found := bytes.Cut(b, []byte{'\n'})
			if found && stampMatches(string(head), stamp) && n.nm.Sum(data) == id {
				n.c.touch(name)
				n.c.count(true)
				if err := fn(id, data); err != nil {
					return err
				}
				continue
			}
		}
		n.c.count(false)
		missing = append(missing, id)
	}
	if len(missing) == 0 {
		return nil
	}
	return n.next.FetchChunks(ctx, missing, func(id chunk.ID, data []byte) error {
		if stamp := stamps[id]; stamp != "" && cachefile.Write(n.c.root, nodeName(id), append([]byte(stamp+"\n"), data...)) {
			n.c.touch(nodeName(id))
		}
		return fn(id, data)
	})
}

// maxManifest bounds a cached manifest object read back: a stored one has
// at most 1 MiB (manifest's bound), and its stamp heads it.
const maxManifest = 1<<20 + 256

// manifestPrefix goes before a manifest object's store key
// (manifests/<host>/<keyspace>/<name>) to name its cached copy.
const manifestPrefix = "gc/"

// manifestObject returns the object of manifest o as listed. A committed
// one (h is the hash its marker names, committed true) comes from the
// cache when the cache holds a copy whose hash is h under the stamp the
// listing shows; else it is read from the store and, when it is the
// object its marker names and of the listed size, cached under that
// stamp. A manifest no marker names is read from the store: nothing
// checks a copy of it.
//
// Why the copy may stand for the stored object: a manifest object is
// written once (create-only) and a marker is written only while the
// manifest it names is stored, so a listed marker names the content of
// the listed object by its hash; the hash proves the copy is that
// content (a planted or damaged copy is refused), and the listing's stamp
// that the store still holds the object the copy was checked against (an
// object replaced in the store since — its marker unchanged — is read
// again, as a purge with an empty cache reads it). A stored object that is
// not the one its marker names is returned as read, never cached: the
// mark must reference what the store holds, as a purge with an empty
// cache does; readers that check the marker refuse it (ErrChanged), and
// each purge reads it again. A marker deleted after the listing — its
// manifest then deleted — leaves a copy that is still served: the mark
// then keeps more than it had to, never less.
func (c *Cache) manifestObject(ctx context.Context, st remote.Store, o manifest.Object, h manifest.Hash, committed bool) ([]byte, error) {
	key, err := manifest.Key(o.Name)
	if c == nil || !committed || err != nil || key != o.Key {
		return manifest.GetObject(ctx, st, o.Name)
	}
	name := manifestPrefix + key
	stamp := listStamp(o.Info)
	if b, ok := cachefile.Read(c.root, name, maxManifest); ok {
		head, obj, found := bytes.Cut(b, []byte{'\n'})
		if found && string(head) == stamp && int64(len(obj)) == o.Info.Size && manifest.HashOf(obj) == h {
			return obj, nil
		}
		_ = c.root.Remove(name) // it serves no more
	}
	obj, err := manifest.GetObject(ctx, st, o.Name)
	if err != nil {
		return nil, err
	}
	if int64(len(obj)) == o.Info.Size && manifest.HashOf(obj) == h {
		cachefile.Write(c.root, name, append([]byte(stamp+"\n"), obj...))
	}
	return obj, nil
}

// pruneManifests removes the cached manifest objects whose keys a
// complete listing of the manifests no longer holds (and what a crash
// left half written).
func (c *Cache) pruneManifests(listed map[string]bool) {
	if c == nil || listed == nil {
		return
	}
	_ = fs.WalkDir(c.root.FS(), manifestPrefix+"manifests", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !listed[strings.TrimPrefix(p, manifestPrefix)] {
			_ = c.root.Remove(p)
		}
		return nil
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
