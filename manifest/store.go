package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/remote"
)

// Manifests live in the store under
//
//	manifests/<host>/<keyspace>/<backup name>   the manifest
//	commits/<host>/<time>/<keyspace>-<hash>…    the marker of its commit (commit.go)
//
// The backup name begins with a fixed-width UTC timestamp, so within one host
// and keyspace the keys sort by time, and a day, month or year is a key
// prefix; the same holds of a host's commits. A manifest counts — for
// restore, list, show's default and the next backup's unchanged-file fast
// path — only once a marker of its commit names it: a backup writes the
// marker only after its session proved, by compare-and-swap, that it was
// still live after the manifest was written (docs/design.md §4).
// Manifests and markers are written once and deleted only by purge (and a
// backup withdrawing what it could not commit), marker first.
const (
	keyRoot    = "manifests/"
	commitRoot = "commits/"
)

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

// Put stores a manifest object made by Encode, whose nodes are stored and
// indexed already. It never replaces an existing manifest. The backup does
// not count until it is committed (PutCommit).
func Put(ctx context.Context, st remote.Store, name string, obj []byte) error {
	key, err := Key(name)
	if err != nil {
		return err
	}
	if cs, ok := st.(remote.Conditional); ok {
		_, err := cs.PutIf(ctx, key, obj, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return fmt.Errorf("write manifest %s: %w", name, err)
		}
	}
	if err := st.Put(ctx, key, bytes.NewReader(obj), int64(len(obj))); err != nil {
		return fmt.Errorf("write manifest %s: %w", name, err)
	}
	return nil
}

// Delete removes backups, one commit (host and time) at a time: from the
// commit's markers first (DeleteCommit: one marker of the commit's others
// written, or none when all go, before the old ones are deleted), so they
// stop counting before their manifests go and the commit's other backups
// count still; then their manifests. A purge removing a whole commit thus
// makes a LIST and a DELETE of its marker, and a DELETE a manifest.
func Delete(ctx context.Context, st remote.Store, names ...string) error {
	rs, err := byCommit(names)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := r.uncommit(ctx, st); err != nil {
			return err
		}
		for _, n := range r.names {
			mk, _ := Key(n) // byCommit parsed n
			if err := st.Delete(ctx, mk); err != nil {
				return fmt.Errorf("delete backup %s: %w", n, err)
			}
		}
	}
	return nil
}

// Exists reports, as ErrNoBackup, a backup whose manifest is not stored.
func Exists(ctx context.Context, st remote.Store, name string) error {
	key, err := Key(name)
	if err != nil {
		return err
	}
	_, err = st.Stat(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup %s: %w", name, ErrNoBackup)
	}
	if err != nil {
		return fmt.Errorf("read manifest %s: %w", name, err)
	}
	return nil
}

// Get reads the manifest with the given backup name, counted or not, and
// its tables' files from src (see Read).
func Get(ctx context.Context, st remote.Store, name string, src Chunks) (*Manifest, error) {
	obj, err := getObject(ctx, st, name)
	if err != nil {
		return nil, err
	}
	m, err := Read(ctx, obj, src)
	if err != nil && !strings.Contains(err.Error(), name) {
		err = fmt.Errorf("manifest %s: %w", name, err)
	}
	if err != nil {
		return nil, err
	}
	if m.Name != name {
		return nil, fmt.Errorf("manifest %s: holds backup %s", name, m.Name)
	}
	return m, nil
}

// WalkStored walks the references of the manifest stored under name
// (Walker.Walk). A manifest that does not exist is ErrNoBackup.
func (w *Walker) WalkStored(ctx context.Context, st remote.Store, name string, src Chunks, fn func(chunk.ID) error) error {
	obj, err := getObject(ctx, st, name)
	if err != nil {
		return err
	}
	err = w.Walk(ctx, obj, src, fn)
	if err != nil && !strings.Contains(err.Error(), name) {
		err = fmt.Errorf("manifest %s: %w", name, err)
	}
	return err
}

// GetHeader reads the manifest object alone: the manifest's header and its
// tables with their Count and Bytes but no files (what a purge needs to
// judge a backup, and list and status to size it), checked as Get checks
// them.
func GetHeader(ctx context.Context, st remote.Store, name string) (*Manifest, error) {
	obj, err := getObject(ctx, st, name)
	if err != nil {
		return nil, err
	}
	return Header(name, obj)
}

// getObject reads a manifest object, at most maxRoot bytes of it.
func getObject(ctx context.Context, st remote.Store, name string) ([]byte, error) {
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
	obj, err := io.ReadAll(&capped{r: rc, left: maxRoot, limit: maxRoot})
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	return obj, nil
}

// capped reads r, and fails once r has given more than left bytes.
type capped struct {
	r           io.Reader
	left, limit int64
}

func (c *capped) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(int64(len(p)), c.left+1)])
	c.left -= int64(n)
	if c.left < 0 {
		return n, fmt.Errorf("more than %d bytes", c.limit)
	}
	return n, err
}

// Hosts returns every host with commit markers in the store.
func Hosts(ctx context.Context, st remote.Store) ([]string, error) {
	return st.ListDirs(ctx, commitRoot)
}

// Keyspaces returns every keyspace with manifests of host, committed or
// not (BackedUpKeyspaces keeps those with a committed backup).
func Keyspaces(ctx context.Context, st remote.Store, host string) ([]string, error) {
	if err := remote.ValidKey(keyRoot + host); err != nil {
		return nil, fmt.Errorf("host %q: not a valid host name", host)
	}
	return st.ListDirs(ctx, keyRoot+host+"/")
}

// BackedUpKeyspaces lists the keyspaces of host with at least one
// committed backup: Keyspaces less those whose manifests are all
// uncommitted, and less the prefixes some S3-compatible servers keep
// listing after their last key is deleted. For each keyspace it lists the
// manifests oldest first and confirms them with Committed until one is
// committed: two LISTs a keyspace whose oldest manifest is.
func BackedUpKeyspaces(ctx context.Context, st remote.Store, host string) ([]string, error) {
	kss, err := Keyspaces(ctx, st, host)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ks := range kss {
		found := false
		err := st.List(ctx, keyRoot+host+"/"+ks+"/", func(i remote.Info) error {
			n := i.Key[strings.LastIndexByte(i.Key, '/')+1:]
			if _, k, h, err := ParseBackupName(n); err != nil || k != ks || h != host {
				return nil // not ours; ignore
			}
			_, ok, err := Committed(ctx, st, n)
			if err != nil {
				return err
			}
			if ok {
				found = true
				return remote.ErrStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, remote.ErrStop) {
			return nil, err
		}
		if found {
			out = append(out, ks)
		}
	}
	return out, nil
}

// List calls fn with the name of each committed backup of host and keyspace
// whose name starts with the timestamp prefix tsPrefix (for example
// "2026_11_26" for a day, "" for all), in time order. It lists the host's
// commit markers in that range (HostCommits: one LIST a thousand
// markers), not the keyspace's manifests, which would cost a LIST per
// backup to confirm: a host has no more commits than backups of all its
// keyspaces, and a one-shot backup commits every keyspace at once. Like
// every listing of markers it cannot tell a marker whose manifest is gone
// (a lone marker, docs/design.md §4.2); readers of the manifest pass over
// it.
func List(ctx context.Context, st remote.Store, host, keyspace, tsPrefix string, fn func(name string) error) error {
	if !sstable.IsName(keyspace) {
		return fmt.Errorf("keyspace %.300q: want letters, digits and '_'", keyspace)
	}
	return HostCommits(ctx, st, host, tsPrefix, func(o Object) error {
		if _, ks, _, _ := ParseBackupName(o.Name); ks != keyspace {
			return nil
		}
		return fn(o.Name)
	})
}

// Object is a stored manifest, counted or not, or a backup a commit marker
// names.
type Object struct {
	Name string // the backup name
	Key  string // the manifest's or the marker's
	Info remote.Info
	Hash Hash // of a marker's backup: the hash of its manifest object
}

// Objects calls fn for every manifest object in the store, of every host,
// committed or not, in key order, with one listing of the whole tree.
func Objects(ctx context.Context, st remote.Store, fn func(Object) error) error {
	return st.List(ctx, keyRoot, func(i remote.Info) error {
		return fn(Object{Name: i.Key[strings.LastIndexByte(i.Key, '/')+1:], Key: i.Key, Info: i})
	})
}

// Latest returns the name of the newest committed backup of host and
// keyspace taken at or before at, or "" if there is none (LatestCommit).
func Latest(ctx context.Context, st remote.Store, host, keyspace string, at time.Time) (string, error) {
	c, err := LatestCommit(ctx, st, host, keyspace, at)
	return c.Name, err
}

// LatestCommit returns the newest committed backup of host and keyspace
// taken at or before at, with its manifest's hash, or a zero Commit if
// there is none. It lists the keyspace's manifests — the day of at first,
// then its month, then its year, then everything — and confirms each,
// newest first, with Committed (one LIST), so its cost grows with how far
// back the answer is and with the keyspace's uncommitted manifests newer
// than it, not with how many backups exist or with the commits of the
// host's other keyspaces. A marker whose manifest is gone (written late,
// after a purge removed its backup) is never listed here.
func LatestCommit(ctx context.Context, st remote.Store, host, keyspace string, at time.Time) (Commit, error) {
	prefix := keyRoot + host + "/" + keyspace + "/"
	if err := remote.ValidKey(prefix + "x"); err != nil {
		return Commit{}, fmt.Errorf("host %q, keyspace %q: %w", host, keyspace, err)
	}
	at = at.UTC()
	stamp := at.Format("2006_01_02")
	checked := map[string]bool{}
	for _, p := range []string{stamp, stamp[:7], stamp[:4], ""} {
		var names []string
		err := st.List(ctx, prefix+p, func(i remote.Info) error {
			name := strings.TrimPrefix(i.Key, prefix)
			t, ks, h, err := ParseBackupName(name)
			if err != nil || ks != keyspace || h != host {
				return nil // not ours; ignore
			}
			if t.After(at) {
				return remote.ErrStop
			}
			names = append(names, name)
			return nil
		})
		if err != nil && !errors.Is(err, remote.ErrStop) {
			return Commit{}, err
		}
		for _, n := range slices.Backward(names) {
			if checked[n] {
				continue
			}
			checked[n] = true
			h, ok, err := Committed(ctx, st, n)
			if err != nil {
				return Commit{}, err
			}
			if ok {
				return Commit{Name: n, Hash: h}, nil
			}
		}
	}
	return Commit{}, nil
}
