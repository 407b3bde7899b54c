package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
// dir, mirroring their relative paths, and returns the links and the
// identity of what they hold. A vanished file gives errVanished; the caller
// removes dir on any error.
func (w *Watcher) hold(rs *rootState, dir string, files []string) (map[string]string, map[string]fileID, error) {
	held := make(map[string]string, len(files))
	ids := make(map[string]fileID, len(files))
	made := map[string]bool{}
	for _, rel := range files {
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if d := path.Dir(rel); !made[d] {
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return nil, nil, fmt.Errorf("hold %s: %w", rel, err)
			}
			made[d] = true
		}
		src := filepath.Join(rs.path, filepath.FromSlash(rel))
		if err := w.link(src, dst); err != nil {
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return nil, nil, errVanished
			case errors.Is(err, syscall.EXDEV):
				return nil, nil, crossDevice(rs, err)
			case errors.Is(err, fs.ErrPermission):
				return nil, nil, fmt.Errorf("hold %s: %w (with fs.protected_hardlinks=1 only the files' owner or root may link them)", rel, err)
			}
			return nil, nil, fmt.Errorf("hold %s: %w", rel, err)
		}
		id, err := statID(dst)
		if err != nil {
			return nil, nil, fmt.Errorf("hold %s: %w", rel, err)
		}
		held[rel], ids[rel] = dst, id
	}
	return held, ids, nil
}
