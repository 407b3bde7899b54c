package cassback

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
)

// RepairReport says what RepairIndex did (or, dry, would do).
type RepairReport struct {
	Reindexed  []chunk.ID         // packs no index file named, now named by the new index file
	IndexFile  string             // the index file written, "" if none
	Removed    []string           // damaged index files removed
	Kept       []string           // damaged index files kept: some orphan's header is unreadable
	BadOrphans map[chunk.ID]error // packs no index file names whose header is unreadable
}

// RepairIndex writes one index file for every stored pack that no
// readable index file names, from the packs' own headers, and then removes
// the index files that cannot be read — unless some such pack's header is
// unreadable too. It holds the purge lease, so no purge judges packs while
// it runs. Nothing is deleted that a reader could need: the packs a
// damaged index file named are indexed again first.
func (r *Repo) RepairIndex(ctx context.Context, holder string, dryRun bool) (rep RepairReport, err error) {
	lease, err := gc.AcquireLease(ctx, r.Store, holder, r.GC, false)
	if err != nil {
		return rep, err
	}
	defer func() {
		if rerr := lease.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = rerr
		}
	}()
	cat, err := gc.LoadCatalog(ctx, r.Store, true)
	if err != nil {
		return rep, err
	}
	rep.BadOrphans = cat.BadOrphans
	var recs []index.PackRecord
	for _, id := range cat.Orphans {
		if p := cat.Packs[id]; p.Stored && p.FromHeader {
			recs = append(recs, index.PackRecord{ID: id, Size: p.Size, Entries: p.Entries})
			rep.Reindexed = append(rep.Reindexed, id)
		}
	}
	damaged := slices.Sorted(maps.Keys(cat.BadIndex))
	if len(cat.BadOrphans) > 0 {
		rep.Kept, damaged = damaged, nil
	}
	if dryRun {
		rep.Removed = damaged
		return rep, nil
	}
	if len(recs) > 0 {
		if err := lease.Renew(ctx); err != nil {
			return rep, err
		}
		b, sum := index.EncodeFile(recs)
		rep.IndexFile = index.Key(gc.RepairHost, sum)
		if err := r.Store.Put(ctx, rep.IndexFile, bytes.NewReader(b), int64(len(b))); err != nil {
			return rep, fmt.Errorf("write repaired index file: %w", err)
		}
	}
	for _, k := range damaged {
		if err := lease.Renew(ctx); err != nil {
			return rep, err
		}
		if err := r.Store.Delete(ctx, k); err != nil {
			return rep, fmt.Errorf("remove damaged index file %s: %w", k, err)
		}
		rep.Removed = append(rep.Removed, k)
	}
	return rep, nil
}
