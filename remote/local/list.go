package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/cassback/cassback/remote"
)

// List implements remote.Store. It reads one directory at a time, so its
// memory is bounded by the largest directory, not the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if err := remote.BeginList(ctx, prefix); err != nil {
		return err
	}
	// "manifests/h/ks/2026_11" is the names starting "2026_11" in the
	// directory of keys "manifests/h/ks/".
	i := strings.LastIndexByte(prefix, '/') + 1
	err := s.walk(ctx, prefix[:i], prefix[i:], fn)
	if errors.Is(err, remote.ErrStop) {
		return nil
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return err
}

// entry is a name in a directory of the store, with the sort key that puts
// its keys in order among its siblings: a directory "a" holds keys "a/...",
// which sort after "a-b" and "a.b" but before "a0".
type entry struct {
	name, sortKey string
	dir           bool
}

// walk calls fn for the keys under keyDir (a key prefix that is "" or ends in
// '/') whose next segment starts with namePrefix, in key order.
func (s *Store) walk(ctx context.Context, keyDir, namePrefix string, fn func(remote.Info) error) error {
	entries, err := s.readDir(keyDir, namePrefix)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := keyDir + e.name
		if e.dir {
			if err := s.walk(ctx, key+"/", "", fn); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Lstat(s.path(key))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since readDir
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", key, err)
		}
		if !fi.Mode().IsRegular() || remote.ValidKey(key) != nil {
			continue // a symlink to a directory, a socket, a key too long
		}
		if err := fn(infoOf(key, fi)); err != nil {
			return err
		}
	}
	return nil
}

// readDir returns the entries of the directory of keys under keyDir whose
// names start with namePrefix and are valid key segments, in key order. A
// missing directory, or a file where a directory would be, has no entries.
func (s *Store) readDir(keyDir, namePrefix string) ([]entry, error) {
	des, err := os.ReadDir(s.path(keyDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", keyDir, err)
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, namePrefix) || !validSegment(name) {
			continue // dot-names (temporary files, .locks) and foreign files
		}
		e := entry{name: name, sortKey: name, dir: de.IsDir()}
		if e.dir {
			e.sortKey += "/"
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.sortKey, b.sortKey) })
	return entries, nil
}

// validSegment reports whether name may be one segment of a key.
func validSegment(name string) bool {
	return !strings.Contains(name, "/") && remote.ValidKey(name) == nil
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// ListDirs implements remote.Store. A directory counts only if some key is
// under it: a crash or a race with Delete can leave empty directories, or
// ones holding only temporary files, which S3 would not show either.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := remote.BeginListDirs(ctx, prefix); err != nil {
		return nil, err
	}
	entries, err := s.readDir(prefix, "")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if !e.dir {
			continue
		}
		ok, err := s.hasKey(ctx, prefix+e.name+"/")
		if err != nil {
			return nil, fmt.Errorf("list dirs %s: %w", prefix, err)
		}
		if ok {
			dirs = append(dirs, e.name)
		}
	}
	slices.Sort(dirs) // by name, not key order: "x" < "x-y"
	return dirs, nil
}

// hasKey reports whether any key starts with keyDir, which ends in '/'. It
// reads directories in small batches and stops at the first key, so the
// usual answer costs one short read.
func (s *Store) hasKey(ctx context.Context, keyDir string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	d, err := os.Open(s.path(keyDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
			return false, nil
		}
		return false, err
	}
	defer d.Close()
	for {
		des, err := d.ReadDir(64)
		for _, de := range des {
			name := de.Name()
			if !validSegment(name) {
				continue
			}
			if de.IsDir() {
				ok, err := s.hasKey(ctx, keyDir+name+"/")
				if ok || err != nil {
					return ok, err
				}
				continue
			}
			fi, err := os.Lstat(s.path(keyDir + name))
			if err == nil && fi.Mode().IsRegular() {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}
