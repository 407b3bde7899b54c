package gc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
)

// Report says what an executed plan did.
type Report struct {
	Condemned       int   // packs condemned by this collection
	CondemnedBytes  int64 // their bytes
	Deleted         int   // packs deleted (from this or earlier condemned sets)
	DeletedBytes    int64
	Resurrected     int // condemned packs found referenced again and kept
	Repacked        int // sparse packs whose live chunks were copied out
	RepackedBytes   int64
	IndexRewritten  int       // index files replaced because they named deleted packs
	IndexMerged     int       // small index files merged into one per host
	Waiting         []Waiting // condemned sets not yet deletable, and why
	RevokedSessions []string
	Lost            int // referenced chunks with no stored copy (validate names them)
}

// Execute carries out the plan, in this order:
//
//  1. remove long-revoked sessions; revoke stale ones by compare-and-swap;
//  2. repack: copy the referenced chunks of sparse packs into new packs
//     and index them, so the old packs hold no kept chunk;
//  3. condemn the dead packs (and the repacked ones) in a new condemned
//     set — nothing is deleted yet;
//  4. sweep every condemned set (new or older) that is at least Grace old
//     and acknowledged by every live session older than it, judged on a
//     fresh list of sessions taken after the new set is visible: after a
//     fresh mark, keep ("resurrect") any of its packs now holding the only
//     copy of a referenced chunk, delete the rest, rewrite the index files
//     naming them (new file first), and delete the set;
//  5. merge the index files of hosts that have many.
//
// A crash at any step leaves a store the next collection finishes:
// deletions repeat harmlessly, and a set is deleted only after its packs
// and their index entries are gone.
func (p *Plan) Execute(ctx context.Context) (Report, error) {
	c := p.c
	o := c.Opts.WithDefaults()
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := Report{Lost: len(p.Lost)}
	if err := p.settleSessions(ctx, &rep, log); err != nil {
		return rep, err
	}
	condemn, condemnBytes := p.Condemn, p.CondemnBytes
	if len(p.Repack) > 0 {
		if err := p.repack(ctx); err != nil {
			return rep, err
		}
		rep.Repacked, rep.RepackedBytes = len(p.Repack), p.RepackBytes
		var err error
		if condemn, condemnBytes, err = p.deadAfterRepack(ctx); err != nil {
			return rep, err
		}
	}
	sets := slices.Clone(p.Condemned)
	rep.Condemned, rep.CondemnedBytes = len(condemn), condemnBytes
	if len(condemn) > 0 {
		s, err := writeCondemned(ctx, c.Store, condemn, condemnBytes)
		if err != nil {
			return rep, err
		}
		sets = append(sets, s)
		log.Info("packs condemned", "set", s.ID, "packs", len(condemn), "bytes", condemnBytes)
	}
	// Sessions are listed again after the new set is visible.
	now, err := StoreNow(ctx, c.Store)
	if err != nil {
		return rep, err
	}
	sessions, err := ListSessions(ctx, c.Store, now, o.Lease)
	if err != nil {
		return rep, err
	}
	var ready []CondemnedSet
	for _, s := range sets {
		if why := sweepable(s, sessions, now, o.Grace); why != "" {
			rep.Waiting = append(rep.Waiting, Waiting{Set: s, Reason: why})
			continue
		}
		ready = append(ready, s)
	}
	if len(ready) > 0 {
		if err := c.sweep(ctx, ready, &rep); err != nil {
			return rep, err
		}
	}
	return rep, c.mergeIndex(ctx, &rep)
}

// settleSessions removes long-revoked sessions and revokes stale ones.
func (p *Plan) settleSessions(ctx context.Context, rep *Report, log *slog.Logger) error {
	st := p.c.Store
	for _, s := range p.Forget {
		if err := st.Delete(ctx, s.Key); err != nil {
			return fmt.Errorf("remove revoked session %s: %w", s.Key, err)
		}
	}
	for _, s := range p.Revoke {
		if err := revoke(ctx, st, s); err != nil {
			return fmt.Errorf("revoke stale session %s: %w", s.Key, err)
		}
		rep.RevokedSessions = append(rep.RevokedSessions, s.Key)
		log.Warn("revoked stale session", "session", s.Key, "renewed", s.Renewed)
	}
	return nil
}

// deadAfterRepack reloads the catalog after a repack and returns the packs
// that keep no chunk now that the repacked ones are avoided.
func (p *Plan) deadAfterRepack(ctx context.Context) ([]chunk.ID, int64, error) {
	cat, err := LoadCatalog(ctx, p.c.Store)
	if err != nil {
		return nil, 0, err
	}
	condemned := packsOf(p.Condemned)
	avoid := maps.Clone(condemned)
	for _, ps := range p.Repack {
		avoid[ps.ID] = true
	}
	live, _ := cat.keepers(p.refs, avoid)
	dead, n := deadPacks(cat, live, condemned, nil, p.young)
	return dead, n, nil
}

// repack copies the referenced chunks of the plan's sparse packs into new
// packs. The old packs then hold no kept chunk and are condemned like any
// dead pack.
func (p *Plan) repack(ctx context.Context) error {
	c := p.c
	// A fresh index that knows every pack except the sparse and condemned
	// ones, so the writer stores each kept chunk exactly once.
	idx := index.New()
	if _, err := idx.Load(ctx, c.Store, ""); err != nil {
		return err
	}
	var avoid []chunk.ID
	for _, ps := range p.Repack {
		avoid = append(avoid, ps.ID)
	}
	avoid = append(avoid, slices.Collect(maps.Keys(packsOf(p.Condemned)))...)
	idx.Exclude(avoid)
	w, err := index.NewWriter(ctx, c.Store, idx, c.Config, index.WriterOptions{Host: c.Host})
	if err != nil {
		return err
	}
	pk := w.NewPacker()
	for _, ps := range p.Repack {
		var ids []chunk.ID
		for _, e := range ps.Entries {
			if _, ok := p.refs[e.ID]; ok {
				ids = append(ids, e.ID)
			}
		}
		src := index.New()
		src.Add(index.PackRecord{ID: ps.ID, Size: ps.Size, Entries: ps.Entries})
		err := index.Fetch(ctx, c.Store, src, ids, index.FetchOptions{Parallel: 4}, func(id chunk.ID, data []byte, err error) error {
			if err != nil {
				return fmt.Errorf("repack %s: %w", ps.ID, err)
			}
			_, err = pk.Add(ctx, id, data)
			return err
		})
		if err != nil {
			return err
		}
	}
	return w.Sync(ctx)
}

// sweep deletes the packs of the ready sets that a fresh mark still finds
// unneeded, then the index entries naming them, then the sets.
func (c *Collector) sweep(ctx context.Context, ready []CondemnedSet, rep *Report) error {
	refs, err := Mark(ctx, c.Store, c.Skip)
	if err != nil {
		return err
	}
	cat, err := LoadCatalog(ctx, c.Store)
	if err != nil {
		return err
	}
	doomed := packsOf(ready)
	live, _ := cat.keepers(refs, doomed)
	var del []chunk.ID
	for id := range doomed {
		if live[id] {
			rep.Resurrected++
			delete(doomed, id)
			continue
		}
		del = append(del, id)
	}
	slices.SortFunc(del, func(a, b chunk.ID) int { return strings.Compare(a.String(), b.String()) })
	if err := c.deletePacks(ctx, del); err != nil {
		return err
	}
	for _, id := range del {
		rep.Deleted++
		if ps := cat.Packs[id]; ps != nil {
			rep.DeletedBytes += ps.StoreSize
		}
	}
	n, err := c.dropFromIndex(ctx, cat, doomed)
	rep.IndexRewritten += n
	if err != nil {
		return err
	}
	for _, s := range ready {
		if err := deleteCondemned(ctx, c.Store, s.ID); err != nil {
			return err
		}
	}
	return nil
}

// deletePacks deletes packs, in batches where the store can (S3 deletes up
// to 1,000 keys per request), else one by one.
func (c *Collector) deletePacks(ctx context.Context, ids []chunk.ID) error {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = pack.Key(id)
	}
	if bd, ok := c.Store.(interface {
		DeleteMany(context.Context, []string) error
	}); ok {
		if err := bd.DeleteMany(ctx, keys); err != nil {
			return fmt.Errorf("delete %d condemned packs: %w", len(keys), err)
		}
		return nil
	}
	for i, k := range keys {
		if err := c.Store.Delete(ctx, k); err != nil {
			return fmt.Errorf("delete pack %s: %w", ids[i], err)
		}
	}
	return nil
}

// dropFromIndex replaces every index file naming a deleted pack by one
// without it: the new file is written before the old one is deleted.
func (c *Collector) dropFromIndex(ctx context.Context, cat *Catalog, gone map[chunk.ID]bool) (int, error) {
	n := 0
	for _, key := range slices.Sorted(maps.Keys(cat.Files)) {
		packs := cat.Files[key]
		if !slices.ContainsFunc(packs, func(p chunk.ID) bool { return gone[p] }) {
			continue
		}
		var keep []index.PackRecord
		for _, id := range packs {
			if !gone[id] {
				ps := cat.Packs[id]
				keep = append(keep, index.PackRecord{ID: id, Size: ps.Size, Entries: ps.Entries})
			}
		}
		if len(keep) > 0 {
			nk, err := c.putIndexFile(ctx, hostOf(key), keep)
			if err != nil {
				return n, fmt.Errorf("rewrite index file %s: %w", key, err)
			}
			if nk == key {
				continue
			}
		}
		if err := c.Store.Delete(ctx, key); err != nil {
			return n, fmt.Errorf("delete index file %s: %w", key, err)
		}
		n++
	}
	return n, nil
}

// putIndexFile writes an index file of host naming packs and returns its key.
func (c *Collector) putIndexFile(ctx context.Context, host string, packs []index.PackRecord) (string, error) {
	b, sum := index.EncodeFile(packs)
	key := index.Key(host, sum)
	return key, c.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}

// hostOf returns the host of an index file key index/<host>/<sum>.
func hostOf(key string) string {
	host, _, _ := strings.Cut(strings.TrimPrefix(key, "index/"), "/")
	return host
}

// mergeIndexMin is how many index files a host must have before a purge
// merges them: continuous backup writes one per commit.
const mergeIndexMin = 8

// mergeIndex replaces each host's index files, when there are many, by one
// file naming the same packs. The merged file is written before the old
// ones are deleted; a reader that listed an old file and finds it gone
// lists again (Index.Load).
func (c *Collector) mergeIndex(ctx context.Context, rep *Report) error {
	cat, err := LoadCatalog(ctx, c.Store)
	if err != nil {
		return err
	}
	byHost := map[string][]string{}
	for key := range cat.Files {
		byHost[hostOf(key)] = append(byHost[hostOf(key)], key)
	}
	for _, host := range slices.Sorted(maps.Keys(byHost)) {
		keys := byHost[host]
		if len(keys) < mergeIndexMin {
			continue
		}
		slices.Sort(keys)
		seen := map[chunk.ID]bool{}
		var recs []index.PackRecord
		for _, k := range keys {
			for _, id := range cat.Files[k] {
				if !seen[id] {
					seen[id] = true
					ps := cat.Packs[id]
					recs = append(recs, index.PackRecord{ID: id, Size: ps.Size, Entries: ps.Entries})
				}
			}
		}
		nk, err := c.putIndexFile(ctx, host, recs)
		if err != nil {
			return fmt.Errorf("merge index files of %s: %w", host, err)
		}
		for _, k := range keys {
			if k == nk {
				continue
			}
			if err := c.Store.Delete(ctx, k); err != nil {
				return fmt.Errorf("merge index files of %s: delete %s: %w", host, k, err)
			}
		}
		rep.IndexMerged += len(keys)
	}
	return nil
}
