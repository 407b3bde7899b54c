package gc

import (
	"context"
	"errors"
	"fmt"

	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// listManifests returns the names of every manifest object in the store —
// of every host, committed or not (a manifest not yet committed may be
// about to be) — except those in skip. An object whose name is not a
// backup name is not a manifest and is passed over.
func listManifests(ctx context.Context, st remote.Store, skip map[string]bool) ([]manifest.Object, error) {
	var objs []manifest.Object
	if err := manifest.Objects(ctx, st, func(o manifest.Object) error {
		if _, _, _, err := manifest.ParseBackupName(o.Name); err == nil && !skip[o.Name] {
			objs = append(objs, o)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	return objs, nil
}

// mark adds to refs every chunk the listed manifests reference, reading
// their trees through the ledger (and the cache, if not nil), and returns
// the manifests it could not decode: while there is one, the collector
// deletes nothing (it must never judge a pack without knowing every
// reference). The manifests must have been listed before the ledger's
// index files were, so that the index files name every pack of their
// chunks.
func mark(ctx context.Context, st remote.Store, objs []manifest.Object, l *ledger, refs *refSpill, cache *Cache) (map[string]error, error) {
	bad := map[string]error{}
	// Each table's tree is read once, though the host's every backup of
	// an unchanged table names it.
	w := manifest.NewWalker()
	src := cache.Nodes(l)
	for _, o := range objs {
		err := w.WalkStored(ctx, st, o.Name, src, refs.add)
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
	if refs == nil {
		if objs, err = listManifests(ctx, c.Store, skip); err != nil {
			return nil, nil, nil, err
		}
	}
	shards := 0
	if refs != nil {
		shards = len(refs.shards)
	}
	if l, err = loadLedger(ctx, c.Store, c.memory(), c.SpillDir, shards, c.Cache, sc); err != nil {
		return nil, nil, nil, err
	}
	if refs != nil {
		return l, refs, nil, nil
	}
	// References held in memory before they are written out: about an
	// eighth of the bound (96 bytes an entry of the set).
	if refs, err = newRefSpill(l, int(max(c.memory()/8/96, 1)), c.SpillDir); err != nil {
		l.close()
		return nil, nil, nil, err
	}
	if unreadable, err = mark(ctx, c.Store, objs, l, refs, c.Cache); err != nil {
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
