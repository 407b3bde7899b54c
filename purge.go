package cassback

import (
	"context"
	"fmt"
	"time"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// PurgeOptions configures a purge. Exactly one of KeepDays and Before is set.
type PurgeOptions struct {
	Host        string   // whose manifests to remove
	Keyspaces   []string // only these keyspaces' manifests; all when empty
	KeepDays    int      // remove manifests older than this many days (store time)
	Before      time.Time
	PurgeLatest bool   // also remove the newest manifest of a keyspace when it is older than the cut-off
	DryRun      bool   // work out the manifests and the collection plan; change nothing
	Holder      string // names this purge in the lease
}

// PurgeResult says what a purge removed, or in a dry run what it would do.
type PurgeResult struct {
	Cutoff    time.Time
	Manifests []string  // removed, or candidates in a dry run
	Plan      *gc.Plan  // the collection plan (as if the candidates were gone, in a dry run)
	GC        gc.Report // what the collection did (zero in a dry run)
	// TempRemoved counts temporary files of crashed writes removed from a
	// store that keeps them (remote/local), once an hour old.
	TempRemoved int
}

// Purge removes the host's manifests older than the cut-off, always keeping
// the newest of each keyspace unless PurgeLatest, and never touching another
// host's; then it collects garbage: packs no remaining manifest of any host
// references are condemned, and deleted by this or a later purge once the
// protocol allows (gc.Plan.Execute). One purge runs at a time (a lease).
func (r *Repo) Purge(ctx context.Context, opts PurgeOptions) (res PurgeResult, err error) {
	lease, err := gc.AcquireLease(ctx, r.Store, opts.Holder, r.GC.WithDefaults().Lease)
	if err != nil {
		return res, err
	}
	defer func() {
		if rerr := lease.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = rerr
		}
	}()
	now, err := gc.StoreNow(ctx, r.Store)
	if err != nil {
		return res, err
	}
	res.Cutoff = opts.Before
	if opts.KeepDays > 0 {
		res.Cutoff = now.Add(-time.Duration(opts.KeepDays) * 24 * time.Hour)
	}
	if res.Manifests, err = r.expired(ctx, opts, res.Cutoff); err != nil {
		return res, err
	}
	c := &gc.Collector{Store: r.Store, Config: r.Config, Opts: r.GC, Host: opts.Host, Log: r.Log}
	if opts.DryRun {
		c.Skip = map[string]bool{}
		for _, n := range res.Manifests {
			c.Skip[n] = true
		}
		res.Plan, err = c.Plan(ctx)
		return res, err
	}
	// Roots first: manifests are deleted before anything they reference.
	for _, n := range res.Manifests {
		key, _ := manifest.Key(n)
		if err := r.Store.Delete(ctx, key); err != nil {
			return res, fmt.Errorf("delete backup %s: %w", n, err)
		}
		r.Log.Info("backup removed", "backup", n)
	}
	if res.Plan, err = c.Plan(ctx); err != nil {
		return res, err
	}
	if res.GC, err = res.Plan.Execute(ctx); err != nil {
		return res, err
	}
	res.TempRemoved, err = removeStaleTemp(ctx, r.Store)
	return res, err
}

// staleTempAge is how old a backend's temporary file must be before purge
// removes it: far longer than any single write takes.
const staleTempAge = time.Hour

// removeStaleTemp deletes the temporary files crashed writes left in a
// store that has them (remote/local); invisible to every reader, they only
// cost space.
func removeStaleTemp(ctx context.Context, st remote.Store) (int, error) {
	t, ok := st.(interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	})
	if !ok {
		return 0, nil
	}
	n, err := t.RemoveStaleTemp(ctx, staleTempAge)
	if err != nil {
		return n, fmt.Errorf("remove temporary files of crashed writes: %w", err)
	}
	return n, nil
}

// expired returns the host's backups older than cutoff that the purge
// removes: never the newest of a keyspace unless opts.PurgeLatest.
func (r *Repo) expired(ctx context.Context, opts PurgeOptions, cutoff time.Time) ([]string, error) {
	kss := opts.Keyspaces
	if len(kss) == 0 {
		var err error
		if kss, err = manifest.Keyspaces(ctx, r.Store, opts.Host); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, ks := range kss {
		var names []string
		if err := manifest.List(ctx, r.Store, opts.Host, ks, "", func(n string) error {
			names = append(names, n)
			return nil
		}); err != nil {
			return nil, err
		}
		for i, n := range names {
			t, _, _, err := manifest.ParseBackupName(n)
			if err != nil || !t.Before(cutoff) {
				continue
			}
			if i == len(names)-1 && !opts.PurgeLatest {
				continue // the newest backup of a keyspace stays unless asked
			}
			out = append(out, n)
		}
	}
	return out, nil
}
