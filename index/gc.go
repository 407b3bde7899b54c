package index

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
)

// RefSet is the set of chunks some manifest references.
type RefSet map[chunk.ID]struct{}

// PackState is one pack as the index files and the store listing see it.
type PackState struct {
	ID        chunk.ID
	Size      int64        // from the index files (-1 if no index names it)
	Entries   []pack.Entry // from the first index file naming it
	IndexKeys []string     // index files naming it
	Stored    bool         // in the store listing
	StoreSize int64
	ModTime   time.Time // store time the pack was written
}

// Catalog is every index file and pack of the store, with every copy of
// every chunk: what the collector and validate work from. Memory is about
// 44 bytes per chunk copy plus 150 bytes per pack.
type Catalog struct {
	Files    map[string][]chunk.ID // index key -> packs it names
	Packs    map[chunk.ID]*PackState
	BadIndex map[string]error // index files that could not be read or decoded
	Orphans  []chunk.ID       // stored packs no index file names
	Missing  []chunk.ID       // indexed packs not in the store
}

// LoadCatalog lists and reads every index file and lists every pack.
func LoadCatalog(ctx context.Context, st remote.Store) (*Catalog, error) {
	c := &Catalog{Files: map[string][]chunk.ID{}, Packs: map[chunk.ID]*PackState{}, BadIndex: map[string]error{}}
	var keys []string
	if err := st.List(ctx, "index/", func(i remote.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		return nil, fmt.Errorf("list index files: %w", err)
	}
	for _, key := range keys {
		b, err := readAll(ctx, st, key)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read index file %s: %w", key, err)
		}
		recs, err := decodeIndexFile(b)
		if err == nil && !strings.HasSuffix(key, chunk.ID(b[len(b)-32:]).String()) {
			err = errors.New("name does not match its checksum")
		}
		if err != nil {
			c.BadIndex[key] = err
			continue
		}
		for _, r := range recs {
			c.Files[key] = append(c.Files[key], r.ID)
			p := c.Packs[r.ID]
			if p == nil {
				p = &PackState{ID: r.ID, Size: r.Size, Entries: r.Entries}
				c.Packs[r.ID] = p
			}
			p.IndexKeys = append(p.IndexKeys, key)
		}
	}
	err := st.List(ctx, "packs/", func(i remote.Info) error {
		id, err := chunk.ParseID(i.Key[strings.LastIndexByte(i.Key, '/')+1:])
		if err != nil || pack.Key(id) != i.Key {
			return nil // not a pack of ours
		}
		p := c.Packs[id]
		if p == nil {
			p = &PackState{ID: id, Size: -1}
			c.Packs[id] = p
			c.Orphans = append(c.Orphans, id)
		}
		p.Stored, p.StoreSize, p.ModTime = true, i.Size, i.ModTime
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	for id, p := range c.Packs {
		if !p.Stored {
			c.Missing = append(c.Missing, id)
		}
	}
	slices.SortFunc(c.Missing, func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
	return c, nil
}

// keepers chooses, for every referenced chunk, the pack whose copy is kept:
// among stored packs not in avoid, the one holding the most referenced
// chunks (so sparse packs empty out), ties to the lower ID. A chunk with
// no copy outside avoid keeps a copy inside it. It returns the live packs
// and the referenced chunks with no stored copy at all. Memory: one map
// entry (ID and a pack number, about 60 bytes) per referenced chunk.
func (c *Catalog) keepers(refs RefSet, avoid map[chunk.ID]bool) (live map[chunk.ID]bool, lost []chunk.ID) {
	packs := make([]*PackState, 0, len(c.Packs))
	for _, p := range c.Packs {
		if p.Stored {
			packs = append(packs, p)
		}
	}
	score := make([]int, len(packs))
	for i, p := range packs {
		for _, e := range p.Entries {
			if _, ok := refs[e.ID]; ok {
				score[i]++
			}
		}
	}
	better := func(a, b int) bool { // is packs[a] a better keeper than packs[b]
		pa, pb := packs[a], packs[b]
		if avoid[pa.ID] != avoid[pb.ID] {
			return !avoid[pa.ID]
		}
		if score[a] != score[b] {
			return score[a] > score[b]
		}
		return bytes.Compare(pa.ID[:], pb.ID[:]) < 0
	}
	best := make(map[chunk.ID]int32, len(refs))
	for i, p := range packs {
		if score[i] == 0 {
			continue
		}
		for _, e := range p.Entries {
			if _, ok := refs[e.ID]; !ok {
				continue
			}
			if cur, ok := best[e.ID]; !ok || better(i, int(cur)) {
				best[e.ID] = int32(i)
			}
		}
	}
	live = map[chunk.ID]bool{}
	for _, i := range best {
		live[packs[i].ID] = true
	}
	if len(best) < len(refs) {
		for ref := range refs {
			if _, ok := best[ref]; !ok {
				lost = append(lost, ref)
			}
		}
	}
	return live, lost
}

// GCReport says what a collection did (or, dry, would do).
type GCReport struct {
	Condemned       int   // packs condemned by this run
	CondemnedBytes  int64 // their bytes
	Deleted         int   // packs deleted (from this or earlier runs' condemned sets)
	DeletedBytes    int64
	Resurrected     int // condemned packs found referenced again and kept
	Repacked        int // sparse packs whose live chunks were copied out
	RepackedBytes   int64
	IndexRewritten  int      // index files replaced because they named deleted packs
	IndexMerged     int      // small index files merged into one per host
	Waiting         []string // condemned sets not yet deletable, and why
	RevokedSessions []string
	Lost            int // referenced chunks with no stored copy (validate names them)
}

// Collector garbage-collects packs no manifest references. It must hold
// the purge lease (AcquireLease) while it runs. See Run for the order of
// steps and docs/design.md §4 for why it is safe with concurrent backups.
type Collector struct {
	Store  remote.Store
	Config Config
	Opts   GCOptions
	Host   string // names the index files a repack writes
	Log    *slog.Logger
	// Mark returns every chunk referenced by every manifest in the store
	// now. It is called once, and again before deleting anything.
	Mark   func(ctx context.Context) (RefSet, error)
	DryRun bool
}

// Run performs one collection:
//
//  1. revoke sessions not renewed within the lease;
//  2. mark: every chunk the manifests reference; read every index file and
//     list every pack;
//  3. repack sparse live packs: copy their kept chunks into new packs and
//     index them, so the old packs become dead;
//  4. condemn dead packs — no kept chunk, not written within NewPackMargin
//     nor after the oldest live session started — in a new condemned set;
//  5. sweep every condemned set (new or older) that is at least Grace old
//     and acknowledged by every live session older than it: after a fresh
//     mark, keep ("resurrect") any of its packs now holding the only copy of
//     a referenced chunk, delete the rest, rewrite the index files naming
//     them, and delete the set.
//
// A crash at any step leaves a store the next Run finishes: deletions
// repeat harmlessly, and a set is deleted only after its packs and their
// index entries are gone.
func (c *Collector) Run(ctx context.Context) (GCReport, error) {
	var rep GCReport
	o := c.Opts.withDefaults()
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now, err := StoreNow(ctx, c.Store)
	if err != nil {
		return rep, err
	}
	// 1. Stale sessions.
	sessions, err := ListSessions(ctx, c.Store, now, o.Lease)
	if err != nil {
		return rep, err
	}
	for _, s := range sessions {
		// A revoked session whose writer had a whole further lease to
		// notice is removed: it can neither renew nor block a sweep.
		if s.State == "revoked" && now.Sub(s.Renewed) > 2*o.Lease && !c.DryRun {
			if err := c.Store.Delete(ctx, s.Key); err != nil {
				return rep, fmt.Errorf("remove revoked session %s: %w", s.Key, err)
			}
			continue
		}
		if s.Stale && s.State != "revoked" && !c.DryRun {
			if err := revoke(ctx, c.Store, s); err != nil {
				return rep, fmt.Errorf("revoke stale session %s: %w", s.Key, err)
			}
			rep.RevokedSessions = append(rep.RevokedSessions, s.Key)
			log.Warn("revoked stale session", "session", s.Key, "renewed", s.Renewed)
		}
	}
	// 2. Mark.
	refs, err := c.Mark(ctx)
	if err != nil {
		return rep, err
	}
	cat, err := LoadCatalog(ctx, c.Store)
	if err != nil {
		return rep, err
	}
	runs, err := ListRuns(ctx, c.Store)
	if err != nil {
		return rep, err
	}
	condemned := map[chunk.ID]bool{}
	for _, r := range runs {
		for _, p := range r.Packs {
			condemned[p] = true
		}
	}
	live, lost := cat.keepers(refs, condemned)
	rep.Lost = len(lost)

	// Protection: packs a live session may have written and not yet named
	// in a manifest, and packs too young to judge.
	protectFrom := now.Add(-o.NewPackMargin)
	for _, s := range sessions {
		if !s.Stale && s.State != "revoked" && !s.Started.IsZero() && s.Started.Before(protectFrom) {
			protectFrom = s.Started
		}
		if !s.Stale && s.State != "revoked" && s.Started.IsZero() {
			protectFrom = time.Time{} // unknown start: protect everything
		}
	}
	young := func(p *PackState) bool { return !p.ModTime.Before(protectFrom) }

	// 3. Repack sparse packs.
	if o.RepackThreshold < 1 && !c.DryRun {
		sparse, b, err := c.repack(ctx, cat, refs, live, condemned, young, o.RepackThreshold)
		if err != nil {
			return rep, err
		}
		rep.Repacked, rep.RepackedBytes = len(sparse), b
		if len(sparse) > 0 {
			if cat, err = LoadCatalog(ctx, c.Store); err != nil {
				return rep, err
			}
			avoid := maps.Clone(condemned)
			for _, id := range sparse {
				avoid[id] = true
			}
			live, _ = cat.keepers(refs, avoid)
		}
	}

	// 4. Condemn.
	var dead []chunk.ID
	var deadBytes int64
	for id, p := range cat.Packs {
		if !p.Stored || live[id] || condemned[id] || young(p) {
			continue
		}
		dead = append(dead, id)
		deadBytes += p.StoreSize
	}
	slices.SortFunc(dead, func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
	rep.Condemned, rep.CondemnedBytes = len(dead), deadBytes
	if c.DryRun {
		for _, r := range runs {
			rep.Waiting = append(rep.Waiting, fmt.Sprintf("condemned set %s (%d packs) waits to be swept", r.ID, len(r.Packs)))
		}
		return rep, nil
	}
	if len(dead) > 0 {
		r, err := c.condemn(ctx, dead, deadBytes)
		if err != nil {
			return rep, err
		}
		runs = append(runs, r)
		log.Info("packs condemned", "run", r.ID, "packs", len(dead), "bytes", deadBytes)
	}

	// 5. Sweep. Sessions are listed after the condemned set is visible.
	if now, err = StoreNow(ctx, c.Store); err != nil {
		return rep, err
	}
	if sessions, err = ListSessions(ctx, c.Store, now, o.Lease); err != nil {
		return rep, err
	}
	var ready []Run
	for _, r := range runs {
		if why := sweepable(r, sessions, now, o.Grace); why != "" {
			rep.Waiting = append(rep.Waiting, fmt.Sprintf("condemned set %s (%d packs): %s", r.ID, len(r.Packs), why))
			continue
		}
		ready = append(ready, r)
	}
	if len(ready) > 0 {
		refs, cat, live = nil, nil, nil // the sweep marks afresh
		if err := c.sweep(ctx, ready, &rep); err != nil {
			return rep, err
		}
	}
	return rep, c.mergeIndex(ctx, &rep)
}

// mergeIndexMin is how many index files a host must have before a purge
// merges them: continuous backup writes one per commit.
const mergeIndexMin = 8

// mergeIndex replaces each host's index files, when there are many, by one
// file naming the same packs. The merged file is written before the old
// ones are deleted; a reader that listed an old file and finds it gone
// lists again (Index.Load).
func (c *Collector) mergeIndex(ctx context.Context, rep *GCReport) error {
	cat, err := LoadCatalog(ctx, c.Store)
	if err != nil {
		return err
	}
	byHost := map[string][]string{}
	for key := range cat.Files {
		host := strings.Split(strings.TrimPrefix(key, "index/"), "/")[0]
		byHost[host] = append(byHost[host], key)
	}
	for host, keys := range byHost {
		if len(keys) < mergeIndexMin {
			continue
		}
		slices.Sort(keys)
		seen := map[chunk.ID]bool{}
		var recs []PackRecord
		for _, k := range keys {
			for _, id := range cat.Files[k] {
				if !seen[id] {
					seen[id] = true
					p := cat.Packs[id]
					recs = append(recs, PackRecord{ID: id, Size: p.Size, Entries: p.Entries})
				}
			}
		}
		b, sum := encodeIndexFile(recs)
		nk := IndexKey(host, sum)
		if err := c.Store.Put(ctx, nk, bytes.NewReader(b), int64(len(b))); err != nil {
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

// sweepable says why a condemned set cannot be deleted yet ("" if it can).
func sweepable(r Run, sessions []SessionInfo, now time.Time, grace time.Duration) string {
	if age := now.Sub(r.Time); age < grace {
		return fmt.Sprintf("condemned %v ago, grace is %v", age.Round(time.Second), grace)
	}
	for _, s := range sessions {
		if s.Stale || s.State == "revoked" {
			continue
		}
		if !s.Started.IsZero() && !s.Started.Before(r.Time) {
			continue // started after the set was visible: it excludes these packs
		}
		if !slices.Contains(s.Acked, r.ID) {
			return fmt.Sprintf("session %s has not acknowledged it yet", s.Key)
		}
	}
	return ""
}

// condemn writes a new condemned set. Its time is the store time of the
// write; it is recorded in the object by a second write.
func (c *Collector) condemn(ctx context.Context, packs []chunk.ID, n int64) (Run, error) {
	r := Run{ID: randomID(), Packs: packs, Bytes: n}
	key := condemnedPrefix + r.ID
	b, _ := json.Marshal(r)
	if err := c.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return r, fmt.Errorf("write condemned set: %w", err)
	}
	info, err := c.Store.Stat(ctx, key)
	if err != nil {
		return r, fmt.Errorf("write condemned set: %w", err)
	}
	r.Time = info.ModTime
	b, _ = json.Marshal(r)
	if err := c.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return r, fmt.Errorf("write condemned set: %w", err)
	}
	return r, nil
}

// sweep deletes the packs of the ready sets that a fresh mark still finds
// unneeded, then the index entries naming them, then the sets.
func (c *Collector) sweep(ctx context.Context, ready []Run, rep *GCReport) error {
	refs, err := c.Mark(ctx)
	if err != nil {
		return err
	}
	cat, err := LoadCatalog(ctx, c.Store)
	if err != nil {
		return err
	}
	doomed := map[chunk.ID]bool{}
	for _, r := range ready {
		for _, p := range r.Packs {
			doomed[p] = true
		}
	}
	live, _ := cat.keepers(refs, doomed)
	var del []chunk.ID
	for p := range doomed {
		if live[p] {
			rep.Resurrected++
			delete(doomed, p)
			continue
		}
		del = append(del, p)
	}
	slices.SortFunc(del, func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
	keys := make([]string, len(del))
	for i, p := range del {
		keys[i] = pack.Key(p)
	}
	// S3 deletes up to 1,000 keys per request; other stores one by one.
	if bd, ok := c.Store.(interface {
		DeleteMany(context.Context, []string) error
	}); ok {
		if err := bd.DeleteMany(ctx, keys); err != nil {
			return fmt.Errorf("delete %d condemned packs: %w", len(keys), err)
		}
	} else {
		for i, k := range keys {
			if err := c.Store.Delete(ctx, k); err != nil {
				return fmt.Errorf("delete pack %s: %w", del[i], err)
			}
		}
	}
	for _, p := range del {
		rep.Deleted++
		if ps := cat.Packs[p]; ps != nil {
			rep.DeletedBytes += ps.StoreSize
		}
	}
	// Index files naming deleted packs are replaced by files without them.
	for key, packs := range cat.Files {
		if !slices.ContainsFunc(packs, func(p chunk.ID) bool { return doomed[p] }) {
			continue
		}
		var keep []PackRecord
		for _, p := range packs {
			if !doomed[p] {
				ps := cat.Packs[p]
				keep = append(keep, PackRecord{ID: p, Size: ps.Size, Entries: ps.Entries})
			}
		}
		if len(keep) > 0 {
			b, sum := encodeIndexFile(keep)
			host := strings.Split(strings.TrimPrefix(key, "index/"), "/")[0]
			nk := IndexKey(host, sum)
			if err := c.Store.Put(ctx, nk, bytes.NewReader(b), int64(len(b))); err != nil {
				return fmt.Errorf("rewrite index file %s: %w", key, err)
			}
			if nk == key {
				continue
			}
		}
		if err := c.Store.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete index file %s: %w", key, err)
		}
		rep.IndexRewritten++
	}
	for _, r := range ready {
		if err := c.Store.Delete(ctx, condemnedPrefix+r.ID); err != nil {
			return fmt.Errorf("delete condemned set %s: %w", r.ID, err)
		}
	}
	return nil
}

// repack copies the kept chunks of sparse live packs into new packs. The
// old packs then hold no kept chunk and are condemned like any dead pack.
func (c *Collector) repack(ctx context.Context, cat *Catalog, refs RefSet, live, condemned map[chunk.ID]bool, young func(*PackState) bool, threshold float64) ([]chunk.ID, int64, error) {
	var sparse []*PackState
	for id := range live {
		p := cat.Packs[id]
		if p == nil || young(p) || condemned[id] || p.Size <= 0 {
			continue
		}
		var used int64
		for _, e := range p.Entries {
			if _, ok := refs[e.ID]; ok {
				used += int64(e.Len)
			}
		}
		if float64(p.Size-used) > threshold*float64(p.Size) {
			sparse = append(sparse, p)
		}
	}
	if len(sparse) == 0 {
		return nil, 0, nil
	}
	// A fresh index that knows every pack except the sparse ones, so the
	// writer stores each kept chunk exactly once.
	idx := New()
	if _, err := idx.Load(ctx, c.Store, ""); err != nil {
		return nil, 0, err
	}
	var avoid []chunk.ID
	for _, p := range sparse {
		avoid = append(avoid, p.ID)
	}
	for id := range condemned {
		avoid = append(avoid, id)
	}
	idx.Exclude(avoid)
	w, err := NewWriter(ctx, c.Store, idx, c.Config, WriterOptions{Host: c.Host})
	if err != nil {
		return nil, 0, err
	}
	pk := w.NewPacker()
	var bytesIn int64
	for _, p := range sparse {
		var ids []chunk.ID
		for _, e := range p.Entries {
			if _, ok := refs[e.ID]; ok {
				ids = append(ids, e.ID)
			}
		}
		src := New()
		src.Add(PackRecord{ID: p.ID, Size: p.Size, Entries: p.Entries})
		err := Fetch(ctx, c.Store, src, ids, FetchOptions{Parallel: 4}, func(id chunk.ID, data []byte, err error) error {
			if err != nil {
				return fmt.Errorf("repack %s: %w", p.ID, err)
			}
			_, err = pk.Add(ctx, id, data)
			return err
		})
		if err != nil {
			return nil, 0, err
		}
		bytesIn += p.StoreSize
	}
	if err := w.Sync(ctx); err != nil {
		return nil, 0, err
	}
	return avoid[:len(sparse)], bytesIn, nil
}
