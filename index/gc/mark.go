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

// Mark returns every chunk referenced by every manifest of every host in
// the store, except the backups named in skip (a dry run of a purge marks
// as if the backups it would remove were gone). An unreadable manifest
// stops it: the collector must never judge a pack without knowing every
// reference.
func Mark(ctx context.Context, st remote.Store, skip map[string]bool) (RefSet, error) {
	refs := RefSet{}
	hosts, err := manifest.Hosts(ctx, st)
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		kss, err := manifest.Keyspaces(ctx, st, h)
		if err != nil {
			return nil, err
		}
		for _, ks := range kss {
			var names []string
			if err := manifest.List(ctx, st, h, ks, "", func(n string) error {
				names = append(names, n)
				return nil
			}); err != nil {
				return nil, err
			}
			for _, n := range names {
				if skip[n] {
					continue
				}
				m, err := manifest.Get(ctx, st, n)
				if errors.Is(err, manifest.ErrNoBackup) {
					continue // purged meanwhile
				}
				if err != nil {
					return nil, fmt.Errorf("purge stops, a manifest is unreadable (run validate): %w", err)
				}
				for ref := range m.Refs() {
					refs[ref.ID] = struct{}{}
				}
			}
		}
	}
	return refs, nil
}
