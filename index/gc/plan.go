package gc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
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
}

// Plan is what a collection would do, worked out from one look at the
// store. Making it changes nothing but the store clock's probe object;
// Execute carries it out, re-checking what may have changed since.
type Plan struct {
	c *Collector

	Now       time.Time      // store time of the look
	Forget    []SessionInfo  // revoked sessions whose writers had a whole further lease to notice: removed
	Revoke    []SessionInfo  // live sessions not renewed within the lease: revoked
	Condemned []CondemnedSet // condemned sets already open
	// Repack lists live packs with more than Opts.RepackThreshold of their
	// bytes unreferenced: their referenced chunks are copied to new packs,
	// and then they are condemned too.
	Repack      []*PackState
	RepackBytes int64
	// Condemn lists the packs that hold no chunk any manifest references
	// (and are old enough to judge): they go into a new condemned set.
	Condemn      []chunk.ID
	CondemnBytes int64
	Sweep        []CondemnedSet // open sets that may be swept now
	Waiting      []Waiting      // open sets that may not be swept yet
	Lost         []chunk.ID     // referenced chunks with no stored copy (validate names them)

	refs     RefSet
	cat      *Catalog
	sessions []SessionInfo
	young    func(*PackState) bool
}

// Waiting is a condemned set that cannot be swept yet, and why.
type Waiting struct {
	Set    CondemnedSet
	Reason string
}

// Plan looks at the store and works out a collection: revoke stale
// sessions, mark every chunk the manifests reference (less c.Skip), choose
// a keeper for each, and find the sparse packs to repack, the dead packs to
// condemn and the condemned sets that may be swept.
func (c *Collector) Plan(ctx context.Context) (*Plan, error) {
	o := c.Opts.WithDefaults()
	p := &Plan{c: c}
	var err error
	if p.Now, err = StoreNow(ctx, c.Store); err != nil {
		return nil, err
	}
	if p.sessions, err = ListSessions(ctx, c.Store, p.Now, o.Lease); err != nil {
		return nil, err
	}
	for _, s := range p.sessions {
		switch {
		case s.State == Revoked && p.Now.Sub(s.Renewed) > 2*o.Lease:
			p.Forget = append(p.Forget, s)
		case s.Stale && s.State != Revoked:
			p.Revoke = append(p.Revoke, s)
		}
	}
	if p.refs, err = Mark(ctx, c.Store, c.Skip); err != nil {
		return nil, err
	}
	if p.cat, err = LoadCatalog(ctx, c.Store); err != nil {
		return nil, err
	}
	if p.Condemned, err = ListCondemned(ctx, c.Store); err != nil {
		return nil, err
	}
	condemned := packsOf(p.Condemned)
	live, lost := p.cat.keepers(p.refs, condemned)
	p.Lost = lost
	p.young = protected(p.sessions, p.Now, o.NewPackMargin)
	if o.RepackThreshold < 1 {
		p.Repack, p.RepackBytes = sparsePacks(p.cat, p.refs, live, condemned, p.young, o.RepackThreshold)
	}
	repack := map[chunk.ID]bool{}
	for _, ps := range p.Repack {
		repack[ps.ID] = true
	}
	p.Condemn, p.CondemnBytes = deadPacks(p.cat, live, condemned, repack, p.young)
	for _, s := range p.Condemned {
		if why := sweepable(s, p.sessions, p.Now, o.Grace); why != "" {
			p.Waiting = append(p.Waiting, Waiting{Set: s, Reason: why})
		} else {
			p.Sweep = append(p.Sweep, s)
		}
	}
	return p, nil
}

// protected returns the rule that spares packs a live session may have
// written and not yet named in a manifest, and packs too young to judge:
// packs written at or after the oldest live session started, or within
// margin of now.
func protected(sessions []SessionInfo, now time.Time, margin time.Duration) func(*PackState) bool {
	from := now.Add(-margin)
	for _, s := range sessions {
		if s.Stale || s.State == Revoked {
			continue
		}
		if s.Started.IsZero() {
			from = time.Time{} // unknown start: protect everything
			break
		}
		if s.Started.Before(from) {
			from = s.Started
		}
	}
	return func(p *PackState) bool { return !p.ModTime.Before(from) }
}

// sparsePacks returns the live packs with more than threshold of their
// bytes unreferenced, and their total size.
func sparsePacks(cat *Catalog, refs RefSet, live, condemned map[chunk.ID]bool, young func(*PackState) bool, threshold float64) ([]*PackState, int64) {
	var sparse []*PackState
	var n int64
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
			n += p.StoreSize
		}
	}
	slices.SortFunc(sparse, func(a, b *PackState) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return sparse, n
}

// deadPacks returns the stored packs that keep no chunk, are not condemned
// already, are not to be repacked and are old enough to judge.
func deadPacks(cat *Catalog, live, condemned, repack map[chunk.ID]bool, young func(*PackState) bool) ([]chunk.ID, int64) {
	var dead []chunk.ID
	var n int64
	for id, p := range cat.Packs {
		if !p.Stored || live[id] || condemned[id] || repack[id] || young(p) {
			continue
		}
		dead = append(dead, id)
		n += p.StoreSize
	}
	slices.SortFunc(dead, func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
	return dead, n
}

// sweepable says why a condemned set cannot be deleted yet ("" if it can).
func sweepable(s CondemnedSet, sessions []SessionInfo, now time.Time, grace time.Duration) string {
	if age := now.Sub(s.Time); age < grace {
		return fmt.Sprintf("condemned %v ago, grace is %v", age.Round(time.Second), grace)
	}
	for _, ss := range sessions {
		if ss.Stale || ss.State == Revoked {
			continue
		}
		if !ss.Started.IsZero() && !ss.Started.Before(s.Time) {
			continue // started after the set was visible: it excludes these packs
		}
		if !slices.Contains(ss.Acked, s.ID) {
			return fmt.Sprintf("session %s has not acknowledged it yet", ss.Key)
		}
	}
	return ""
}
