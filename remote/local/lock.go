package local

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockDir holds the lock files, one per stripe, named by two hex digits.
// The stripe of a lock name (the first byte of its SHA-256) and the names
// used (a key; a top-level directory with its '/', see dirLock) are part of
// the on-disk format: every process sharing a store must agree on them. Lock
// files are never removed, so all processes lock the same inode.
const lockDir = ".locks"

// stripes is the in-process half of the locks, one-slot semaphores that
// goroutines wait on, with their contexts, instead of polling flock.
type stripes [256]chan struct{}

func newStripes() *stripes {
	var s stripes
	for i := range s {
		s[i] = make(chan struct{}, 1)
	}
	return &s
}

// lock takes the exclusive lock of name's stripe, waiting until it is free
// or ctx ends. Holders only rename, remove or create a few files, so waits
// are short; flock is polled rather than blocked on so that a stopped
// process holding the lock cannot hang the caller past its context.
func (s *Store) lock(ctx context.Context, name string) (unlock func(), err error) {
	stripe := sha256.Sum256([]byte(name))[0]
	sem := s.locks[stripe]
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f, err := s.openLock(stripe)
	if err != nil {
		<-sem
		return nil, err
	}
	release := func() {
		_ = f.Close() // closing the only descriptor releases the flock
		<-sem
	}
	fd := int(f.Fd())
	wait := 50 * time.Microsecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return release, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			release()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			release()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Millisecond)
	}
}

// openLock opens the lock file of a stripe, creating it and .locks if needed.
func (s *Store) openLock(stripe byte) (*os.File, error) {
	dir := filepath.Join(s.root, lockDir)
	name := filepath.Join(dir, fmt.Sprintf("%02x", stripe))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, fileMode)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, fileMode)
	}
	return f, err
}
