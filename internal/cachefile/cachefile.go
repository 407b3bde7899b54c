// Package cachefile reads and writes the files of cassback's cache folder:
// copies of immutable store objects, each checked by its reader against
// what names it. Every file is opened below the folder only (os.Root),
// following no symbolic link and opening no FIFO, and written whole or not
// at all; writing is best effort, since a file that cannot be written only
// costs a read from the store later. Folders are made 0700 and files 0600:
// the cache holds what the store holds (index files, manifest trees), for
// its owner only.
package cachefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Open opens the folder dir, creating it; nil means no cache.
func Open(dir string) *os.Root {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil
	}
	return root
}

// Tighten makes the folder name below root private (0700) if it grants
// anything to group or others, and returns its mode before, or 0 when it
// was private already (or is missing). It follows no symbolic link.
func Tighten(root *os.Root, name string) (fs.FileMode, error) {
	fi, err := root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil
	case err != nil:
		return 0, err
	case !fi.IsDir():
		return 0, fmt.Errorf("%s: not a folder", name)
	case fi.Mode().Perm()&0o077 == 0:
		return 0, nil
	}
	return fi.Mode().Perm(), root.Chmod(name, 0o700)
}

// Read returns the bytes of the regular file name (slash-separated) below
// root, if it holds at most max of them.
func Read(root *os.Root, name string, max int64) ([]byte, bool) {
	if root == nil {
		return nil, false
	}
	f, err := root.OpenFile(filepath.FromSlash(name), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, max))
	return data, err == nil
}

// Write writes the file name (slash-separated) below root, and the folders
// it needs, through a new temporary file (name.tmp<random>) renamed into
// place. It reports whether the file was written.
func Write(root *os.Root, name string, data []byte) bool {
	if root == nil {
		return false
	}
	name = filepath.FromSlash(name)
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return false
		}
	}
	// A name of its own, created new: nothing already there — a FIFO, a
	// link, another writer's file — is opened.
	tmp := name + ".tmp" + strconv.FormatUint(rand.Uint64(), 36)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return false
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err != nil || cerr != nil || root.Rename(tmp, name) != nil {
		_ = root.Remove(tmp)
		return false
	}
	return true
}
