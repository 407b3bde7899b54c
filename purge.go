package cassback

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/internal/hole"
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
	// Exclusive is the operator's word that no other cassback process uses
	// the store while this purge runs: needed on a store without atomic
	// conditional writes; every session object is then removed as dead.
	Exclusive bool
	Threads   int // ranged reads at once when repacking; default 4
	// Memory bounds what the purge holds of the store's chunks (their
	// copies and references): beyond it they are spilled to the cache
	// folder and judged a shard at a time (gc.Collector.Memory). Default
	// 512 MiB.
	Memory int64
	// ScanPacks lists every pack of the store, as a purge does anyway
	// when none has for gc.Options.ScanEvery (gc.Collector.ScanPacks).
	ScanPacks bool
	// Removing, if set, hears of each backup just before it is removed,
	// with the other backups of its commit the purge removes (out of the
	// commit's marker first, then their manifests): for progress reports.
	Removing func(name string)
}

// PurgeResult says what a purge removed, or in a dry run what it would do.
type PurgeResult struct {
	Cutoff    time.Time
	Manifests []string  // removed, or candidates in a dry run
	Kept      []string  // the newest backup of each keyspace, kept though older than the cut-off
	Skipped   []Skipped // backups that do not decode: never counted as the newest, never removed
	Plan      *gc.Plan  // the collection plan (as if the candidates were gone, in a dry run)
	GC        gc.Report // what the collection did (zero in a dry run)
	// TempRemoved counts temporary files of crashed writes removed from a
	// store that keeps them (remote/local), once an hour old.
	TempRemoved int
	// CacheHits and CacheMisses count the index files and tree nodes the
	// mark read from the cache folder and from the store (gc.Cache).
	CacheHits, CacheMisses int
}

// Skipped is a backup purge left alone, and why.
type Skipped struct{ Name, Why string }

// Purge removes the host's manifests older than the cut-off, always keeping
// the newest of each keyspace unless PurgeLatest, and never touching another
// host's; then it collects garbage: packs no remaining manifest of any host
// references are condemned, and deleted by this or a later purge once the
// protocol allows (gc.Plan.Execute). One purge runs at a time (a lease,
// renewed before every destructive step).
func (r *Repo) Purge(ctx context.Context, opts PurgeOptions) (res PurgeResult, err error) {
	lease, err := gc.AcquireLease(ctx, r.Store, opts.Holder, r.GC, opts.Exclusive)
	if err != nil {
		return res, err
	}
	defer func() {
		if rerr := lease.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = rerr
		}
	}()
	defer r.spawn(ctx, "purge-lease", lease.KeepAlive)()
	if err := gc.RemoveSpills(r.CacheDir); err != nil {
		r.Log.Warn("spill folders of an earlier purge not removed", "err", err)
	}
	now, err := gc.StoreNow(ctx, r.Store)
	if err != nil {
		return res, err
	}
	res.Cutoff = opts.Before
	if opts.KeepDays > 0 {
		res.Cutoff = now.Add(-time.Duration(opts.KeepDays) * 24 * time.Hour)
	}
	cache := gc.OpenCache(r.CacheDir, r.GC.Clock)
	defer func() {
		res.CacheHits, res.CacheMisses = cache.Counts()
		r.Log.Debug("purge cache", "hits", res.CacheHits, "misses", res.CacheMisses)
		cache.Close()
	}()
	if err := r.expired(ctx, opts, now, &res); err != nil {
		return res, err
	}
	c := &gc.Collector{Store: r.Store, Config: r.Config, Opts: r.GC, Host: opts.Host, Log: r.Log, Lease: lease, Exclusive: opts.Exclusive, Parallel: opts.Threads, Memory: opts.Memory, SpillDir: r.CacheDir, Cache: cache, ScanPacks: opts.ScanPacks}
	if opts.DryRun {
		c.Skip = map[string]bool{}
		for _, n := range res.Manifests {
			c.Skip[n] = true
		}
		res.Plan, err = c.Plan(ctx)
		if err == nil {
			res.Plan.Close() // what it spilled; its findings stay
		}
		return res, err
	}
	prog := r.Stats.begin("purge")
	prog.plan(int64(len(res.Manifests)), 0)
	// Roots first: backups are removed before anything they reference.
	if len(res.Manifests) > 0 {
		if err := lease.Renew(ctx); err != nil {
			return res, err
		}
	}
	// A commit at a time: its marker is rewritten once however many of
	// its backups go, and deleted without a rewrite when all go.
	groups, err := manifest.ByCommit(res.Manifests)
	if err != nil {
		return res, err
	}
	for _, ns := range groups {
		if opts.Removing != nil {
			for _, n := range ns {
				opts.Removing(n)
			}
		}
		if err := manifest.Delete(ctx, r.Store, ns...); err != nil {
			return res, err
		}
		prog.done(int64(len(ns)), 0)
		for _, n := range ns {
			r.Log.Info("backup removed", "backup", n)
		}
	}
	if res.Plan, err = c.Plan(ctx); err != nil {
		return res, err
	}
	if res.GC, err = res.Plan.Execute(ctx); err != nil {
		return res, err
	}
	prog.plan(0, res.GC.DeletedBytes) // the sweep reports its bytes when it ends
	prog.done(0, res.GC.DeletedBytes)
	res.TempRemoved, err = removeStaleTemp(ctx, r.Store)
	return res, err
}

// futureSlack is how far after the store's clock a backup's time may lie
// and still count as the newest of its keyspace: a node's clock may run a
// little ahead, but a backup from next year is not a backup from today.
const futureSlack = 24 * time.Hour

// expired works out the host's committed backups older than the cut-off
// that the purge removes. The newest backup of each keyspace — by the time
// of its decoded manifest, among the committed backups that decode and are
// not in the future — is kept unless opts.PurgeLatest; a backup that does
// not decode is reported and never counted or removed.
func (r *Repo) expired(ctx context.Context, opts PurgeOptions, now time.Time, res *PurgeResult) error {
	// From the store, not the purge's cache: the newest backup kept must
	// be one that reads from the store now.
	src := r.ChunksOf(opts.Host) // loads the host's index once, if a node is read
	// Every committed backup of the host, by keyspace in time order, with
	// its manifest's hash: one listing of its commit markers.
	committed := map[string][]manifest.Commit{}
	if err := manifest.HostCommits(ctx, r.Store, opts.Host, "", func(o manifest.Object) error {
		_, ks, _, _ := manifest.ParseBackupName(o.Name)
		committed[ks] = append(committed[ks], manifest.Commit{Name: o.Name, Hash: o.Hash})
		return nil
	}); err != nil {
		return err
	}
	kss := opts.Keyspaces
	if len(kss) == 0 {
		kss = slices.Sorted(maps.Keys(committed))
	}
	for _, ks := range kss {
		cs := committed[ks]
		newest, err := r.newest(ctx, src, cs, now, res)
		if err != nil {
			return err
		}
		for _, c := range cs {
			n := c.Name
			t, _, _, err := manifest.ParseBackupName(n)
			if err != nil || !t.Before(res.Cutoff) || slices.ContainsFunc(res.Skipped, func(s Skipped) bool { return s.Name == n }) {
				continue
			}
			if n == newest && !opts.PurgeLatest {
				res.Kept = append(res.Kept, n)
				continue // the newest backup of a keyspace stays unless asked
			}
			res.Manifests = append(res.Manifests, n)
		}
	}
	return nil
}

// newest returns the newest backup among cs (in time order) that
// decodes, is the object its marker names, and is not in the future,
// reading from the newest down; every unreadable one it passes is added to
// res.Skipped.
func (r *Repo) newest(ctx context.Context, src manifest.Chunks, cs []manifest.Commit, now time.Time, res *PurgeResult) (string, error) {
	if hole.On(hole.NewestByKey) {
		if len(cs) == 0 {
			return "", nil
		}
		return cs[len(cs)-1].Name, nil
	}
	for i := len(cs) - 1; i >= 0; i-- {
		n := cs[i].Name
		t, _, _, err := manifest.ParseBackupName(n)
		if err != nil {
			res.Skipped = append(res.Skipped, Skipped{n, err.Error()})
			continue
		}
		if t.After(now.Add(futureSlack)) {
			res.Skipped = append(res.Skipped, Skipped{n, fmt.Sprintf("dated %s, after the store's clock (%s)", t.Format(time.RFC3339), now.Format(time.RFC3339))})
			continue
		}
		m, err := checkManifest(ctx, r.Store, cs[i], src)
		if errors.Is(err, manifest.ErrNoBackup) {
			res.Skipped = append(res.Skipped, Skipped{n, "committed, but its manifest is missing"})
			continue
		}
		if err != nil && ctx.Err() != nil {
			return "", err
		}
		if err != nil {
			res.Skipped = append(res.Skipped, Skipped{n, err.Error()})
			continue
		}
		if !m.Time.Equal(t) {
			res.Skipped = append(res.Skipped, Skipped{n, "its manifest holds another time"})
			continue
		}
		return n, nil
	}
	return "", nil
}

// checkManifest reads committed backup c's header, checked against its
// marker's hash, and every table's tree from src, checked as manifest.Get
// checks them, without holding the files: a batch of leaves at a time, so
// a manifest of any size reads.
func checkManifest(ctx context.Context, st remote.Store, c manifest.Commit, src manifest.Chunks) (*manifest.Manifest, error) {
	m, err := manifest.CommittedHeader(ctx, st, c)
	if err != nil {
		return nil, err
	}
	for i := range m.Tables {
		if err := m.EachFile(ctx, src, i, nil, func(*manifest.File) error { return nil }); err != nil {
			return nil, err
		}
	}
	return m, nil
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
