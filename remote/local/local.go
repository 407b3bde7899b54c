package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cassback/cassback/remote"
)

const (
	fileMode = 0o640
	dirMode  = 0o750

	tmpPrefix = ".tmp-"

	// copyBufSize is the buffer Put copies through: large enough that a
	// 32 MiB pack takes a few dozen write calls, small enough to allocate
	// per Put.
	copyBufSize = 1 << 20
)

// Store is a remote.Store and remote.Conditional on a directory. It is safe
// for concurrent use by goroutines and by processes sharing the directory.
type Store struct {
	root  string // absolute
	locks *stripes
}

var (
	_ remote.Store       = (*Store)(nil)
	_ remote.Conditional = (*Store)(nil)
)

// Open returns the store in dir, which must be an existing directory. Open
// writes nothing, so a read-only store can be opened for restores.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open local store %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open local store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open local store %s: not a directory", abs)
	}
	return &Store{root: abs, locks: newStripes()}, nil
}

// Create creates dir and its missing parents, then opens it as Open does.
// An existing directory is fine.
func Create(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create local store: %w", err)
	}
	return Open(dir)
}

// Dir returns the store's root directory, as an absolute path.
func (s *Store) Dir() string { return s.root }

// path returns the file of a valid key.
//
// The directory is not a key prefix in the S3 sense: no server limits the
// name root + key, so the store is no remote.KeyPrefixer and its keys keep
// all of remote.MaxKeyLen. What a file system limits is each name (255
// bytes on Linux, which key segments respect) and the path given to one
// system call (PATH_MAX, 4096 bytes on Linux): the longest key, or a
// temporary file beside it, fails only under a directory path of about
// 3,000 bytes, and then with ENAMETOOLONG, a permanent error naming the key.
// Open does not refuse such a directory: PATH_MAX differs between systems
// (1024 on macOS), keys of cassback's own layout are under 500 bytes, and
// a check tied to one system's constant would refuse stores that work.
func (s *Store) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// Put implements remote.Store.
func (s *Store) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if err := remote.Begin(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: negative size %d", key, size)
	}
	fill := func(w io.Writer) error { return copyExact(ctx, w, data, size) }
	if _, err := s.write(ctx, key, fill, nil); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// PutVerified implements remote.Verifying: Put syncs the object's file
// and renames it into place, so an object it stored is whole.
func (s *Store) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	err := s.Put(ctx, key, data, size)
	return err == nil, err
}

// PutIf implements remote.Conditional.
func (s *Store) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if err := remote.Begin(ctx, "put-if", key); err != nil {
		return "", err
	}
	fill := func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
	cond := func(etag string, exists bool) error {
		switch {
		case ifMatch == "" && exists:
			return fmt.Errorf("%w: object exists", remote.ErrPrecondition)
		case ifMatch != "" && !exists:
			return fmt.Errorf("%w: no object to match etag %s", remote.ErrPrecondition, ifMatch)
		case ifMatch != "" && etag != ifMatch:
			return fmt.Errorf("%w: etag is %s, not %s", remote.ErrPrecondition, etag, ifMatch)
		}
		return nil
	}
	etag, err := s.write(ctx, key, fill, cond)
	if err != nil {
		return "", fmt.Errorf("put-if %s: %w", key, err)
	}
	return etag, nil
}

// write stores what fill writes under key: into a temporary file beside the
// target, synced, then renamed over the target under the key's lock after
// cond, if not nil, accepts the current object. It returns the new ETag.
func (s *Store) write(ctx context.Context, key string, fill func(io.Writer) error, cond func(etag string, exists bool) error) (etag string, err error) {
	target := s.path(key)
	f, err := s.createTemp(ctx, path.Dir(key))
	if err != nil {
		return "", err
	}
	tmp, closed, renamed := f.Name(), false, false
	defer func() {
		if !closed {
			_ = f.Close()
		}
		if !renamed {
			_ = os.Remove(tmp)
		}
	}()

	if err := fill(f); err != nil {
		return "", err
	}
	// The file system's clock may tick only every few milliseconds; a
	// nanosecond mtime keeps the ETag of each write distinct (see doc.go).
	now := time.Now()
	if err := os.Chtimes(tmp, now, now); err != nil {
		return "", err
	}
	if err := syncFile(f); err != nil {
		return "", err
	}
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	etag = etagOf(fi)
	closed = true
	if err := f.Close(); err != nil {
		return "", err
	}

	unlock, err := s.lock(ctx, key)
	if err != nil {
		return "", err
	}
	if cond != nil {
		cur, exists, err := currentETag(target)
		if err == nil {
			err = cond(cur, exists)
		}
		if err != nil {
			unlock()
			return "", err
		}
	}
	err = os.Rename(tmp, target)
	unlock()
	if err != nil {
		if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return "", fmt.Errorf("other keys continue this key with '/', so it cannot be a file: %w", err)
		}
		return "", err
	}
	renamed = true
	if err := syncDir(filepath.Dir(target)); err != nil {
		return "", err
	}
	return etag, nil
}

// createTemp creates an empty temporary file in the directory of keys under
// relDir ("." for the root). If the directory is missing it creates it, under
// the lock that Delete takes to remove empty directories (dirLock): without
// it, a Delete on another host could remove a directory between its mkdir
// and the temporary file that pins it, as often as it liked.
func (s *Store) createTemp(ctx context.Context, relDir string) (*os.File, error) {
	dir := s.path(relDir)
	f, err := openTemp(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || relDir == "." {
		return f, explainNotDir(err)
	}
	unlock, err := s.lock(ctx, dirLock(relDir))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.mkdirs(relDir); err != nil {
		return nil, explainNotDir(err)
	}
	f, err = openTemp(dir)
	return f, explainNotDir(err)
}

// openTemp creates a new temporary file in dir.
func openTemp(dir string) (*os.File, error) {
	for attempt := 1; ; attempt++ {
		name := filepath.Join(dir, tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
		if err == nil || !errors.Is(err, fs.ErrExist) || attempt == 3 {
			return f, err
		}
		// A random name collided; try another.
	}
}

// dirLock names the lock that serialises creating and removing the
// directories of keys under relDir: one per top-level directory, since
// removing "a/b" can break creating "a/b/c/d". Its name ends in '/', so it is
// never a key's.
func dirLock(relDir string) string {
	top, _, _ := strings.Cut(relDir, "/")
	return top + "/"
}

func explainNotDir(err error) error {
	if errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("a shorter key is a file, so it cannot be a directory: %w", err)
	}
	return err
}

// mkdirs creates the missing directories of relDir from the root down,
// syncing the parent of each one it creates so that the new entry is durable.
// The caller holds dirLock(relDir).
func (s *Store) mkdirs(relDir string) error {
	parent := s.root
	for seg := range strings.SplitSeq(relDir, "/") {
		dir := filepath.Join(parent, seg)
		err := os.Mkdir(dir, dirMode)
		if err == nil {
			err = syncDir(parent)
		} else if errors.Is(err, fs.ErrExist) {
			err = nil
		}
		if err != nil {
			return err
		}
		parent = dir
	}
	return nil
}

// Get implements remote.Store.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := remote.Begin(ctx, "get", key); err != nil {
		return nil, err
	}
	// Not following a symbolic link nor waiting on a FIFO: only a regular
	// file (checked once open) is an object.
	f, err := os.OpenFile(s.path(key), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		err = fs.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, notFound(err))
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	var n int64
	if err == nil {
		n, err = clip(fi.Size(), offset, length)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return &reader{ctx: ctx, r: io.NewSectionReader(f, offset, n), f: f}, nil
}

// clip returns how many bytes a Get of offset and length returns from an
// object of size bytes.
func clip(size, offset, length int64) (int64, error) {
	if offset < 0 || offset > size {
		return 0, fmt.Errorf("%w: offset %d, object size %d", remote.ErrInvalidRange, offset, size)
	}
	n := size - offset
	if length >= 0 && length < n {
		n = length
	}
	return n, nil
}

// reader is the body of a Get; it stops at the first Read after ctx ends.
type reader struct {
	ctx context.Context
	r   *io.SectionReader
	f   *os.File
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (r *reader) Close() error { return r.f.Close() }

// Stat implements remote.Store.
func (s *Store) Stat(ctx context.Context, key string) (remote.Info, error) {
	if err := remote.Begin(ctx, "stat", key); err != nil {
		return remote.Info{}, err
	}
	fi, err := os.Lstat(s.path(key))
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return remote.Info{}, fmt.Errorf("stat %s: %w", key, notFound(err))
	}
	return infoOf(key, fi), nil
}

// Delete implements remote.Store. It then removes the directories the
// deletion emptied, up to but not including the root.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := remote.Begin(ctx, "delete", key); err != nil {
		return err
	}
	target := s.path(key)
	// Deleting what is already gone is common (a purge that resumes) and
	// needs no lock.
	if !isFile(target) {
		return nil
	}
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if isFile(target) {
		err = os.Remove(target)
	}
	unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	s.removeEmptyDirs(ctx, path.Dir(key))
	return nil
}

// isFile reports whether name exists and is not a directory. Deleting "a"
// when only "a/b" exists deletes nothing, as on S3.
func isFile(name string) bool {
	fi, err := os.Lstat(name)
	return err == nil && !fi.IsDir()
}

// removeEmptyDirs removes relDir and its ancestors while they are empty,
// never the root, under dirLock so that no Put is between creating a
// directory and the temporary file that keeps it non-empty (createTemp).
// It is best effort: an empty directory left behind is invisible.
func (s *Store) removeEmptyDirs(ctx context.Context, relDir string) {
	if relDir == "." {
		return
	}
	unlock, err := s.lock(ctx, dirLock(relDir))
	if err != nil {
		return
	}
	defer unlock()
	for relDir != "." {
		if err := syscall.Rmdir(s.path(relDir)); err != nil {
			return
		}
		relDir = path.Dir(relDir)
	}
}

// infoOf describes the object of key stored in the file fi.
func infoOf(key string, fi fs.FileInfo) remote.Info {
	return remote.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), ETag: etagOf(fi)}
}

// etagOf identifies one write of a file: inode, nanosecond mtime and size.
func etagOf(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", ino, fi.ModTime().UnixNano(), fi.Size())
}

// currentETag returns the ETag of the object in file name, if there is one.
func currentETag(name string) (etag string, exists bool, err error) {
	fi, err := os.Lstat(name)
	switch {
	case err == nil && fi.Mode().IsRegular():
		return etagOf(fi), true, nil
	case err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return "", false, nil
	}
	return "", false, err
}

// notFound turns the ways a file can be missing into fs.ErrNotExist, and
// drops the file name, which the caller replaces with the key.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fs.ErrNotExist
	}
	return err
}

// copyExact copies exactly size bytes from r to w and checks that r has no
// more. It stops at the first read after ctx ends.
func copyExact(ctx context.Context, w io.Writer, r io.Reader, size int64) error {
	// Hide w's ReadFrom, which would ignore the buffer and copy 32 KiB at a
	// time, and r's WriteTo, which would ignore the limit.
	src := io.LimitReader(remote.ContextReader(ctx, r), size)
	buf := make([]byte, max(1, min(size, copyBufSize)))
	n, err := io.CopyBuffer(struct{ io.Writer }{w}, src, buf)
	if err != nil {
		return fmt.Errorf("read data: %w", err)
	}
	if n < size {
		return fmt.Errorf("data ended after %d of %d bytes", n, size)
	}
	k, err := io.ReadFull(r, buf[:1])
	if k > 0 {
		return fmt.Errorf("data is longer than %d bytes", size)
	}
	if err != io.EOF {
		return fmt.Errorf("read data: %w", err)
	}
	return nil
}

// syncFile flushes f to stable storage. File systems that cannot fsync
// (some FUSE and SMB mounts) are accepted, as restic does.
func syncFile(f *os.File) error {
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// syncDir makes the entries of dir durable: a new, renamed or removed name.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = syncFile(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
