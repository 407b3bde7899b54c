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
// the given keyspaces when any are named). It reads their headers
// (manifest.GetHeader): Restore reads each table's files from its tree as
// it goes, so a keyspace of any size is restored a batch at a time. The
// object of a committed backup must be the one its commit marker names
// (manifest.CommittedHeader); one named that is not committed is read
// unchecked, as before it counts.
func Select(ctx context.Context, st remote.Store, host, name string, keyspaces []string, at time.Time) ([]*manifest.Manifest, error) {
	if name != "" {
		h, committed, err := manifest.Committed(ctx, st, name)
		if err != nil {
			return nil, err
		}
		var m *manifest.Manifest
		if committed {
			m, err = manifest.CommittedHeader(ctx, st, manifest.Commit{Name: name, Hash: h})
		} else {
			m, err = manifest.GetHeader(ctx, st, name)
		}
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
	var damaged []error
	for _, ks := range kss {
		m, err := latest(ctx, st, host, ks, at)
		if err != nil && (errors.Is(err, remote.ErrCorrupt) || errors.Is(err, manifest.ErrChanged)) {
			damaged = append(damaged, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	if len(damaged) > 0 {
		return ms, &DamagedError{Errs: damaged}
	}
	return ms, nil
}

// DamagedError is Select's error when the latest backups of some keyspaces
// are damaged (their manifests fail their checks): the manifests it
// returns with it are those of the other keyspaces, which may still be
// restored. The newest backup of a damaged keyspace is not passed over
// for an older one: the operator picks one by name.
type DamagedError struct{ Errs []error }

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%d keyspaces' latest backups are damaged, first: %v", len(e.Errs), e.Errs[0])
}

func (e *DamagedError) Unwrap() []error { return e.Errs }

// latest reads the newest committed backup of keyspace ks at or before at.
// A commit marker whose manifest is gone (written late, after a purge
// removed its backup) is passed over for the next older one.
func latest(ctx context.Context, st remote.Store, host, ks string, at time.Time) (*manifest.Manifest, error) {
	for range 8 {
		c, err := manifest.LatestCommit(ctx, st, host, ks, at)
		if err != nil {
			return nil, err
		}
		if c.Name == "" {
			break
		}
		m, err := manifest.CommittedHeader(ctx, st, c)
		if !errors.Is(err, manifest.ErrNoBackup) {
			return m, err
		}
		t, _, _, _ := manifest.ParseBackupName(c.Name)
		at = t.Add(-time.Microsecond)
	}
	return nil, fmt.Errorf("no backup of keyspace %s of host %s at or before %s", ks, host, at.UTC().Format(time.RFC3339))
}
