package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cassback/cassback/manifest/sstable"
)

// fileID is what tells one version of a component file from another: a
// rewrite via ".tmp" and rename gives a new inode, one in place a new size
// or mtime.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64 // UnixNano
}

// statID is the identity of the entry name itself; a symbolic link is not
// followed.
func statID(name string) (fileID, error) {
	fi, err := os.Lstat(name)
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
var errVanished = fmt.Errorf("vanished before it was held: %w", fs.ErrNotExist)

// A Holder pins files of one data directory with hard links, so that they
// stay readable after Cassandra deletes them (compaction) until released.
// It never follows a symbolic link below the data directory: the
// directories are opened with O_NOFOLLOW (sstable.OpenDir), linkat(2)
// links a link itself rather than its target, and a link to anything but a
// regular file (a symbolic link, FIFO or device swapped in) is removed and
// refused with an error wrapping sstable.ErrNotRegular.
//
// A Watcher holds the links of its events in <hold>/held; NewHolder gives a
// one-shot backup a private folder beside it. Hold is for one goroutine at
// a time; Release may be called from any.
type Holder struct {
	root   string // data directory, absolute and clean
	folder string // the hold folder, for messages
	dir    string // where the links go: <dir>/<rel>.<n>
	// link links name in the directory dirfd as dst without following a
	// symbolic link (linkat(2) without AT_SYMLINK_FOLLOW); a test seam.
	link func(dirfd int, name, dst string) error
	made map[string]bool // folders below dir made
	seq  uint64          // numbers NewHolder's holds
	lock *os.File        // NewHolder's lock on the hold folder
}

func newHolder(root, folder, dir string) *Holder {
	return &Holder{root: root, folder: folder, dir: dir, link: linkat, made: map[string]bool{}}
}

func linkat(dirfd int, name, dst string) error {
	if err := unix.Linkat(dirfd, name, unix.AT_FDCWD, dst, 0); err != nil {
		return &os.LinkError{Op: "link", Old: name, New: dst, Err: err}
	}
	return nil
}

// hold hard-links files (relative to the data directory, all in one
// directory) each as <dir>/<rel>.<seq>, and returns the links by file, the
// identity of what they hold and every link made (also on error, for the
// caller to remove). A vanished file gives an error wrapping errVanished.
//
// Holding costs one link(2) per file, an openat(2) per directory level
// and, the first time a table is seen, the mkdir(2)s of its folders; a
// folder per event would cost three mkdir(2)s per SSTable, which is what
// dominates on slow metadata storage.
func (h *Holder) hold(seq uint64, files []string) (map[string]string, map[string]fileID, []string, error) {
	held := make(map[string]string, len(files))
	ids := make(map[string]fileID, len(files))
	links := make([]string, 0, len(files))
	if len(files) == 0 {
		return held, ids, links, nil
	}
	dirRel := pathDir(files[0])
	d, err := sstable.OpenDir(h.root, dirRel)
	if err != nil {
		return nil, nil, links, h.holdError(dirRel, err)
	}
	defer d.Close()
	dirfd := int(d.Fd())
	suffix := "." + strconv.FormatUint(seq, 10)
	for _, rel := range files {
		if pathDir(rel) != dirRel {
			return nil, nil, links, fmt.Errorf("hold %s: not in %s with the other files", rel, dirRel)
		}
		name := pathBase(rel)
		dst := filepath.Join(h.dir, filepath.FromSlash(rel)) + suffix
		err := h.linkInto(dirfd, name, dst)
		if errors.Is(err, fs.ErrNotExist) {
			var st unix.Stat_t
			if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				// The file is there, so our folder vanished: make it again.
				delete(h.made, filepath.Dir(dst))
				err = h.linkInto(dirfd, name, dst)
			}
		}
		if err != nil {
			return nil, nil, links, h.holdError(rel, err)
		}
		links = append(links, dst)
		id, err := h.check(rel, dst)
		if err != nil {
			return nil, nil, links, err
		}
		held[rel], ids[rel] = dst, id
	}
	return held, ids, links, nil
}

// check returns the identity of the link dst to rel, refusing anything but
// a regular file.
func (h *Holder) check(rel, dst string) (fileID, error) {
	fi, err := os.Lstat(dst)
	if err != nil {
		return fileID{}, fmt.Errorf("hold %s: %w", filepath.Join(h.root, rel), err)
	}
	if !fi.Mode().IsRegular() {
		return fileID{}, fmt.Errorf("hold %s: %w (%s)", filepath.Join(h.root, rel), sstable.ErrNotRegular, sstable.TypeName(fi.Mode()))
	}
	return statID(dst)
}

// holdError says why rel could not be held.
func (h *Holder) holdError(rel string, err error) error {
	full := filepath.Join(h.root, filepath.FromSlash(rel))
	switch {
	case errors.Is(err, sstable.ErrNotRegular):
		return err
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("hold %s: %w", full, errVanished)
	case errors.Is(err, syscall.EXDEV):
		return crossDevice(h.folder, h.root, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("hold %s: %w (with fs.protected_hardlinks=1 only the files' owner or root may link them)", full, err)
	}
	return fmt.Errorf("hold %s: %w", full, err)
}

// linkInto links name in dirfd as dst, creating dst's folder the first
// time.
func (h *Holder) linkInto(dirfd int, name, dst string) error {
	dir := filepath.Dir(dst)
	if !h.made[dir] {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		h.made[dir] = true
	}
	return h.link(dirfd, name, dst)
}

func pathDir(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

func pathBase(rel string) string { return rel[strings.LastIndexByte(rel, '/')+1:] }
