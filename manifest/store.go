package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/cassback/cassback/remote"
)

// Manifests live in the store under
//
//	manifests/<host>/<keyspace>/<backup name>
//
// The backup name begins with a fixed-width UTC timestamp, so within one host
// and keyspace the keys sort by time, and a day, month or year is a key
// prefix. Manifests are written once (create-only where the store supports
// it) and deleted only by purge.
const keyRoot = "manifests/"

// Key returns the store key of the manifest with the given backup name.
func Key(name string) (string, error) {
	_, ks, host, err := ParseBackupName(name)
	if err != nil {
		return "", err
	}
	return keyRoot + host + "/" + ks + "/" + name, nil
}

// ErrNoBackup reports a backup name that is not in the store.
var ErrNoBackup = errors.New("no such backup")

// Put stores m, which must be valid. It never replaces an existing manifest.
func Put(ctx context.Context, st remote.Store, m *Manifest) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	key, err := Key(m.Name)
	if err != nil {
		return err
	}
	if cs, ok := st.(remote.Conditional); ok {
		_, err := cs.PutIf(ctx, key, b, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return fmt.Errorf("write manifest %s: %w", m.Name, err)
		}
	}
	if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("write manifest %s: %w", m.Name, err)
	}
	return nil
}

// Get reads and decodes the manifest with the given backup name.
func Get(ctx context.Context, st remote.Store, name string) (*Manifest, error) {
	key, err := Key(name)
	if err != nil {
		return nil, err
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup %s: %w", name, ErrNoBackup)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	m, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, err)
	}
	if m.Name != name {
		return nil, fmt.Errorf("manifest %s: holds backup %s", name, m.Name)
	}
	return m, nil
}

// Hosts returns every host with manifests in the store.
func Hosts(ctx context.Context, st remote.Store) ([]string, error) {
	return st.ListDirs(ctx, keyRoot)
}

// Keyspaces returns every keyspace with manifests of host.
func Keyspaces(ctx context.Context, st remote.Store, host string) ([]string, error) {
	if err := remote.ValidKey(keyRoot + host); err != nil {
		return nil, fmt.Errorf("host %q: not a valid host name", host)
	}
	return st.ListDirs(ctx, keyRoot+host+"/")
}

// List calls fn with the name of each manifest of host and keyspace whose
// backup name starts with the timestamp prefix tsPrefix (for example
// "2026_11_26" for a day, "" for all), in time order.
func List(ctx context.Context, st remote.Store, host, keyspace, tsPrefix string, fn func(name string) error) error {
	prefix := keyRoot + host + "/" + keyspace + "/"
	if err := remote.ValidKey(prefix + "x"); err != nil {
		return fmt.Errorf("host %q, keyspace %q: %w", host, keyspace, err)
	}
	return st.List(ctx, prefix+tsPrefix, func(i remote.Info) error {
		return fn(strings.TrimPrefix(i.Key, prefix))
	})
}

// Latest returns the name of the newest manifest of host and keyspace taken
// at or before at, or "" if there is none. It lists the day of at first,
// then its month, then its year, then everything, so the cost grows with
// how far back the answer is, not with how many manifests exist.
func Latest(ctx context.Context, st remote.Store, host, keyspace string, at time.Time) (string, error) {
	at = at.UTC()
	stamp := at.Format("2006_01_02")
	for _, p := range []string{stamp, stamp[:7], stamp[:4], ""} {
		best := ""
		err := List(ctx, st, host, keyspace, p, func(name string) error {
			t, _, _, err := ParseBackupName(name)
			if err != nil {
				return nil // not ours; ignore
			}
			if t.After(at) {
				return remote.ErrStop
			}
			best = name
			return nil
		})
		if err != nil && !errors.Is(err, remote.ErrStop) {
			return "", err
		}
		if best != "" {
			return best, nil
		}
	}
	return "", nil
}
