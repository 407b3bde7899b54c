package sstable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotRegular is wrapped by Open and OpenDir when an entry below the data
// directory is a symbolic link, or not a regular file (Open) or directory
// (OpenDir): a FIFO, device or socket. Below a data directory nothing else
// is ever followed, waited on or read.
var ErrNotRegular = errors.New("not a regular file")

// Open opens rel (slash-separated, below the data directory root) for
// reading without following a symbolic link anywhere below root and without
// blocking: every directory is opened with O_NOFOLLOW from its parent, the
// file with O_NOFOLLOW|O_NONBLOCK (a FIFO swapped in opens at once, without
// a writer), and anything but a regular file is closed and refused with an
// error wrapping ErrNotRegular. root itself may be a symbolic link. A
// missing file gives an error wrapping fs.ErrNotExist. The cost over
// os.Open is an openat(2) per directory level and an fstat(2).
func Open(root, rel string) (*os.File, error) {
	dir, name := path2(rel)
	d, err := OpenDir(root, dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return openAt(int(d.Fd()), name, filepath.Join(root, filepath.FromSlash(rel)))
}

// OpenDir opens the directory rel below root ("" or "." for root) as Open
// does: no symbolic link below root is followed, and anything but a
// directory is refused with an error wrapping ErrNotRegular.
func OpenDir(root, rel string) (*os.File, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	cur := root
	if rel != "" && rel != "." {
		for comp := range strings.SplitSeq(rel, "/") {
			cur = filepath.Join(cur, comp)
			next, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				err = describe(fd, comp, cur, err, "directory")
			}
			unix.Close(fd)
			if err != nil {
				return nil, err
			}
			fd = next
		}
	}
	return os.NewFile(uintptr(fd), cur), nil
}

// OpenFile opens the file name as Open does, following no symbolic link
// in its last element (the folders above it are trusted).
func OpenFile(name string) (*os.File, error) {
	return openAt(unix.AT_FDCWD, name, name)
}

// openAt opens name in the directory dirfd without following a symbolic
// link or blocking, and checks that it is a regular file.
func openAt(dirfd int, name, full string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, describe(dirfd, name, full, err, "file")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: full, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, notRegular(full, fileMode(uint32(st.Mode)), "file")
	}
	// O_NONBLOCK means nothing to a regular file; clear it so the runtime
	// treats the descriptor as an ordinary blocking file.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: full, Err: err}
	}
	return os.NewFile(uintptr(fd), full), nil
}

// describe turns an openat error into one naming full: a symbolic link
// (ELOOP, or ENOTDIR with O_DIRECTORY) or another type where a want was
// expected wraps ErrNotRegular.
func describe(dirfd int, name, full string, err error, want string) error {
	if err == unix.ELOOP || err == unix.ENOTDIR {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return notRegular(full, fileMode(uint32(st.Mode)), want)
		}
	}
	return &fs.PathError{Op: "open", Path: full, Err: err}
}

// notRegular is the error for full, of type m where a want ("file",
// "directory") was expected.
func notRegular(full string, m fs.FileMode, want string) error {
	detail := TypeName(m)
	if m&fs.ModeSymlink != 0 {
		detail += ", not followed"
	} else if want != "file" {
		detail += " where a " + want + " was expected"
	}
	return fmt.Errorf("open %s: %w (%s)", full, ErrNotRegular, detail)
}

// TypeName names the type of a non-regular entry for messages: "symbolic
// link", "named pipe", "socket", "character device", "block device",
// "directory".
func TypeName(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeSymlink != 0:
		return "symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "block device"
	case t.IsDir():
		return "directory"
	case t.IsRegular():
		return "regular file"
	}
	return "special file"
}

// fileMode converts the type bits of a stat(2) mode.
func fileMode(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFREG:
		return 0
	}
	return fs.ModeIrregular
}

// path2 splits a slash-separated relative path into its directory ("" at
// the top) and last element.
func path2(rel string) (dir, name string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}
