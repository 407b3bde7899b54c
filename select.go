package cassback

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// Select returns the manifests a restore should use: the named backup, or
// else the latest manifest at or before at of each keyspace of host (only
// the given keyspaces when any are named).
func Select(ctx context.Context, st remote.Store, host, name string, keyspaces []string, at time.Time) ([]*manifest.Manifest, error) {
	return selectFrom(ctx, st, &lazySource{st: st}, host, name, keyspaces, at)
}

// Select is Select reading through the Repo's index cache.
//
// The host's manifests are read through its own index files and the
// heads of the others' (ChunksOf).
func (r *Repo) Select(ctx context.Context, host, name string, keyspaces []string, at time.Time) ([]*manifest.Manifest, error) {
	of := host
	if name != "" {
		_, _, of, _ = manifest.ParseBackupName(name)
	}
	return selectFrom(ctx, r.Store, r.ChunksOf(of), host, name, keyspaces, at)
}

func selectFrom(ctx context.Context, st remote.Store, src manifest.Chunks, host, name string, keyspaces []string, at time.Time) ([]*manifest.Manifest, error) {
	if name != "" {
		m, err := manifest.Get(ctx, st, name, src)
		if err != nil {
			return nil, err
		}
		if len(keyspaces) > 0 && !slices.Contains(keyspaces, m.Keyspace) {
			return nil, fmt.Errorf("backup %s is of keyspace %s, not %v", name, m.Keyspace, keyspaces)
		}
		return []*manifest.Manifest{m}, nil
	}
	kss := keyspaces
	if len(kss) == 0 {
		var err error
		if kss, err = manifest.BackedUpKeyspaces(ctx, st, host); err != nil {
			return nil, err
		}
		if len(kss) == 0 {
			return nil, fmt.Errorf("no backups of host %s in the store", host)
		}
	}
	var ms []*manifest.Manifest
	for _, ks := range kss {
		m, err := latest(ctx, st, src, host, ks, at)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// latest reads the newest committed backup of keyspace ks at or before at.
// A commit marker whose manifest is gone (written late, after a purge
// removed its backup) is passed over for the next older one.
func latest(ctx context.Context, st remote.Store, src manifest.Chunks, host, ks string, at time.Time) (*manifest.Manifest, error) {
	for range 8 {
		n, err := manifest.Latest(ctx, st, host, ks, at)
		if err != nil {
			return nil, err
		}
		if n == "" {
			break
		}
		m, err := manifest.Get(ctx, st, n, src)
		if !errors.Is(err, manifest.ErrNoBackup) {
			return m, err
		}
		t, _, _, _ := manifest.ParseBackupName(n)
		at = t.Add(-time.Microsecond)
	}
	return nil, fmt.Errorf("no backup of keyspace %s of host %s at or before %s", ks, host, at.UTC().Format(time.RFC3339))
}
