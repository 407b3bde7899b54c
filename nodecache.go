package cassback

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/cachefile"
	"github.com/cassback/cassback/manifest"
)

// nodeCache keeps the nodes of a host's latest manifest trees in the cache
// folder (<cache>/nodes/<host>/<id>), so that a backup reads its previous
// manifests without a request for their nodes: a node is immutable and
// named by its hash, so a cached copy that matches its ID is the node. The
// nodes a backup reads or writes are kept; prune removes those of no
// manifest it keeps (a host's latest per keyspace), so the folder holds
// about one copy of the host's current trees.
type nodeCache struct {
	root *os.Root    // the host's folder
	nm   chunk.Namer // names the nodes, to check a cached copy
	next manifest.Chunks

	mu   sync.Mutex
	puts int // nodes written since the last prune
	kept int // nodes kept by the last prune
}

// maxNodeFile bounds a cached node read back: a leaf decodes to at most
// 4 MiB, and its gzipped bytes are less.
const maxNodeFile = 8 << 20

// newNodeCache returns a cache of host's nodes below cacheDir that fetches
// the nodes it lacks from next, or nil when cacheDir is "" or unusable; nm
// is the store's chunk.Namer.
func newNodeCache(cacheDir, host string, nm chunk.Namer, next manifest.Chunks) *nodeCache {
	if cacheDir == "" || filepath.Base(host) != host {
		return nil
	}
	dir := filepath.Join(cacheDir, "nodes", host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil
	}
	return &nodeCache{root: root, nm: nm, next: next}
}

// FetchChunks implements manifest.Chunks: cached nodes first, the others
// from next, which are then cached.
func (c *nodeCache) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	var missing []chunk.ID
	for _, id := range ids {
		if data, ok := c.get(id); ok {
			if err := fn(id, data); err != nil {
				return err
			}
			continue
		}
		missing = append(missing, id)
	}
	if len(missing) == 0 {
		return nil
	}
	return c.next.FetchChunks(ctx, missing, func(id chunk.ID, data []byte) error {
		c.put(id, data)
		return fn(id, data)
	})
}

// get returns the cached node id if a regular file below the folder
// holds bytes that match it.
func (c *nodeCache) get(id chunk.ID) ([]byte, bool) {
	data, ok := cachefile.Read(c.root, id.String(), maxNodeFile)
	if !ok || c.nm.Sum(data) != id {
		return nil, false
	}
	return data, true
}

// put caches a node, best effort (a file that cannot be written costs a
// read later).
func (c *nodeCache) put(id chunk.ID, data []byte) {
	name := id.String()
	if fi, err := c.root.Lstat(name); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return // the same bytes, or damaged ones get finds
	}
	if !cachefile.Write(c.root, name, data) {
		return
	}
	c.mu.Lock()
	c.puts++
	c.mu.Unlock()
}

// prune removes the cached nodes not in keep() once more nodes were
// written since the last prune than the folder held then (or now, with
// force): the cost of listing the folder is spread over the nodes written.
func (c *nodeCache) prune(keep func() map[chunk.ID]bool, force bool) {
	c.mu.Lock()
	due := force || c.puts > c.kept
	if due {
		c.puts = 0
	}
	c.mu.Unlock()
	if !due {
		return
	}
	live := keep()
	d, err := c.root.Open(".")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		id, err := chunk.ParseID(n)
		kept := strings.HasPrefix(n, latestPrefix) || strings.HasPrefix(n, objectPrefix)
		if err == nil && live[id] || kept && !strings.Contains(n, ".tmp") {
			continue
		}
		_ = c.root.Remove(n)
	}
	c.mu.Lock()
	c.kept = len(live)
	c.mu.Unlock()
}

// latestPrefix names the file holding the name of the host's latest
// committed backup of a keyspace: latest.<keyspace>.
const latestPrefix = "latest."

// latest returns the name of the host's latest committed backup of
// keyspace ks as cached, "" if it had none, and whether the cache has an
// answer. The caller checks the name, and reads the manifest from the
// store.
func (c *nodeCache) latest(ks string) (string, bool) {
	name, ok := cachefile.Read(c.root, latestPrefix+ks, maxLatestFile)
	return string(name), ok
}

// maxLatestFile bounds a latest.<keyspace> file: a backup name is far
// shorter.
const maxLatestFile = 1 << 10

// setLatest caches the name of the host's latest committed backup of
// keyspace ks ("": it has none), best effort.
func (c *nodeCache) setLatest(ks, name string) {
	cachefile.Write(c.root, latestPrefix+ks, []byte(name))
}

// objectPrefix names the file holding the manifest object of the host's
// latest committed backup of a keyspace, with the sweep generation under
// which it was seen committed (gc.Session.Generation): object.<keyspace>,
//
//	<backup name>\n<generation stamp>\n<BLAKE3 of the object, hex>\n<object>
//
// A backup whose session lists the same generation reads the object from
// here instead of the store: no pack was deleted since it was seen
// committed, so its chunks are stored (docs/design.md §4.2, W1′).
const objectPrefix = "object."

// maxObjectFile bounds an object.<keyspace> file: a manifest object is at
// most 1 MiB.
const maxObjectFile = 2 << 20

// object returns the cached manifest object of backup name of keyspace ks
// if it was seen committed under sweep generation gen ("" never matches)
// and its bytes match their recorded hash.
func (c *nodeCache) object(ks, name, gen string) ([]byte, bool) {
	if gen == "" {
		return nil, false
	}
	b, ok := cachefile.Read(c.root, objectPrefix+ks, maxObjectFile)
	if !ok {
		return nil, false
	}
	head := name + "\n" + gen + "\n"
	if !strings.HasPrefix(string(b), head) {
		return nil, false
	}
	b = b[len(head):]
	sum, obj, ok := strings.Cut(string(b), "\n")
	if !ok || sum != chunk.Sum([]byte(obj)).String() {
		return nil, false
	}
	return []byte(obj), true
}

// setObject caches the manifest object of backup name of keyspace ks,
// seen committed under sweep generation gen, best effort; with gen "" it
// only removes an older copy.
func (c *nodeCache) setObject(ks, name, gen string, obj []byte) {
	if gen == "" || strings.ContainsRune(name, '\n') || strings.ContainsRune(gen, '\n') {
		_ = c.root.Remove(objectPrefix + ks)
		return
	}
	b := make([]byte, 0, len(name)+len(gen)+68+len(obj))
	b = append(b, name+"\n"+gen+"\n"+chunk.Sum(obj).String()+"\n"...)
	cachefile.Write(c.root, objectPrefix+ks, append(b, obj...))
}

// close releases the folder.
func (c *nodeCache) close() {
	if c != nil {
		c.root.Close()
	}
}
