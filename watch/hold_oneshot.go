package watch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// oneShotPrefix names the private folders of NewHolder in a hold folder,
// and oneShotLock the lock file that tells live ones from stale ones.
const (
	oneShotPrefix = "oneshot-"
	oneShotLock   = "oneshot.lock"
)

// NewHolder returns a Holder for the data directory root with a private
// folder in the hold folder hold ("" for the default beside root, as a
// Watcher's: /var/lib/cassandra/.cassback-hold-data for
// /var/lib/cassandra/data), for a one-shot backup. Several may run at once,
// beside a Watcher using the same hold folder: each process holds a shared
// lock on <hold>/oneshot.lock while its folder exists, and NewHolder first
// removes the folders a process that ended left, when it can take the lock
// exclusively (no other one-shot holder is alive). The hold folder must be
// on root's file system (the error then wraps ErrCrossDevice) and outside
// it. Close releases everything.
func NewHolder(root, hold string) (*Holder, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("hold: data directory %s: %w", root, err)
	}
	if hold == "" {
		hold = defaultHold(root)
	}
	if hold, err = filepath.Abs(hold); err != nil {
		return nil, fmt.Errorf("hold folder %s: %w", hold, err)
	}
	if within(hold, root) || within(root, hold) {
		return nil, fmt.Errorf("hold folder %s overlaps data directory %s: choose one outside it", hold, root)
	}
	if err := os.MkdirAll(hold, 0o700); err != nil {
		return nil, fmt.Errorf("hold folder: %w", err)
	}
	if err := sameDevice(hold, root); err != nil {
		return nil, err
	}
	lock, err := lockOneShot(hold)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(hold, oneShotPrefix)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("hold folder: %w", err)
	}
	h := newHolder(root, hold, dir)
	h.lock = lock
	return h, nil
}

// lockOneShot takes the shared lock of the hold folder's one-shot holders,
// after removing their stale folders if no other holds it.
func lockOneShot(hold string) (*os.File, error) {
	name := filepath.Join(hold, oneShotLock)
	f, err := os.OpenFile(name, os.O_RDONLY|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("hold lock: %w", err)
	}
	fd := int(f.Fd())
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
		if err := removeStale(hold); err != nil {
			f.Close()
			return nil, err
		}
	}
	// Converting the exclusive lock is not atomic, but the private folder
	// is made only once the shared lock is held, so a remover that slips
	// in between finds nothing of ours.
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("hold lock %s: %w", name, err)
	}
	return f, nil
}

// removeStale removes the private folders of one-shot holders that ended;
// the caller holds the lock exclusively, so no live one has a folder.
func removeStale(hold string) error {
	ents, err := os.ReadDir(hold)
	if err != nil {
		return fmt.Errorf("hold folder: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), oneShotPrefix) {
			if err := os.RemoveAll(filepath.Join(hold, e.Name())); err != nil {
				return fmt.Errorf("remove stale holds: %w", err)
			}
		}
	}
	return nil
}

// Hold hard-links files (slash-separated, relative to the data directory,
// all in one directory: an SSTable's) into the holder's folder and returns
// the link of each; read the files there, from the inode they had when
// held, until Release. On error nothing stays held: a file that vanished
// gives an error wrapping fs.ErrNotExist, one that is a symbolic link, FIFO
// or device one wrapping sstable.ErrNotRegular.
func (h *Holder) Hold(files []string) (map[string]string, error) {
	h.seq++
	held, _, links, err := h.hold(h.seq, files)
	if err != nil {
		removeLinks(links)
		return nil, err
	}
	return held, nil
}

// Release removes links that Hold returned. It may be called from any
// goroutine.
func (h *Holder) Release(held map[string]string) error {
	links := make([]string, 0, len(held))
	for _, l := range held {
		if !within(l, h.dir) {
			return fmt.Errorf("release %s: not held by this holder", l)
		}
		links = append(links, l)
	}
	return removeLinks(links)
}

// Close removes the holder's folder with every link left in it, and
// releases its lock.
func (h *Holder) Close() error {
	err := os.RemoveAll(h.dir)
	if h.lock != nil {
		err = errors.Join(err, h.lock.Close())
	}
	if err != nil {
		return fmt.Errorf("release holds: %w", err)
	}
	return nil
}
