package gc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
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
	src := &freshSource{st: st}
	for _, n := range names {
		if _, _, _, err := manifest.ParseBackupName(n); err != nil {
			continue
		}
		m, err := manifest.Get(ctx, st, n, src)
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

// freshSource reads manifest trees through an index of every index file
// listed after the manifests were (so it names the packs of their nodes),
// loaded on first use without a cache. A node it cannot read makes its
// manifest unreadable, which stops the purge.
type freshSource struct {
	st  remote.Store
	mu  sync.Mutex
	idx *index.Index
}

func (s *freshSource) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	s.mu.Lock()
	if s.idx == nil {
		idx := index.New()
		if _, err := idx.Load(ctx, s.st, ""); err != nil {
			s.mu.Unlock()
			return err
		}
		s.idx = idx
	}
	idx := s.idx
	s.mu.Unlock()
	src := index.Source{Store: s.st, Index: idx, Parallel: 1}
	err := src.FetchChunks(ctx, ids, fn)
	if errors.Is(err, index.ErrMissing) {
		// A node in a pack no index file names (an index file was lost):
		// index the stored packs no index file names from their headers.
		if _, rerr := idx.RebuildOrphans(ctx, s.st); rerr != nil {
			return errors.Join(err, rerr)
		}
		err = src.FetchChunks(ctx, ids, fn)
	}
	return err
}
