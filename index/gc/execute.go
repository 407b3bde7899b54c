package gc

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// Report says what an executed plan did.
type Report struct {
	Blocked         []string // why nothing was condemned or deleted, if so
	Withdrawn       []string // manifests never committed, removed
	Repaired        int      // commit markers written for dead sessions
	Condemned       int      // packs condemned by this collection
	CondemnedBytes  int64    // their bytes
	Deleted         int      // packs deleted (from this or earlier condemned sets)
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

// Execute carries out the plan, in this order, renewing the purge lease
// before every step that deletes or condemns and stopping if it is lost:
//
//  1. settle dead sessions: write the commit markers their objects list,
//     withdraw the manifests they never committed, remove condemned-set
//     debris and long-revoked (or, exclusive, all) session objects;
//  2. if the plan is blocked (an unreadable index file or orphan, a
//     referenced chunk with no copy), stop: nothing is condemned or deleted;
//  3. repack: copy the referenced chunks of sparse packs into new packs
//     and index them, so the old packs hold no kept chunk;
//  4. condemn the dead packs (and the repacked ones) in a new condemned
//     set — nothing is deleted yet;
//  5. sweep every open set at least Grace old that every session listed
//     after the set became visible has acknowledged — a stale session
//     counts as gone only once this purge has revoked it by
//     compare-and-swap: after a fresh mark, keep ("resurrect") any of its
//     packs now holding the only copy of a referenced chunk, delete the
//     rest, rewrite the index files naming them (new file first), and
//     delete the set (header first);
//  6. merge the index files of hosts that have many.
//
// A crash at any step leaves a store the next collection finishes:
// deletions repeat harmlessly, and a set is deleted only after its packs
// and their index entries are gone.
func (p *Plan) Execute(ctx context.Context) (Report, error) {
	defer p.Close()
	c := p.c
	log := c.log()
	rep := Report{Lost: len(p.Lost), Blocked: p.Blocked}
	if err := p.settleSessions(ctx, &rep); err != nil {
		return rep, err
	}
	if len(p.Blocked) > 0 {
		log.Warn("purge deletes nothing", "why", p.Blocked[0], "reasons", len(p.Blocked))
		return rep, nil
	}
	if err := p.reindex(ctx); err != nil {
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
	sets := slices.Clone(p.Sweep)
	rep.Waiting = slices.Clone(p.Waiting)
	if len(condemn) > 0 {
		s, err := writeCondemned(ctx, c.Store, condemn, condemnBytes, c.renew)
		if err != nil {
			return rep, err
		}
		rep.Condemned, rep.CondemnedBytes = len(condemn), condemnBytes
		if c.Opts.WithDefaults().Grace == 0 {
			sets = append(sets, s)
		} else {
			rep.Waiting = append(rep.Waiting, Waiting{Set: s, Reason: "condemned now, grace is " + c.Opts.WithDefaults().Grace.String()})
		}
		log.Info("packs condemned", "set", s.ID, "packs", len(condemn), "bytes", condemnBytes)
	}
	if len(sets) > 0 {
		if err := p.sweepSets(ctx, sets, &rep); err != nil {
			return rep, err
		}
	}
	if len(p.StaleIndex) > 0 {
		n, err := c.rewriteIndex(ctx, p.StaleIndex, p.stalePacks)
		rep.IndexRewritten += n
		if err != nil {
			return rep, err
		}
	}
	if err := c.mergeIndex(ctx, &rep); err != nil {
		return rep, err
	}
	if p.Scanned && len(rep.Blocked) == 0 {
		return rep, recordScan(ctx, c.Store, p.scanned)
	}
	return rep, nil
}

func (c *Collector) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// renew renews the purge lease, if the collector has one.
func (c *Collector) renew(ctx context.Context) error {
	if c.Lease == nil {
		return nil
	}
	return c.Lease.Renew(ctx)
}

// reindex writes an index file naming the unindexed packs that keep a
// referenced chunk, so readers need not find them from their headers.
func (p *Plan) reindex(ctx context.Context) error {
	return p.c.indexPacks(ctx, p.Reindex)
}

// indexOrphans writes an index file naming the orphan packs (read from
// their headers) that keep a referenced chunk.
func (c *Collector) indexOrphans(ctx context.Context, l *ledger, live []bool) error {
	var orphans []*PackState
	for n := l.indexed; n < len(l.packs); n++ {
		if live[n] && l.packs[n].fromHeader() {
			orphans = append(orphans, l.state(uint32(n)))
		}
	}
	if len(orphans) > 0 {
		if err := c.renew(ctx); err != nil {
			return err
		}
	}
	return c.indexPacks(ctx, orphans)
}

// indexPacks writes one index file (of RepairHost) naming packs.
func (c *Collector) indexPacks(ctx context.Context, packs []*PackState) error {
	if len(packs) == 0 {
		return nil
	}
	recs := make([]index.PackRecord, 0, len(packs))
	for _, ps := range packs {
		entries, size := ps.Entries, ps.Size
		if entries == nil {
			// A purge does not keep the headers it read: read again.
			var err error
			if entries, size, err = pack.ReadHeader(ctx, c.Store, pack.Key(ps.ID)); err != nil {
				return fmt.Errorf("index unindexed pack %s: %w", ps.ID, err)
			}
		}
		recs = append(recs, index.PackRecord{ID: ps.ID, Size: size, Entries: entries})
	}
	if _, err := c.putIndexFile(ctx, RepairHost, recs); err != nil {
		return fmt.Errorf("index unindexed packs: %w", err)
	}
	return nil
}

// RepairHost names the index files the collector and repair-index write
// for packs that no other index file names (index/<host>/…).
const RepairHost = "repair"

// settleSessions writes the markers dead sessions committed, withdraws the
// manifests they never will, removes debris and forgotten sessions, and
// revokes stale ones.
func (p *Plan) settleSessions(ctx context.Context, rep *Report) error {
	c := p.c
	st := c.Store
	if len(p.Repair)+len(p.Withdraw)+len(p.Debris)+len(p.Forget)+len(p.Lone) > 0 {
		if err := c.renew(ctx); err != nil {
			return err
		}
	}
	// The markers of each dead session's commits, one a commit, from the
	// hashes its object records.
	var sessions []string
	repair := map[string][]manifest.Commit{}
	for _, r := range p.Repair {
		// The manifest was listed before the sessions; a marker must never
		// outlive it, so look again right before writing one.
		key, _ := manifest.Key(r.Name)
		if _, err := st.Stat(ctx, key); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if _, ok := repair[r.Session]; !ok {
			sessions = append(sessions, r.Session)
		}
		repair[r.Session] = append(repair[r.Session], manifest.Commit{Name: r.Name, Hash: r.Hash})
	}
	for _, id := range sessions {
		written, err := manifest.PutCommits(ctx, st, repair[id], id)
		rep.Repaired += len(written)
		if err != nil {
			return err
		}
	}
	for _, n := range p.Lone {
		key, _ := manifest.Key(n)
		if _, err := st.Stat(ctx, key); !errors.Is(err, fs.ErrNotExist) {
			continue // written since the listing, or unknown: leave it
		}
		// Out of its commit's markers: the others' stay.
		if err := manifest.DeleteCommit(ctx, st, n); err != nil {
			return fmt.Errorf("remove removed backup %s from its commit marker: %w", n, err)
		}
	}
	for _, n := range p.Withdraw {
		if err := manifest.Delete(ctx, st, n); err != nil {
			return fmt.Errorf("withdraw uncommitted backup: %w", err)
		}
		rep.Withdrawn = append(rep.Withdrawn, n)
		c.log().Info("uncommitted backup withdrawn", "backup", n)
	}
	for _, k := range p.Debris {
		if err := st.Delete(ctx, k); err != nil {
			return fmt.Errorf("remove condemned-set debris %s: %w", k, err)
		}
	}
	for _, s := range p.Forget {
		if err := st.Delete(ctx, s.Key); err != nil {
			return fmt.Errorf("remove session %s: %w", s.Key, err)
		}
	}
	return p.revokeStale(ctx, rep)
}

// revokeStale revokes the sessions not renewed within the lease, by
// compare-and-swap on the ETag they were listed with: their processes
// died or stopped, and revoked, their uncommitted backups can be withdrawn
// and their objects forgotten by later purges. One renewed since is left.
func (p *Plan) revokeStale(ctx context.Context, rep *Report) error {
	if !p.c.Opts.cas() || hole.On(hole.StaleNotRevoked) {
		return nil
	}
	for _, ss := range p.Stale {
		if err := p.c.renew(ctx); err != nil {
			return err
		}
		ok, err := revoke(ctx, p.c.Store, ss)
		if err != nil {
			return fmt.Errorf("revoke stale session %s: %w", ss.Key, err)
		}
		if ok {
			rep.RevokedSessions = append(rep.RevokedSessions, ss.Key)
			p.c.log().Warn("revoked stale session", "session", ss.Key, "renewed", ss.Renewed)
		}
	}
	return nil
}

// sweepSets sweeps the sets whose sessions allow it now: it lists the
// sessions (after every set is visible), revokes the stale ones that have
// not acknowledged a set, and sweeps the sets every remaining session has
// acknowledged.
func (p *Plan) sweepSets(ctx context.Context, sets []CondemnedSet, rep *Report) error {
	c := p.c
	o := c.Opts.WithDefaults()
	now, err := StoreNow(ctx, c.Store)
	if err != nil {
		return err
	}
	sessions, err := ListSessions(ctx, c.Store, now, o.Lease)
	if err != nil {
		return err
	}
	gone := map[string]bool{} // sessions that may be ignored: revoked, by us or before
	var ready []CondemnedSet
	for _, s := range sets {
		why, err := p.blockers(ctx, s, sessions, gone, rep)
		if err != nil {
			return err
		}
		if why != "" {
			rep.Waiting = append(rep.Waiting, Waiting{Set: s, Reason: why})
			continue
		}
		ready = append(ready, s)
	}
	if len(ready) == 0 {
		return nil
	}
	return c.sweep(ctx, ready, rep, p.Scanned)
}

// blockers says why set s cannot be swept yet ("" if it can): a session
// that has not acknowledged it and is neither revoked nor revocable now.
func (p *Plan) blockers(ctx context.Context, s CondemnedSet, sessions []SessionInfo, gone map[string]bool, rep *Report) (string, error) {
	if s.Doomed {
		return "", nil // a sweep that was allowed began it: finish it
	}
	o := p.c.Opts.WithDefaults()
	for _, ss := range sessions {
		switch {
		case slices.Contains(ss.Acked, s.ID), gone[ss.Key]:
			continue
		case ss.State == Revoked && o.cas():
			gone[ss.Key] = true
			continue
		case hole.On(hole.ClockExemption) && !ss.Started.Before(s.Time):
			continue // the hole: trusts a writer's clock
		case !ss.Stale:
			return fmt.Sprintf("session %s has not acknowledged it yet", ss.Key), nil
		case hole.On(hole.StaleNotRevoked):
			continue // the hole: ignores a stale session without revoking it
		case !o.cas():
			return fmt.Sprintf("session %s is stale and has not acknowledged it; this store cannot revoke sessions, so it waits until the session ends (or run purge --exclusive when no other cassback process runs)", ss.Key), nil
		}
		if err := p.c.renew(ctx); err != nil {
			return "", err
		}
		ok, err := revoke(ctx, p.c.Store, ss)
		if err != nil {
			return "", fmt.Errorf("revoke stale session %s: %w", ss.Key, err)
		}
		if !ok {
			return fmt.Sprintf("session %s renewed while being revoked", ss.Key), nil
		}
		gone[ss.Key] = true
		rep.RevokedSessions = append(rep.RevokedSessions, ss.Key)
		p.c.log().Warn("revoked stale session", "session", ss.Key, "renewed", ss.Renewed)
	}
	return "", nil
}

// deadAfterRepack looks at the store again after a repack (with the
// plan's references) and returns the packs that keep no chunk now that
// the repacked ones are avoided.
func (p *Plan) deadAfterRepack(ctx context.Context) ([]chunk.ID, int64, error) {
	l, _, _, err := p.c.look(ctx, nil, p.refs, scan{full: p.Scanned})
	if err != nil {
		return nil, 0, err
	}
	defer l.close()
	l.forget(doomedPacks(p.Condemned))
	condemned := packsOf(p.Condemned)
	avoid := maps.Clone(condemned)
	for _, ps := range p.Repack {
		avoid[ps.ID] = true
	}
	k, err := l.keepers(p.refs, avoid)
	if err != nil {
		return nil, 0, err
	}
	if why := blocked(l, k.lost, nil); len(why) > 0 {
		return nil, 0, fmt.Errorf("purge stops after repacking: %s", why[0])
	}
	dead, n := deadPacks(l, k.live, condemned, nil, p.young)
	return dead, n, nil
}

// repack copies the referenced chunks of the plan's sparse packs into new
// packs. The old packs then hold no kept chunk and are condemned like any
// dead pack.
func (p *Plan) repack(ctx context.Context) error {
	c := p.c
	if err := c.renew(ctx); err != nil {
		return err
	}
	// A fresh index that knows every pack except the sparse and condemned
	// ones, so the writer stores each kept chunk exactly once.
	idx := index.New()
	if _, err := idx.Load(ctx, c.Store, c.Cache.Dir()); err != nil {
		return err
	}
	var avoid []chunk.ID
	for _, ps := range p.Repack {
		avoid = append(avoid, ps.ID)
	}
	avoid = append(avoid, slices.Collect(maps.Keys(packsOf(p.Condemned)))...)
	idx.Exclude(avoid)
	w, err := index.NewWriter(ctx, c.Store, idx, c.Config, index.WriterOptions{Host: c.Host, CacheDir: c.Cache.Dir(),
		Pad: c.Opts.HideSizes, Spread: c.Opts.HideSizes})
	if err != nil {
		return err
	}
	pk := w.NewPacker()
	for _, ps := range p.Repack {
		var ids []chunk.ID
		for _, e := range ps.Entries {
			ids = append(ids, e.ID) // its referenced chunks (sparsePacks)
		}
		src := index.New()
		src.Add(index.PackRecord{ID: ps.ID, Size: ps.Size, Entries: ps.Entries})
		err := index.Fetch(ctx, c.Store, src, ids, index.FetchOptions{Parallel: cmp.Or(c.Parallel, 4), Namer: c.Config.Chunker.Namer}, func(id chunk.ID, data []byte, err error) error {
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
// unneeded, then the index entries naming them, then the sets. Before it
// deletes anything it writes each set's doom list; a set that already has
// one (a purge stopped midway) is finished exactly as that list says.
// Without a full scan (full false) the fresh mark reads the headers of the
// sets' unindexed packs only. Before any doom list is written the packs
// kept instead of the doomed ones are confirmed in the store, their
// headers read (ledger.confirm): without a full scan a keeper found
// missing or damaged, or a referenced chunk in no known pack, makes the
// sweep look again with one; with one, a damaged keeper counts as no copy
// and the keepers are chosen again.
func (c *Collector) sweep(ctx context.Context, ready []CondemnedSet, rep *Report, full bool) error {
	for {
		again, err := c.sweepOnce(ctx, ready, rep, full)
		if err != nil || again == "" {
			return err
		}
		c.log().Info("sweep lists every pack", "why", again)
		// The index files were wrong where the sweep looked (a pack gone
		// or damaged that they name): the next purge lists the packs
		// too, and its plan rewrites the index files naming packs gone,
		// which a sweep does not; otherwise every purge until the next
		// scan condemns the same packs again and resurrects them.
		if err := c.Store.Delete(ctx, scanKey); err != nil {
			return fmt.Errorf("remove %s: %w", scanKey, err)
		}
		full = true
	}
}

// sweepOnce is one look and sweep; it returns why the look must be made
// again with a full scan ("" if it need not).
func (c *Collector) sweepOnce(ctx context.Context, ready []CondemnedSet, rep *Report, full bool) (string, error) {
	l, refs, unreadable, err := c.look(ctx, c.Skip, nil, scan{full: full, extra: packsOf(ready)})
	if err != nil {
		return "", err
	}
	defer l.close()
	defer refs.close()
	all, _, err := ListCondemned(ctx, c.Store, nil)
	if err != nil {
		return "", err
	}
	l.forget(doomedPacks(all))
	var k kept
	var dooms [][]chunk.ID
	resurrected := 0
	for {
		if k, err = l.keepers(refs, packsOf(ready)); err != nil {
			return "", err
		}
		if !full && len(k.lost) > 0 {
			return fmt.Sprintf("%d referenced chunks in no indexed pack", len(k.lost)), nil
		}
		if why := blocked(l, k.lost, unreadable); len(why) > 0 {
			rep.Blocked = append(rep.Blocked, why...)
			return "", nil
		}
		var dying map[chunk.ID]bool
		dooms, dying, resurrected = doomsOf(l, k, ready)
		if hole.On(hole.UnconfirmedKeepers) && !full {
			break
		}
		bad, err := l.confirm(ctx, refs, k, dying)
		if err != nil {
			return "", err
		}
		if len(bad) == 0 {
			break
		}
		if !full {
			return fmt.Sprintf("%d packs kept for referenced chunks are missing or damaged, first %s", len(bad), bad[0]), nil
		}
		// Listed at their size, yet damaged: no copy counts in them, and
		// the keepers are chosen again (each round spoils a keeper, so
		// the rounds end).
		c.log().Warn("packs kept for referenced chunks are damaged: run validate", "packs", len(bad), "pack", bad[0])
		l.spoil(bad)
	}
	rep.Resurrected += resurrected
	// An orphan the fresh mark keeps as a chunk's copy is indexed before
	// any pack is deleted: the deletions may take the chunk's indexed copy,
	// and the index files naming it (long-mode seed 1092207).
	if err := c.indexOrphans(ctx, l, k.live); err != nil {
		return "", err
	}
	var del []chunk.ID
	for i, s := range ready {
		doom := dooms[i]
		if !s.Doomed {
			if err := c.renew(ctx); err != nil {
				return "", err
			}
			// Written before the first deletion; a list another purge
			// wrote since this sweep listed the sets stops it before it
			// deletes anything (ErrDoomRace).
			if doom, err = writeDoom(ctx, c.Store, s, doom, c.Opts.cas()); errors.Is(err, ErrDoomRace) {
				rep.Blocked = append(rep.Blocked, err.Error()+"; run purge again")
				return "", nil
			} else if err != nil {
				return "", err
			}
		}
		del = append(del, doom...)
	}
	slices.SortFunc(del, chunk.Compare)
	del = slices.Compact(del)
	if len(del) > 0 {
		// After the fresh mark, before the first deletion: a writer whose
		// cache saw a manifest committed under the old generation reads
		// it again (generation.go).
		if err := c.renew(ctx); err != nil {
			return "", err
		}
		if !hole.On(hole.StaleGeneration) {
			if err := advanceGeneration(ctx, c.Store, c.Opts.cas()); err != nil {
				return "", err
			}
		}
	}
	if err := c.deletePacks(ctx, del); err != nil {
		return "", err
	}
	gone := map[chunk.ID]bool{}
	for _, id := range del {
		gone[id] = true
		rep.Deleted++
		if n, ok := l.find(id); ok {
			rep.DeletedBytes += l.packs[n].StoreSize
		}
	}
	n, err := c.dropFromIndex(ctx, l, gone)
	rep.IndexRewritten += n
	if err != nil {
		return "", err
	}
	for _, s := range ready {
		if err := c.renew(ctx); err != nil {
			return "", err
		}
		if err := deleteCondemned(ctx, c.Store, s); err != nil {
			return "", err
		}
	}
	return "", nil
}

// doomsOf works out, before any doom list is written, what each ready set
// dooms (its list, if it has one; else its packs that keep no chunk), the
// packs all of them doom, and how many of the sets' packs are kept.
func doomsOf(l *ledger, k kept, ready []CondemnedSet) (dooms [][]chunk.ID, dying map[chunk.ID]bool, resurrected int) {
	live := func(id chunk.ID) bool { n, ok := l.find(id); return ok && k.live[n] }
	dooms = make([][]chunk.ID, len(ready))
	dying = map[chunk.ID]bool{}
	for i, s := range ready {
		dooms[i] = s.Doom
		if !s.Doomed {
			dooms[i] = nil
			for _, id := range s.Packs {
				if live(id) {
					resurrected++
				} else {
					dooms[i] = append(dooms[i], id)
				}
			}
		}
		for _, id := range dooms[i] {
			dying[id] = true
		}
	}
	return dooms, dying, resurrected
}

// deleteBatch is how many packs are deleted between two renewals of the
// purge lease (and at most per S3 DeleteObjects request).
const deleteBatch = 1000

// deletePacks deletes packs, in batches where the store can (S3 deletes up
// to 1,000 keys per request), else one by one, renewing the lease before
// each batch.
func (c *Collector) deletePacks(ctx context.Context, ids []chunk.ID) error {
	bd, batched := c.Store.(interface {
		DeleteMany(context.Context, []string) error
	})
	for start := 0; start < len(ids); start += deleteBatch {
		if err := c.renew(ctx); err != nil {
			return err
		}
		batch := ids[start:min(start+deleteBatch, len(ids))]
		keys := make([]string, len(batch))
		for i, id := range batch {
			keys[i] = pack.Key(id)
		}
		if batched {
			if err := bd.DeleteMany(ctx, keys); err != nil {
				return fmt.Errorf("delete %d condemned packs: %w", len(keys), err)
			}
			continue
		}
		for i, k := range keys {
			if err := c.Store.Delete(ctx, k); err != nil {
				return fmt.Errorf("delete pack %s: %w", batch[i], err)
			}
		}
	}
	return nil
}

// dropFromIndex replaces every index file naming a deleted pack by one
// without it: the new file is written before the old one is deleted.
func (c *Collector) dropFromIndex(ctx context.Context, l *ledger, gone map[chunk.ID]bool) (int, error) {
	return c.rewriteIndex(ctx, filesNaming(l, gone), gone)
}

// filesNaming returns the keys of the index files the ledger read that
// name a pack of packs.
func filesNaming(l *ledger, packs map[chunk.ID]bool) []string {
	var keys []string
	for _, f := range l.files {
		if slices.ContainsFunc(f.Packs, func(p uint32) bool { return packs[l.packs[p].ID] }) {
			keys = append(keys, f.Key)
		}
	}
	return keys
}

// rewriteIndex replaces each index file of keys by one without the packs
// of gone (new file first), reading it again from the store.
func (c *Collector) rewriteIndex(ctx context.Context, keys []string, gone map[chunk.ID]bool) (int, error) {
	n := 0
	for _, key := range keys {
		if err := c.renew(ctx); err != nil {
			return n, err
		}
		recs, err := index.ReadFile(ctx, c.Store, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("rewrite index file %s: %w", key, err)
		}
		keep := slices.DeleteFunc(recs, func(r index.PackRecord) bool { return gone[r.ID] })
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
	if err := c.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return key, err
	}
	c.Cache.putIndexFile(key, b)
	return key, nil
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
	byHost := map[string][]string{}
	if err := c.Store.List(ctx, "index/", func(i remote.Info) error {
		byHost[hostOf(i.Key)] = append(byHost[hostOf(i.Key)], i.Key)
		return nil
	}); err != nil {
		return fmt.Errorf("list index files: %w", err)
	}
	for _, host := range slices.Sorted(maps.Keys(byHost)) {
		keys := byHost[host]
		if len(keys) < mergeIndexMin {
			continue
		}
		slices.Sort(keys)
		recs, ok, err := c.readHostIndex(ctx, keys)
		if err != nil {
			return fmt.Errorf("merge index files of %s: %w", host, err)
		}
		if !ok {
			continue
		}
		if err := c.renew(ctx); err != nil {
			return err
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

// readHostIndex reads a host's index files and returns the packs they
// name, each once; not ok if one of them is damaged or gone (it is not
// merged then: repair-index or the next purge deal with it).
func (c *Collector) readHostIndex(ctx context.Context, keys []string) (recs []index.PackRecord, ok bool, err error) {
	seen := map[chunk.ID]bool{}
	for _, k := range keys {
		file, err := index.ReadFile(ctx, c.Store, k)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, index.ErrDamaged) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		for _, r := range file {
			if !seen[r.ID] {
				seen[r.ID] = true
				recs = append(recs, r)
			}
		}
	}
	return recs, true, nil
}
