package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// fileID is what tells one version of a component file from another: a
// rewrite via ".tmp" and rename gives a new inode, one in place a new size
// or mtime.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64 // UnixNano
}

func statID(name string) (fileID, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id, nil
}

func deviceOf(name string) (uint64, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no device number on this system", name)
	}
	return uint64(st.Dev), nil
}

// errVanished: a file disappeared before it could be held.
var errVanished = errors.New("file vanished")

// hold hard-links files (relative to rs.path, all in one directory) into
// the hold folder, each as <hold>/held/<rel>.<seq>, and returns the links
// by file, the identity of what they hold and every link made (also on
// error, for the caller to remove). A vanished file gives errVanished.
//
// Holding costs one link(2) per file and, the first time a table is seen,
// the mkdir(2)s of its folders; a folder per event would cost three
// mkdir(2)s per SSTable, which is what dominates on slow metadata storage.
func (w *Watcher) hold(rs *rootState, seq uint64, files []string) (map[string]string, map[string]fileID, []string, error) {
	held := make(map[string]string, len(files))
	ids := make(map[string]fileID, len(files))
	links := make([]string, 0, len(files))
	suffix := "." + strconv.FormatUint(seq, 10)
	for _, rel := range files {
		src := filepath.Join(rs.path, filepath.FromSlash(rel))
		dst := filepath.Join(rs.hold, heldDir, filepath.FromSlash(rel)) + suffix
		err := w.linkInto(src, dst)
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Lstat(src); serr == nil {
				// The file is there, so our folder vanished: make it again.
				delete(w.loop.made, filepath.Dir(dst))
				err = w.linkInto(src, dst)
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return nil, nil, links, errVanished
			case errors.Is(err, syscall.EXDEV):
				return nil, nil, links, crossDevice(rs, err)
			case errors.Is(err, fs.ErrPermission):
				return nil, nil, links, fmt.Errorf("hold %s: %w (with fs.protected_hardlinks=1 only the files' owner or root may link them)", rel, err)
			}
			return nil, nil, links, fmt.Errorf("hold %s: %w", rel, err)
		}
		links = append(links, dst)
		id, err := statID(dst)
		if err != nil {
			return nil, nil, links, fmt.Errorf("hold %s: %w", rel, err)
		}
		held[rel], ids[rel] = dst, id
	}
	return held, ids, links, nil
}

// linkInto links src as dst, creating dst's folder the first time.
func (w *Watcher) linkInto(src, dst string) error {
	dir := filepath.Dir(dst)
	if !w.loop.made[dir] {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		w.loop.made[dir] = true
	}
	return w.link(src, dst)
}
