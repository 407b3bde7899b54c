package gc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// Collector garbage-collects packs no manifest references. It must hold
// the purge lease (AcquireLease) while it executes a plan. See Plan and
// Plan.Execute for the steps, and docs/design.md §4 for why they are safe
// with concurrent backups.
type Collector struct {
	Store  remote.Store
	Config index.Config
	Opts   Options
	Host   string // names the index files a repack writes
	Log    *slog.Logger
	// Skip names backups the mark treats as removed: a dry run of a purge
	// plans as if the backups it would remove were gone.
	Skip map[string]bool
	// Lease, when set, is renewed before every destructive step; a purge
	// that lost it stops before deleting anything more.
	Lease *Lease
	// Exclusive is the operator's word that no other cassback process
	// uses the store: every session object is removed as dead. Needed on a
	// store without atomic conditional writes, where sessions cannot be
	// revoked and so block deletion until they end.
	Exclusive bool
	// Parallel is how many ranged reads a repack makes at once; default 4.
	Parallel int
	// Memory bounds what the collector holds of the store's chunks (their
	// copies and references; not the packs' records, 64 bytes each):
	// beyond it they are spilled to files under SpillDir (the system's
	// temporary folder if empty) and judged a shard at a time. Default
	// 512 MiB.
	Memory   int64
	SpillDir string
	// Cache, if not nil, keeps the index files, manifest objects and
	// tree nodes the mark reads, so that the next purge on this machine
	// reads only what was written since (OpenCache).
	Cache *Cache
	// ScanPacks makes the purge list every pack of the store, as it does
	// anyway when no purge has for Opts.ScanEvery (scanKey).
	ScanPacks bool
}

// Plan is what a collection would do, worked out from one look at the
// store. Making it changes nothing but the store clock's probe object;
// Execute carries it out, re-checking what may have changed since.
type Plan struct {
	c *Collector

	Now time.Time // store time of the look
	// Scanned says the look listed every pack (design §4.3 step 2,
	// "Scans"): orphans and indexed packs missing from the store are
	// known; else every indexed pack was assumed stored.
	Scanned bool
	// ScanWhy says why the look listed every pack, or why it did not.
	ScanWhy string
	// Blocked says why nothing may be condemned or deleted: an unreadable
	// index file or orphan pack, or a referenced chunk with no stored copy.
	Blocked []string
	// Withdraw lists manifests that were never committed and never can be:
	// their session ended, died or was revoked without committing them.
	Withdraw []string
	// Repair lists committed backups whose markers are missing, from the
	// session objects that committed them: their markers are written.
	Repair []Repair
	Forget []SessionInfo // revoked sessions whose writers had a whole further lease to notice: removed
	Stale  []SessionInfo // live sessions not renewed within the lease: revoked
	Debris []string      // shards of condemned sets without a header, and damaged sets: removed
	// Lone lists commit markers whose manifest is gone (a marker written
	// late, after its backup was removed): removed, so they never count.
	Lone      []string
	Condemned []CondemnedSet // condemned sets already open
	// Repack lists live packs with more than Opts.RepackThreshold of their
	// bytes unreferenced, each with the entries of its referenced chunks:
	// these are copied to new packs, and then the packs are condemned too.
	Repack      []*PackState
	RepackBytes int64
	// Condemn lists the packs that hold no chunk any manifest references
	// (and are old enough to judge): they go into a new condemned set.
	Condemn      []chunk.ID
	CondemnBytes int64
	// Reindex lists packs no index file names that hold the kept copy of a
	// referenced chunk: an index file is written for them.
	Reindex []*PackState
	Sweep   []CondemnedSet // open sets old enough to sweep, if their sessions allow
	Waiting []Waiting      // open sets not yet old enough
	Lost    []chunk.ID     // referenced chunks with no stored copy (validate names them)
	// StaleIndex lists index files naming packs the store no longer holds
	// (a late file of a revoked writer, a merged file a stopped compaction
	// wrote, a sweep stopped before its rewrite): they are written again
	// without them. An index file is written after its packs, and read
	// before the packs are listed, so such a pack was deleted.
	StaleIndex []string
	stalePacks map[chunk.ID]bool

	refs       *refSpill // the mark's references, for the repack's second look
	unreadable map[string]error
	scanned    scanRecord // what a full scan found
	sessions   []SessionInfo
	young      func(*packRec) bool
}

// Close removes what the plan spilled to disk. Execute closes the plan
// when it ends; a plan that is not executed must be closed.
func (p *Plan) Close() {
	if p.refs != nil {
		p.refs.close()
		p.refs = nil
	}
}

// Repair is a committed backup whose marker is missing: its name, the
// session that committed it, and its manifest's hash as the session object
// records it, which the marker names.
type Repair struct {
	Name, Session string
	Hash          manifest.Hash
}

// Waiting is a condemned set that cannot be swept yet, and why.
type Waiting struct {
	Set    CondemnedSet
	Reason string
}

// Plan looks at the store and works out a collection: settle the sessions
// (withdraw what dead ones never committed, repair the markers of what
// they did), mark every chunk the manifests reference (less c.Skip), choose
// a keeper for each, and find the sparse packs to repack, the dead packs to
// condemn and the condemned sets that may be swept.
func (c *Collector) Plan(ctx context.Context) (*Plan, error) {
	o := c.Opts.WithDefaults()
	p := &Plan{c: c}
	var err error
	if p.Now, err = StoreNow(ctx, c.Store); err != nil {
		return nil, err
	}
	if err := p.settle(ctx, o); err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for n := range c.Skip {
		skip[n] = true
	}
	for _, n := range p.Withdraw {
		skip[n] = true
	}
	if p.Scanned, p.ScanWhy, err = c.scanDue(ctx, p.Now, o); err != nil {
		return nil, err
	}
	for {
		l, k, err := p.look(ctx, skip)
		if err != nil {
			return nil, err
		}
		err = p.judge(l, k, o)
		l.close()
		if err != nil || p.Scanned {
			return p, err
		}
		why, err := p.confirmRepack(ctx)
		if err != nil {
			p.Close()
			return nil, err
		}
		if why == "" {
			return p, nil
		}
		p.Scanned, p.ScanWhy = true, why
		p.Reindex, p.Waiting, p.Sweep = nil, nil, nil // judged again
	}
}

// confirmRepack checks, where the look did not list the packs, that every
// pack the plan repacks is in the store at its indexed size, one HEAD
// each (the repack reads it anyway): it returns why the look must be made
// again with a full scan ("" if it need not). A pack lost or truncated
// outside the protocol is taken for stored between scans, and may be kept
// as its chunks' copy and repacked where a listing would keep other
// copies; the repack then fails on it, and every purge until the next
// scan with it (TestScanAttackSparsePackLost).
func (p *Plan) confirmRepack(ctx context.Context) (string, error) {
	for _, ps := range p.Repack {
		info, err := p.c.Store.Stat(ctx, pack.Key(ps.ID))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Sprintf("pack %s to repack is missing", ps.ID), nil
		case err != nil:
			return "", fmt.Errorf("check pack %s to repack: %w", ps.ID, err)
		case info.Size != ps.Size:
			return fmt.Sprintf("pack %s to repack has %d bytes, its index files say %d", ps.ID, info.Size, ps.Size), nil
		}
	}
	return "", nil
}

// look looks at the store for the plan, and chooses the keepers, avoiding
// the open condemned sets. A look without a full scan that finds a
// referenced chunk with no copy is made again with one: the copy may be in
// a pack no index file names.
func (p *Plan) look(ctx context.Context, skip map[string]bool) (*ledger, kept, error) {
	c := p.c
	for {
		l, refs, unreadable, err := c.look(ctx, skip, nil, scan{full: p.Scanned})
		if err != nil {
			return nil, kept{}, err
		}
		p.Close()
		p.refs, p.unreadable = refs, unreadable
		if p.Condemned, _, err = ListCondemned(ctx, c.Store, nil); err != nil {
			l.close()
			p.Close()
			return nil, kept{}, err
		}
		p.stalePacks = map[chunk.ID]bool{}
		for _, ps := range l.packs[:l.indexed] {
			if !ps.stored() {
				p.stalePacks[ps.ID] = true
			}
		}
		p.StaleIndex = filesNaming(l, p.stalePacks)
		l.forget(doomedPacks(p.Condemned))
		k, err := l.keepers(refs, packsOf(p.Condemned))
		if err != nil {
			l.close()
			p.Close()
			return nil, kept{}, err
		}
		if p.Scanned || len(k.lost) == 0 {
			if p.Scanned {
				p.scanned = scanRecord{}
				for _, ps := range l.packs {
					if ps.stored() {
						p.scanned.Packs++
						p.scanned.Bytes += ps.StoreSize
					}
				}
				p.scanned.Orphans = len(l.packs) - l.indexed
			}
			return l, k, nil
		}
		l.close()
		p.Scanned, p.ScanWhy = true, fmt.Sprintf("%d referenced chunks in no indexed pack", len(k.lost))
	}
}

// judge works out from the look what the plan does.
func (p *Plan) judge(l *ledger, k kept, o Options) (err error) {
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	refs, unreadable := p.refs, p.unreadable
	condemned := packsOf(p.Condemned)
	p.Lost = k.lost
	p.Blocked = blocked(l, k.lost, unreadable)
	margin := p.Now.Add(-o.NewPackMargin).UnixNano()
	p.young = func(ps *packRec) bool { return ps.ModTime >= margin }
	if len(p.Blocked) > 0 {
		return nil
	}
	if o.RepackThreshold < 1 {
		if p.Repack, p.RepackBytes, err = sparsePacks(l, refs, k, condemned, p.young, o.RepackThreshold); err != nil {
			return err
		}
	}
	repack := map[chunk.ID]bool{}
	for _, ps := range p.Repack {
		repack[ps.ID] = true
	}
	p.Condemn, p.CondemnBytes = deadPacks(l, k.live, condemned, repack, p.young)
	for n, live := range k.live {
		if ps := &l.packs[n]; live && ps.fromHeader() && !repack[ps.ID] {
			p.Reindex = append(p.Reindex, l.state(uint32(n)))
		}
	}
	for _, s := range p.Condemned {
		if age := p.Now.Sub(s.Time); age < o.Grace && !s.Doomed {
			p.Waiting = append(p.Waiting, Waiting{Set: s, Reason: fmt.Sprintf("condemned %v ago, grace is %v", age.Round(time.Second), o.Grace)})
		} else {
			p.Sweep = append(p.Sweep, s)
		}
	}
	return nil
}

// blocked says why a mark and a catalog may not be used to delete
// anything.
func blocked(l *ledger, lost []chunk.ID, unreadable map[string]error) []string {
	var why []string
	for _, n := range slices.Sorted(maps.Keys(unreadable)) {
		why = append(why, fmt.Sprintf("backup %s is unreadable (%v): run validate", n, unreadable[n]))
	}
	if !hole.On(hole.SkipBadIndex) {
		for _, k := range slices.Sorted(maps.Keys(l.Bad)) {
			why = append(why, fmt.Sprintf("index file %s is unreadable (%v): run cassback repair-index", k, l.Bad[k]))
		}
	}
	bad := slices.SortedFunc(maps.Keys(l.BadOrphans), chunk.Compare)
	for _, id := range bad {
		why = append(why, fmt.Sprintf("pack %s is in no index file and its header is unreadable (%v)", id, l.BadOrphans[id]))
	}
	if len(lost) > 0 && !hole.On(hole.SkipBadIndex) {
		why = append(why, fmt.Sprintf("%d referenced chunks have no stored copy, first %s (run validate)", len(lost), lost[0]))
	}
	return why
}

// settle lists, in this order, every manifest object, every session and
// every commit marker, and works out what the dead sessions leave behind:
// manifests never committed (to withdraw) and commits without markers (to
// repair). The order makes withdrawal safe: a manifest listed first was
// written by a session created before the session listing; if that
// session is absent from the listing it had ended (writing its markers
// first, seen by the marker listing) or was removed by a purge.
func (p *Plan) settle(ctx context.Context, o Options) error {
	st := p.c.Store
	var objects []manifest.Object
	if err := manifest.Objects(ctx, st, func(m manifest.Object) error { objects = append(objects, m); return nil }); err != nil {
		return fmt.Errorf("list manifests: %w", err)
	}
	var err error
	if p.sessions, err = ListSessions(ctx, st, p.Now, o.Lease); err != nil {
		return err
	}
	marked := map[string]bool{}
	if err := manifest.Commits(ctx, st, func(m manifest.Object) error { marked[m.Name] = true; return nil }); err != nil {
		return fmt.Errorf("list commit markers: %w", err)
	}
	stored := map[string]bool{}
	for _, obj := range objects {
		stored[obj.Name] = true
	}
	for _, n := range slices.Sorted(maps.Keys(marked)) {
		if !stored[n] {
			p.Lone = append(p.Lone, n)
		}
	}
	byID := map[string]SessionInfo{}
	for _, s := range p.sessions {
		byID[s.ID] = s
		for _, n := range s.Committed {
			// A committed backup whose manifest is gone was removed by a
			// purge since: its marker must not come back.
			if !marked[n] && stored[n] {
				p.Repair = append(p.Repair, Repair{Name: n, Session: s.ID, Hash: s.Hashes[n]})
				marked[n] = true
			}
		}
		switch {
		case p.c.Exclusive:
			p.Forget = append(p.Forget, s)
		case s.State == Revoked && p.Now.Sub(s.Renewed) > 2*o.Lease:
			p.Forget = append(p.Forget, s)
		case s.Stale && s.State != Revoked:
			p.Stale = append(p.Stale, s)
		}
	}
	for _, obj := range objects {
		if marked[obj.Name] {
			continue
		}
		withdraw, err := p.orphaned(ctx, obj.Name, byID)
		if err != nil {
			return err
		}
		if withdraw {
			p.Withdraw = append(p.Withdraw, obj.Name)
		}
	}
	if _, p.Debris, _, err = listSetKeys(ctx, st); err != nil {
		return err
	}
	damaged, err := damagedSets(ctx, st)
	p.Debris = append(p.Debris, damaged...)
	return err
}

// orphaned reports whether an uncommitted manifest can never be committed:
// its session is gone, or revoked without having committed it.
func (p *Plan) orphaned(ctx context.Context, name string, sessions map[string]SessionInfo) (bool, error) {
	if p.c.Exclusive {
		return true, nil // every session is dead, by the operator's word
	}
	m, err := manifest.GetHeader(ctx, p.c.Store, name)
	if errors.Is(err, manifest.ErrNoBackup) {
		return false, nil // removed meanwhile
	}
	if err != nil {
		return false, nil // unreadable: Mark stops the purge and says so
	}
	s, ok := sessions[m.Session]
	switch {
	case m.Session == "":
		return false, nil
	case !ok:
		return true, nil
	case s.State == Revoked && !slices.Contains(s.Committed, name):
		return true, nil
	}
	return false, nil
}

// sparsePacks returns the live packs with more than threshold of their
// bytes unreferenced, with the entries of their referenced chunks, and
// their total size.
func sparsePacks(l *ledger, refs *refSpill, k kept, condemned map[chunk.ID]bool, young func(*packRec) bool, threshold float64) ([]*PackState, int64, error) {
	want := map[uint32]bool{}
	for n, live := range k.live {
		p := &l.packs[n]
		if !live || young(p) || condemned[p.ID] || p.Size <= 0 || p.fromHeader() {
			continue
		}
		if float64(p.Size-k.used[n]) > threshold*float64(p.Size) {
			want[uint32(n)] = true
		}
	}
	if len(want) == 0 {
		return nil, 0, nil
	}
	in, err := l.referencedIn(refs, want)
	if err != nil {
		return nil, 0, err
	}
	var sparse []*PackState
	var size int64
	for _, n := range slices.Sorted(maps.Keys(want)) {
		ps := l.state(n)
		ps.Entries = in[n]
		sparse = append(sparse, ps)
		size += ps.StoreSize
	}
	return sparse, size, nil
}

// deadPacks returns the stored packs that keep no chunk, are not condemned
// already, are not to be repacked and are old enough to judge. A misfit
// keeps none: its chunks are kept elsewhere, or the plan is blocked.
func deadPacks(l *ledger, live []bool, condemned, repack map[chunk.ID]bool, young func(*packRec) bool) ([]chunk.ID, int64) {
	var dead []chunk.ID
	var n int64
	for i := range l.packs {
		p := &l.packs[i]
		if !p.stored() || live[i] || condemned[p.ID] || repack[p.ID] || young(p) {
			continue
		}
		dead = append(dead, p.ID)
		n += p.StoreSize
	}
	slices.SortFunc(dead, chunk.Compare)
	return dead, n
}
