package cassback

import (
	"context"
	"errors"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// StatusOptions chooses what Status reads beyond the names of the newest
// backups. The zero value reads nothing more, with the system clock.
type StatusOptions struct {
	// Now is the clock the newest backups are judged by (default
	// time.Now): a backup counts if dated at or before the earlier of Now
	// plus an hour (a node's clock a little ahead) and the end of Now's
	// UTC day (so the cheap listing of one day finds it).
	Now time.Time
	// Sizes reads the newest manifest of every keyspace for its files and
	// bytes: one GET each, of up to the manifest's size.
	Sizes bool
	// Sessions lists the session objects (one GET each) for the live
	// sessions of every host; Lease is how recently a live one was renewed
	// (default that of gc.Options).
	Sessions bool
	Lease    time.Duration
	Threads  int // hosts, then keyspaces, looked at at once; default 8
}

// HostStatus is one host of the store: its newest backup of every keyspace
// that has a backup left.
type HostStatus struct {
	Host      string
	Keyspaces []KeyspaceStatus // by keyspace name; never empty
	Newest    time.Time        // the time of the newest of those backups
	Files     int              // with Sizes: the sum over Keyspaces
	Bytes     int64            // with Sizes: the sum over Keyspaces
	// Sessions lists, with Sessions, the host's sessions that are live:
	// not revoked and renewed within the lease. A restore session carries
	// the name of the host whose backup it reads, and a validate session
	// the --host it checks ("validate" without).
	Sessions []gc.SessionInfo
}

// KeyspaceStatus is the newest backup of one keyspace of a host.
type KeyspaceStatus struct {
	Keyspace string
	Backup   string    // the newest committed backup whose manifest is stored
	Time     time.Time // its time
	// With Sizes: the number and the sum of the sizes of the files its
	// manifest records — the keyspace's data as of that backup, what a
	// restore of it writes, not what it takes in the store (chunks are
	// shared between backups, files and hosts).
	Files int
	Bytes int64
	// Unreadable says why the manifest could not be read (with Sizes);
	// Files and Bytes are then 0.
	Unreadable string
}

// Status returns every host in the store with its newest backup of every
// keyspace, in host order. A host or keyspace with no committed backup
// whose manifest is stored is left out: some S3-compatible servers keep
// listing a "directory" (common prefix) after its last key is deleted, and
// a marker written late after a purge removed its backup does not count.
// It writes nothing to the store.
func Status(ctx context.Context, st remote.Store, o StatusOptions) ([]HostStatus, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Threads <= 0 {
		o.Threads = 8
	}
	hosts, err := manifest.Hosts(ctx, st)
	if err != nil {
		return nil, err
	}
	out := make([]HostStatus, len(hosts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Threads)
	for i, h := range hosts {
		g.Go(func() error {
			kss, err := manifest.Keyspaces(gctx, st, h)
			out[i] = HostStatus{Host: h, Keyspaces: make([]KeyspaceStatus, len(kss))}
			for j, ks := range kss {
				out[i].Keyspaces[j].Keyspace = ks
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(o.Threads)
	for i := range out {
		for j := range out[i].Keyspaces {
			g.Go(func() error { return newestOf(gctx, st, out[i].Host, o, &out[i].Keyspaces[j]) })
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out = summarize(out)
	if o.Sessions && len(out) > 0 {
		if err := addSessions(ctx, st, o, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// statusAt is the latest backup time Status counts (StatusOptions.Now).
func statusAt(now time.Time) time.Time {
	now = now.UTC()
	endOfDay := time.Date(now.Year(), now.Month(), now.Day(), 23, 59, 59, 999999000, time.UTC)
	if at := now.Add(time.Hour); at.Before(endOfDay) {
		return at
	}
	return endOfDay
}

// newestOf fills ks with the newest backup of host's keyspace, leaving
// ks.Backup "" when it has none. A commit marker whose manifest vanishes
// between the listing and the read (a purge removed it) is passed over.
func newestOf(ctx context.Context, st remote.Store, host string, o StatusOptions, ks *KeyspaceStatus) error {
	keyspace := ks.Keyspace
	at := statusAt(o.Now)
	for range 8 {
		c, err := manifest.LatestCommit(ctx, st, host, keyspace, at)
		if err != nil || c.Name == "" {
			return err
		}
		t, _, _, _ := manifest.ParseBackupName(c.Name)
		ks.Backup, ks.Time = c.Name, t
		if !o.Sizes {
			return nil
		}
		m, err := manifest.CommittedHeader(ctx, st, c)
		switch {
		case errors.Is(err, manifest.ErrNoBackup):
			at = t.Add(-time.Microsecond)
			ks.Backup = ""
			continue
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil:
			ks.Unreadable = err.Error()
			return nil
		}
		for _, tb := range m.Tables {
			ks.Files += tb.Count
			ks.Bytes += tb.Bytes
		}
		return nil
	}
	return nil
}

// summarize drops keyspaces without a backup, then hosts without a
// keyspace, and works out each host's newest backup and totals.
func summarize(hosts []HostStatus) []HostStatus {
	out := hosts[:0]
	for _, h := range hosts {
		h.Keyspaces = slices.DeleteFunc(h.Keyspaces, func(k KeyspaceStatus) bool { return k.Backup == "" })
		if len(h.Keyspaces) == 0 {
			continue
		}
		for _, k := range h.Keyspaces {
			if k.Time.After(h.Newest) {
				h.Newest = k.Time
			}
			h.Files += k.Files
			h.Bytes += k.Bytes
		}
		out = append(out, h)
	}
	return out
}

// addSessions adds every host's live sessions.
func addSessions(ctx context.Context, st remote.Store, o StatusOptions, hosts []HostStatus) error {
	lease := o.Lease
	if lease <= 0 {
		lease = gc.Options{}.WithDefaults().Lease
	}
	ss, err := gc.ListSessions(ctx, st, o.Now, lease)
	if err != nil {
		return err
	}
	for i := range hosts {
		for _, s := range ss {
			if s.Host == hosts[i].Host && !s.Stale && !s.Unparsed && s.State == gc.Live {
				hosts[i].Sessions = append(hosts[i].Sessions, s)
			}
		}
	}
	return nil
}
