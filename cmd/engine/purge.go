package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/manifest"
)

// PurgeOptions configures a purge. Exactly one of KeepDays and Before is set.
type PurgeOptions struct {
	Host        string   // whose manifests to remove
	Keyspaces   []string // only these keyspaces' manifests; all when empty
	KeepDays    int      // remove manifests older than this many days (store time)
	Before      time.Time
	PurgeLatest bool // also remove the newest manifest of a keyspace when it is older than the cut-off
	DryRun      bool
	Holder      string // names this purge in the lease
}

// PurgeResult says what a purge removed (or, dry, would remove).
type PurgeResult struct {
	Cutoff    time.Time
	Manifests []string // removed, or candidates in a dry run
	GC        index.GCReport
}

// Purge removes the host's manifests older than the cut-off, always keeping
// the newest of each keyspace unless PurgeLatest, and never touching another
// host's; then it collects garbage: packs no remaining manifest of any host
// references are condemned, and deleted by this or a later purge once the
// protocol allows (index.Collector). One purge runs at a time (a lease).
func (r *Repo) Purge(ctx context.Context, opts PurgeOptions) (res PurgeResult, err error) {
	lease, err := index.AcquireLease(ctx, r.Store, opts.Holder, r.GC.Lease)
	if err != nil {
		return res, err
	}
	defer func() {
		if rerr := lease.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = rerr
		}
	}()
	now, err := index.StoreNow(ctx, r.Store)
	if err != nil {
		return res, err
	}
	res.Cutoff = opts.Before
	if opts.KeepDays > 0 {
		res.Cutoff = now.Add(-time.Duration(opts.KeepDays) * 24 * time.Hour)
	}
	kss := opts.Keyspaces
	if len(kss) == 0 {
		if kss, err = manifest.Keyspaces(ctx, r.Store, opts.Host); err != nil {
			return res, err
		}
	}
	for _, ks := range kss {
		var names []string
		if err := manifest.List(ctx, r.Store, opts.Host, ks, "", func(n string) error {
			names = append(names, n)
			return nil
		}); err != nil {
			return res, err
		}
		for i, n := range names {
			t, _, _, err := manifest.ParseBackupName(n)
			if err != nil || !t.Before(res.Cutoff) {
				continue
			}
			if i == len(names)-1 && !opts.PurgeLatest {
				continue // the newest backup of a keyspace stays unless asked
			}
			res.Manifests = append(res.Manifests, n)
		}
	}
	// Roots first: manifests are deleted before anything they reference.
	if !opts.DryRun {
		for _, n := range res.Manifests {
			key, _ := manifest.Key(n)
			if err := r.Store.Delete(ctx, key); err != nil {
				return res, fmt.Errorf("delete backup %s: %w", n, err)
			}
			r.Log.Info("backup removed", "backup", n)
		}
	}
	skip := map[string]bool{}
	if opts.DryRun {
		for _, n := range res.Manifests {
			skip[n] = true
		}
	}
	c := &index.Collector{
		Store: r.Store, Config: r.Config, Opts: r.GC, Host: opts.Host, Log: r.Log, DryRun: opts.DryRun,
		Mark: func(ctx context.Context) (index.RefSet, error) { return MarkAll(ctx, r, skip) },
	}
	res.GC, err = c.Run(ctx)
	return res, err
}

// MarkAll returns every chunk referenced by every manifest of every host,
// except the backups named in skip. An unreadable manifest stops it: the
// collector must never judge a pack without knowing every reference.
func MarkAll(ctx context.Context, r *Repo, skip map[string]bool) (index.RefSet, error) {
	refs := index.RefSet{}
	hosts, err := manifest.Hosts(ctx, r.Store)
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		kss, err := manifest.Keyspaces(ctx, r.Store, h)
		if err != nil {
			return nil, err
		}
		for _, ks := range kss {
			var names []string
			if err := manifest.List(ctx, r.Store, h, ks, "", func(n string) error {
				names = append(names, n)
				return nil
			}); err != nil {
				return nil, err
			}
			for _, n := range names {
				if skip[n] {
					continue
				}
				m, err := manifest.Get(ctx, r.Store, n)
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
