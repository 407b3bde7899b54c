package gc

import (
	"context"
	"errors"
	"fmt"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// RefSet is the set of chunks some manifest references: the roots of a
// collection.
type RefSet map[chunk.ID]struct{}

// Mark returns every chunk referenced by every manifest object in the
// store — of every host, committed or not (a manifest not yet committed may
// be about to be) — except the backups named in skip, and the manifests it
// could not decode: while there is one, the collector deletes nothing (it
// must never judge a pack without knowing every reference). An object whose
// name is not a backup name is not a manifest and is passed over.
func Mark(ctx context.Context, st remote.Store, skip map[string]bool) (RefSet, map[string]error, error) {
	var names []string
	if err := manifest.Objects(ctx, st, func(o manifest.Object) error {
		if !skip[o.Name] {
			names = append(names, o.Name)
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list manifests: %w", err)
	}
	refs := RefSet{}
	bad := map[string]error{}
	for _, n := range names {
		if _, _, _, err := manifest.ParseBackupName(n); err != nil {
			continue
		}
		m, err := manifest.Get(ctx, st, n)
		if errors.Is(err, manifest.ErrNoBackup) {
			continue // purged meanwhile
		}
		if err != nil && ctx.Err() != nil {
			return nil, nil, err
		}
		if err != nil {
			bad[n] = err
			continue
		}
		for ref := range m.Refs() {
			refs[ref.ID] = struct{}{}
		}
	}
	return refs, bad, nil
}
