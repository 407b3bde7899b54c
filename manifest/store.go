package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// Manifests live in the store under
//
//	manifests/<host>/<keyspace>/<backup name>   the manifest
//	commits/<host>/<keyspace>/<backup name>     its commit marker
//
// The backup name begins with a fixed-width UTC timestamp, so within one host
// and keyspace the keys sort by time, and a day, month or year is a key
// prefix. A manifest counts — for restore, list, show's default and the next
// backup's unchanged-file fast path — only once its commit marker exists: a
// backup writes the marker only after its session proved, by
// compare-and-swap, that it was still live after the manifest was written
// (docs/design.md §4). Manifests and markers are written once and deleted
// only by purge, marker first.
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

// CommitKey returns the store key of the commit marker of a backup.
func CommitKey(name string) (string, error) {
	k, err := Key(name)
	if err != nil {
		return "", err
	}
	return commitRoot + strings.TrimPrefix(k, keyRoot), nil
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

// commitFormat is the version of a commit marker.
const commitFormat = 1

type commitDoc struct {
	Format  int    `json:"format"`
	Session string `json:"session"`
}

// PutCommit writes the commit marker of a backup whose manifest is stored,
// written by the given session. Only the session's commit (gc.Session) and
// a purge repairing a dead session's commits call it. Writing it again is
// harmless.
func PutCommit(ctx context.Context, st remote.Store, name, session string) error {
	key, err := CommitKey(name)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(commitDoc{Format: commitFormat, Session: session})
	if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("commit backup %s: %w", name, err)
	}
	return nil
}

// Delete removes a backup: its commit marker first, so it stops counting
// before its manifest goes.
func Delete(ctx context.Context, st remote.Store, name string) error {
	ck, err := CommitKey(name)
	if err != nil {
		return err
	}
	mk, _ := Key(name)
	if err := st.Delete(ctx, ck); err != nil {
		return fmt.Errorf("delete backup %s: %w", name, err)
	}
	if err := st.Delete(ctx, mk); err != nil {
		return fmt.Errorf("delete backup %s: %w", name, err)
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
	m, _, err := decodeRoot(obj)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, err)
	}
	if m.Name != name {
		return nil, fmt.Errorf("manifest %s: holds backup %s", name, m.Name)
	}
	return m, nil
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

// Hosts returns every host with committed backups in the store.
func Hosts(ctx context.Context, st remote.Store) ([]string, error) {
	return st.ListDirs(ctx, commitRoot)
}

// Keyspaces returns every keyspace with committed backups of host.
func Keyspaces(ctx context.Context, st remote.Store, host string) ([]string, error) {
	if err := remote.ValidKey(commitRoot + host); err != nil {
		return nil, fmt.Errorf("host %q: not a valid host name", host)
	}
	return st.ListDirs(ctx, commitRoot+host+"/")
}

// BackedUpKeyspaces lists the keyspaces of host with at least one commit
// marker: Keyspaces less the prefixes some S3-compatible servers keep
// listing after their last key is deleted. It costs one LIST per keyspace.
func BackedUpKeyspaces(ctx context.Context, st remote.Store, host string) ([]string, error) {
	kss, err := Keyspaces(ctx, st, host)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ks := range kss {
		found := false
		err := List(ctx, st, host, ks, "", func(string) error { found = true; return remote.ErrStop })
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
// "2026_11_26" for a day, "" for all), in time order.
func List(ctx context.Context, st remote.Store, host, keyspace, tsPrefix string, fn func(name string) error) error {
	prefix := commitRoot + host + "/" + keyspace + "/"
	if err := remote.ValidKey(prefix + "x"); err != nil {
		return fmt.Errorf("host %q, keyspace %q: %w", host, keyspace, err)
	}
	return st.List(ctx, prefix+tsPrefix, func(i remote.Info) error {
		return fn(strings.TrimPrefix(i.Key, prefix))
	})
}

// Object is a stored manifest, counted or not, or a commit marker.
type Object struct {
	Name string // the backup name (the last segment of the key)
	Key  string
	Info remote.Info
}

// Objects calls fn for every manifest object in the store, of every host,
// committed or not, in key order, with one listing of the whole tree.
func Objects(ctx context.Context, st remote.Store, fn func(Object) error) error {
	return listTree(ctx, st, keyRoot, fn)
}

// Commits calls fn for every commit marker in the store, in key order.
func Commits(ctx context.Context, st remote.Store, fn func(Object) error) error {
	return listTree(ctx, st, commitRoot, fn)
}

func listTree(ctx context.Context, st remote.Store, root string, fn func(Object) error) error {
	return st.List(ctx, root, func(i remote.Info) error {
		return fn(Object{Name: i.Key[strings.LastIndexByte(i.Key, '/')+1:], Key: i.Key, Info: i})
	})
}

// Latest returns the name of the newest committed backup of host and
// keyspace taken at or before at, or "" if there is none. It lists the day
// of at first, then its month, then its year, then everything, so the cost
// grows with how far back the answer is, not with how many backups exist.
// A commit marker whose manifest is gone (written late, after a purge
// removed its backup) is passed over.
func Latest(ctx context.Context, st remote.Store, host, keyspace string, at time.Time) (string, error) {
	at = at.UTC()
	stamp := at.Format("2006_01_02")
	for _, p := range []string{stamp, stamp[:7], stamp[:4], ""} {
		var names []string
		err := List(ctx, st, host, keyspace, p, func(name string) error {
			t, _, _, err := ParseBackupName(name)
			if err != nil {
				return nil // not ours; ignore
			}
			if t.After(at) {
				return remote.ErrStop
			}
			names = append(names, name)
			return nil
		})
		if err != nil && !errors.Is(err, remote.ErrStop) {
			return "", err
		}
		for _, n := range slices.Backward(names) {
			key, _ := Key(n)
			_, err := st.Stat(ctx, key)
			if err == nil {
				return n, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("backup %s: %w", n, err)
			}
		}
	}
	return "", nil
}
