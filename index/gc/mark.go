package gc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// listManifests returns the manifest objects in the store — of every
// host, committed or not (a manifest not yet committed may be about to
// be) — except those in skip, and the keys of all it listed, skipped or
// not. An object whose name is not a backup name is not a manifest and is
// passed over.
func listManifests(ctx context.Context, st remote.Store, skip map[string]bool) (objs []manifest.Object, listed map[string]bool, _ error) {
	listed = map[string]bool{}
	if err := manifest.Objects(ctx, st, func(o manifest.Object) error {
		if _, _, _, err := manifest.ParseBackupName(o.Name); err == nil {
			listed[o.Key] = true
			if !skip[o.Name] {
				objs = append(objs, o)
			}
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list manifests: %w", err)
	}
	return objs, listed, nil
}

// listCommitted returns the hash the commit markers name for each
// committed backup: what a cached copy of its manifest object must hash
// to. A backup whose markers name two hashes (none of cassback's making)
// is left out, so its object is read from the store.
func listCommitted(ctx context.Context, st remote.Store) (map[string]manifest.Hash, error) {
	hashes := map[string]manifest.Hash{}
	twice := map[string]bool{}
	if err := manifest.Commits(ctx, st, func(o manifest.Object) error {
		if h, ok := hashes[o.Name]; ok && h != o.Hash {
			twice[o.Name] = true
		}
		hashes[o.Name] = o.Hash
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list commit markers: %w", err)
	}
	for n := range twice {
		delete(hashes, n)
	}
	return hashes, nil
}

// mark adds to refs every chunk the listed manifests reference, reading
// their trees through the ledger (and the cache, if not nil), and returns
// the manifests it could not decode: while there is one, the collector
// deletes nothing (it must never judge a pack without knowing every
// reference). The manifests must have been listed before the ledger's
// index files were, so that the index files name every pack of their
// chunks. committed gives the hash its markers name of each committed
// backup: the cache serves a manifest object only when its copy has that
// hash (Cache.manifestObject). listed holds the key of every manifest
// object listed, whose cached copies the cache keeps.
func mark(ctx context.Context, st remote.Store, objs []manifest.Object, committed map[string]manifest.Hash, listed map[string]bool, l *ledger, refs *refSpill, cache *Cache) (map[string]error, error) {
	bad := map[string]error{}
	// Each table's tree is read once, though the host's every backup of
	// an unchanged table names it.
	w := manifest.NewWalker()
	src := cache.Nodes(l, l.namer)
	for _, o := range objs {
		h, ok := committed[o.Name]
		obj, err := cache.manifestObject(ctx, st, o, h, ok)
		if err == nil {
			if err = w.Walk(ctx, obj, src, refs.add); err != nil && !strings.Contains(err.Error(), o.Name) {
				err = fmt.Errorf("manifest %s: %w", o.Name, err)
			}
		}
		if errors.Is(err, manifest.ErrNoBackup) {
			continue // purged meanwhile
		}
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		if err != nil {
			bad[o.Name] = err
			continue
		}
	}
	cache.pruneManifests(listed)
	if len(bad) == 0 {
		if err := cache.prune(); err != nil {
			return nil, err
		}
	}
	return bad, nil
}

// look lists the manifests (less skip), loads the ledger (as sc says) and
// marks: the one look at the store a plan or a sweep judges packs from.
// shards, if not 0, fixes the ledger's shards (to reuse references marked
// before, given as refs). The caller closes the ledger and the references.
func (c *Collector) look(ctx context.Context, skip map[string]bool, refs *refSpill, sc scan) (l *ledger, _ *refSpill, unreadable map[string]error, err error) {
	var objs []manifest.Object
	var listed map[string]bool
	var committed map[string]manifest.Hash
	if refs == nil {
		if objs, listed, err = listManifests(ctx, c.Store, skip); err != nil {
			return nil, nil, nil, err
		}
		// The markers after the manifests, as settle lists them, and
		// before the index files (which must come after the manifests):
		// a backup committed between the two listings is served from
		// the cache too. They are this look's own, never the settle
		// step's nor an earlier look's: a sweep's fresh mark sees the
		// markers rewritten since. What makes a copy safe is not this
		// order but its hash and the listing's stamp
		// (Cache.manifestObject). Without a cache nothing reads them.
		if c.Cache != nil {
			if committed, err = listCommitted(ctx, c.Store); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	shards := 0
	if refs != nil {
		shards = len(refs.shards)
	}
	if l, err = loadLedger(ctx, c.Store, c.memory(), c.SpillDir, shards, c.Cache, sc); err != nil {
		return nil, nil, nil, err
	}
	l.namer = c.Config.Chunker.Namer
	if refs != nil {
		return l, refs, nil, nil
	}
	// References held in memory before they are written out: about an
	// eighth of the bound (96 bytes an entry of the set).
	if refs, err = newRefSpill(l, int(max(c.memory()/8/96, 1)), c.SpillDir); err != nil {
		l.close()
		return nil, nil, nil, err
	}
	if unreadable, err = mark(ctx, c.Store, objs, committed, listed, l, refs, c.Cache); err != nil {
		refs.close()
		l.close()
		return nil, nil, nil, err
	}
	return l, refs, unreadable, nil
}

// defaultMemory bounds what a purge holds of the store's chunks.
const defaultMemory = 512 << 20

func (c *Collector) memory() int64 {
	if c.Memory > 0 {
		return c.Memory
	}
	return defaultMemory
}
