package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
)

func TestConformance(t *testing.T) {
	remotetest.Run(t, func(t *testing.T) remote.Store { return newStore(t) })
}

func newStore(t testing.TB) *local.Store {
	t.Helper()
	s, err := local.Create(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t testing.TB, s remote.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, s remote.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(t.Context(), prefix, func(info remote.Info) error {
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// tree returns every path under dir, relative to it, with a mark for
// directories. The lock files in .locks are left out: which of them exist
// depends on hashes.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if filepath.Base(filepath.Dir(p)) == ".locks" {
			return nil
		}
		if de.IsDir() {
			rel += "/"
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func TestLayout(t *testing.T) {
	s := newStore(t)
	put(t, s, "packs/3f/3fa2", []byte("pack"))
	b, err := os.ReadFile(filepath.Join(s.Dir(), "packs", "3f", "3fa2"))
	if err != nil || string(b) != "pack" {
		t.Fatalf("file of key packs/3f/3fa2: got %q, %v; want %q", b, err, "pack")
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), "packs", "3f", "3fa2"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("file mode: got %v, want at most 0640", perm)
	}
	want := []string{"./", ".locks/", "packs/", "packs/3f/", "packs/3f/3fa2"}
	if got := tree(t, s.Dir()); !slices.Equal(got, want) {
		t.Errorf("store tree after one Put:\n got %q\nwant %q", got, want)
	}
}

func TestLeftoverTempInvisible(t *testing.T) {
	s := newStore(t)
	put(t, s, "a/b", []byte("b"))
	// What a crash between create and rename leaves: temporary files beside
	// keys, and in a directory of their own.
	old := time.Now().Add(-2 * time.Hour)
	for _, p := range []string{".tmp-root", "a/.tmp-crashed", "c/d/.tmp-alone", "a/.tmp-young"} {
		name := filepath.Join(s.Dir(), filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte("partial"), 0o640); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(p, "young") {
			if err := os.Chtimes(name, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := list(t, s, ""); !slices.Equal(got, []string{"a/b"}) {
		t.Errorf("List with leftover temporary files: got %q, want [a/b]", got)
	}
	dirs, err := s.ListDirs(t.Context(), "")
	if err != nil || !slices.Equal(dirs, []string{"a"}) {
		t.Errorf("ListDirs with a directory holding only a temporary file: got %q, %v; want [a]", dirs, err)
	}
	if _, err := s.Stat(t.Context(), "a/.tmp-crashed"); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("Stat of a temporary file: got %v, want ErrInvalidKey", err)
	}

	n, err := s.RemoveStaleTemp(t.Context(), time.Hour)
	if err != nil || n != 3 {
		t.Errorf("RemoveStaleTemp: got %d, %v; want 3 removed", n, err)
	}
	want := []string{"./", ".locks/", "a/", "a/.tmp-young", "a/b"}
	if got := tree(t, s.Dir()); !slices.Equal(got, want) {
		t.Errorf("tree after RemoveStaleTemp:\n got %q\nwant %q", got, want)
	}
}

// TestInvalidKeysTouchNothing checks that a key is validated before any file
// system call: nothing appears inside or beside the store.
func TestInvalidKeysTouchNothing(t *testing.T) {
	parent := t.TempDir()
	s, err := local.Create(filepath.Join(parent, "store"))
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, parent)
	ctx := t.Context()
	for _, key := range append(slices.Clone(remotetest.BadKeys), "../x", "../../x", "../store2/x", "/tmp/x", "a/../../x") {
		if err := s.Put(ctx, key, strings.NewReader("x"), 1); !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("Put(%q): got %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.PutIf(ctx, key, []byte("x"), ""); !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("PutIf(%q): got %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("Delete(%q): got %v, want ErrInvalidKey", key, err)
		}
	}
	if err := s.List(ctx, "../", func(remote.Info) error { return nil }); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("List(../): got %v, want ErrInvalidKey", err)
	}
	if after := tree(t, parent); !slices.Equal(after, before) {
		t.Errorf("tree after writes of invalid keys:\n got %q\nwant %q", after, before)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	if _, err := local.Open(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Open of a missing directory: got %v, want fs.ErrNotExist naming %s", err, missing)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open created %s", missing)
	}
	if _, err := local.Open(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open of a file: got %v, want a 'not a directory' error", err)
	}
	if _, err := local.Create(filepath.Join(file, "sub")); err == nil {
		t.Errorf("Create below a file: got nil error, want one")
	}
	s, err := local.Create(filepath.Join(dir, "new", "nested"))
	if err != nil {
		t.Fatalf("Create of a nested new directory: %v", err)
	}
	if !filepath.IsAbs(s.Dir()) {
		t.Errorf("Dir: got %q, want an absolute path", s.Dir())
	}
	if _, err := local.Open(filepath.Join(dir, "new", "nested")); err != nil {
		t.Errorf("Open after Create: %v", err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permissions")
	}
	s := newStore(t)
	put(t, s, "k", []byte("v"))
	if err := os.Chmod(s.Dir(), 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(s.Dir(), 0o750) })
	ro, err := local.Open(s.Dir())
	if err != nil {
		t.Fatalf("Open of a read-only store: %v", err)
	}
	if got := list(t, ro, ""); !slices.Equal(got, []string{"k"}) {
		t.Errorf("List of a read-only store: got %q, want [k]", got)
	}
	if err := ro.Put(t.Context(), "k2", strings.NewReader("v"), 1); err == nil {
		t.Errorf("Put into a read-only store: got nil error, want one")
	}
}

// TestKeyConflict: a file system cannot hold both "a" and "a/b".
func TestKeyConflict(t *testing.T) {
	s := newStore(t)
	put(t, s, "f", []byte("file"))
	put(t, s, "d/x", []byte("in dir"))
	for _, key := range []string{"f/below", "f/below/deeper", "d"} {
		err := s.Put(t.Context(), key, strings.NewReader("v"), 1)
		if err == nil {
			t.Errorf("Put(%q) conflicting with a stored key: got nil error, want one", key)
			continue
		}
		t.Logf("Put(%q): %v", key, err)
		if _, err := s.PutIf(t.Context(), key, []byte("v"), ""); err == nil || errors.Is(err, remote.ErrPrecondition) {
			t.Errorf("PutIf(%q) conflicting with a stored key: got %v, want a conflict error", key, err)
		}
	}
	if got := list(t, s, ""); !slices.Equal(got, []string{"d/x", "f"}) {
		t.Errorf("List after conflicting Puts: got %q, want [d/x f]", got)
	}
	for _, p := range tree(t, s.Dir()) {
		if strings.Contains(p, ".tmp-") {
			t.Errorf("conflicting Put left %s behind", p)
		}
	}
}

// TestPutIfTwoStores races conditional creates through two Store values on
// one directory, as two processes would: only flock, not the in-process
// mutexes, separates them.
func TestPutIfTwoStores(t *testing.T) {
	a := newStore(t)
	b, err := local.Open(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		key := fmt.Sprintf("gc/lease-%d", round)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for i := range 16 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				_, err := s.PutIf(t.Context(), key, []byte{byte(i)}, "")
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, remote.ErrPrecondition):
					t.Errorf("PutIf: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("round %d: got %d winners, want 1", round, wins)
		}
	}
}

// TestETagsDistinct rewrites one key quickly, with the same size each time:
// every version must get its own ETag, or a stale If-Match could succeed.
func TestETagsDistinct(t *testing.T) {
	s := newStore(t)
	seen := map[string]bool{}
	etag, err := s.PutIf(t.Context(), "lease", []byte("00"), "")
	if err != nil {
		t.Fatal(err)
	}
	seen[etag] = true
	n := 100
	if testing.Short() {
		n = 30
	}
	for i := range n {
		etag, err = s.PutIf(t.Context(), "lease", fmt.Appendf(nil, "%02d", i%100), etag)
		if err != nil {
			t.Fatal(err)
		}
		if seen[etag] {
			t.Fatalf("write %d: ETag %q repeats an earlier version's", i, etag)
		}
		seen[etag] = true
		if i%10 == 0 {
			// Delete and recreate, so that the inode number can be reused.
			if err := s.Delete(t.Context(), "lease"); err != nil {
				t.Fatal(err)
			}
			if etag, err = s.PutIf(t.Context(), "lease", []byte("00"), ""); err != nil {
				t.Fatal(err)
			}
			seen[etag] = true
		}
	}
}

func TestDeleteKeepsRoot(t *testing.T) {
	s := newStore(t)
	put(t, s, "only/one/key", nil)
	if err := s.Delete(t.Context(), "only/one/key"); err != nil {
		t.Fatal(err)
	}
	want := []string{"./", ".locks/"}
	if got := tree(t, s.Dir()); !slices.Equal(got, want) {
		t.Errorf("tree after deleting the last key:\n got %q\nwant %q", got, want)
	}
	put(t, s, "top", nil)
	if err := s.Delete(t.Context(), "top"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); err != nil {
		t.Errorf("root after deleting a top-level key: %v", err)
	}
}

// TestListSkipsForeignFiles: names that are not keys, symbolic links (to
// a file or a directory) and sockets are not listed.
func TestListSkipsForeignFiles(t *testing.T) {
	s := newStore(t)
	put(t, s, "k/real", []byte("x"))
	dir := filepath.Join(s.Dir(), "k")
	for _, name := range []string{"has space", "ünï", ".hidden"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(s.Dir(), filepath.Join(dir, "loop")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0); err == nil {
		sock := filepath.Join(dir, "sock")
		if len(sock) < 100 && syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}) == nil {
			defer syscall.Close(fd)
		} else {
			syscall.Close(fd)
		}
	}
	if got, want := list(t, s, ""), []string{"k/real"}; !slices.Equal(got, want) {
		t.Errorf("List: got %q, want %q", got, want)
	}
	if _, err := s.Stat(t.Context(), "k/loop"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a symlink to a directory: got %v, want fs.ErrNotExist", err)
	}
}

func TestGetReadsOpenedVersion(t *testing.T) {
	s := newStore(t)
	put(t, s, "v", []byte("first version"))
	rc, err := s.Get(t.Context(), "v", 6, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	put(t, s, "v", []byte("second"))
	if err := s.Delete(t.Context(), "v"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "version" {
		t.Errorf("reading a body after overwrite and delete: got %q, %v; want %q", b, err, "version")
	}
}

// TestLockHeldElsewhere holds every lock file, as a stopped process on
// another host might: writes wait, give up when their context ends, and
// leave nothing behind; reads go on.
func TestLockHeldElsewhere(t *testing.T) {
	s := newStore(t)
	put(t, s, "k", []byte("v1"))
	dir := filepath.Join(s.Dir(), ".locks")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	for i := range 256 {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%02x", i)), os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := s.Put(ctx, "k", strings.NewReader("v2"), 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put while the lock is held: got %v, want context.DeadlineExceeded", err)
	}
	if _, err := s.PutIf(ctx, "new", []byte("x"), ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PutIf while the lock is held: got %v, want context.DeadlineExceeded", err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Delete while the lock is held: got %v, want context.DeadlineExceeded", err)
	}
	rc, err := s.Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatalf("Get while the lock is held: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "v1" {
		t.Errorf("Get after writes that timed out: got %q, want %q", b, "v1")
	}

	done := make(chan error, 1)
	go func() { done <- s.Put(t.Context(), "k", strings.NewReader("v3"), 2) }()
	time.Sleep(20 * time.Millisecond) // let the Put start waiting
	for _, f := range held {
		f.Close()
	}
	if err := <-done; err != nil {
		t.Errorf("Put once the lock is free: %v", err)
	}
	if got := list(t, s, ""); !slices.Equal(got, []string{"k"}) {
		t.Errorf("List: got %q, want [k]", got)
	}
	for _, p := range tree(t, s.Dir()) {
		if strings.Contains(p, ".tmp-") {
			t.Errorf("a write that timed out left %s behind", p)
		}
	}
}

// TestOddFilesAreNotObjects plants a FIFO, a symbolic link and a directory
// where objects belong (someone with write access to the store's folder):
// Get and Stat never block or follow them, they are not objects, and List
// does not show them.
func TestOddFilesAreNotObjects(t *testing.T) {
	s := newStore(t)
	put(t, s, "packs/ok", []byte("real"))
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("outside the store"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir(), "packs")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, key := range []string{"packs/fifo", "packs/link"} {
		done := make(chan error, 1)
		go func() {
			rc, err := s.Get(ctx, key, 0, -1)
			if err == nil {
				b, _ := io.ReadAll(rc)
				rc.Close()
				err = fmt.Errorf("read %q", b)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Get %s: %v, want not found", key, err)
			}
		case <-ctx.Done():
			t.Fatalf("Get %s blocked", key)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat %s: %v, want not found", key, err)
		}
	}
	if got := list(t, s, "packs/"); !slices.Equal(got, []string{"packs/ok"}) {
		t.Errorf("List: %v, want only packs/ok", got)
	}
}
