package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// RemoveStaleTemp deletes the temporary files of writes that crashed, if
// they are older than age, and the directories that leaves empty. It returns
// how many files it removed.
//
// It walks the whole store, seconds for a million packs, so it is a
// maintenance step for purge rather than part of Open, which stays O(1) and
// read-only. A temporary file is invisible to every other operation, so
// leaving it costs only space. Pass an age well above the longest Put (an
// hour is plenty): a younger file may be a write in progress on another host.
func (s *Store) RemoveStaleTemp(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	removed := 0
	err := filepath.WalkDir(s.root, func(name string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed by a concurrent Delete
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if de.IsDir() {
			if de.Name() == lockDir && filepath.Dir(name) == s.root {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(de.Name(), tmpPrefix) {
			return nil
		}
		fi, err := de.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil
		}
		if err := os.Remove(name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		removed++
		rel, err := filepath.Rel(s.root, filepath.Dir(name))
		if err == nil {
			s.removeEmptyDirs(ctx, path.Clean(filepath.ToSlash(rel)))
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("remove stale temporary files in %s: %w", s.root, err)
	}
	return removed, nil
}
