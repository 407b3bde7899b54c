package watch

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/fsnotify/fsnotify"
)

// fsnotifySource adapts fsnotify (inotify on Linux) to Source. It is the
// only place the fsnotify types appear.
type fsnotifySource struct {
	w      *fsnotify.Watcher
	events chan FSEvent
	errs   chan error
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// eventBuffer bounds the events translated but not yet read by Run. The
// kernel queue (fs.inotify.max_queued_events, 16384 by default) buffers
// the rest; when it overflows the watcher is told and rescans.
const eventBuffer = 1024

func newFSNotify() (*fsnotifySource, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		if errors.Is(err, syscall.EMFILE) {
			return nil, fmt.Errorf("start inotify: %w: %w", ErrWatchLimit, err)
		}
		return nil, fmt.Errorf("start inotify: %w", err)
	}
	s := &fsnotifySource{
		w:      fw,
		events: make(chan FSEvent, eventBuffer),
		errs:   make(chan error, 16),
		done:   make(chan struct{}),
	}
	s.wg.Add(1)
	go s.pump()
	return s, nil
}

// pump translates fsnotify's events until the watcher is closed.
func (s *fsnotifySource) pump() {
	defer s.wg.Done()
	defer close(s.events)
	in, errs := s.w.Events, s.w.Errors
	for {
		select {
		case ev, ok := <-in:
			if !ok {
				return
			}
			op := translateOp(ev.Op)
			if op == 0 {
				continue
			}
			select {
			case s.events <- FSEvent{Path: ev.Name, Op: op}:
			case <-s.done:
				return
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				err = fmt.Errorf("%w: %w", ErrOverflow, err)
			}
			select {
			case s.errs <- err:
			case <-s.done:
				return
			}
		case <-s.done:
			return
		}
	}
}

// translateOp maps fsnotify's operations to ours. A Chmod alone is dropped
// here: inotify sends one whenever a link count changes, including for the
// watcher's own hard links.
func translateOp(o fsnotify.Op) Op {
	var op Op
	if o.Has(fsnotify.Create) {
		op |= Create
	}
	if o.Has(fsnotify.Write) {
		op |= Write
	}
	if o.Has(fsnotify.Remove) {
		op |= Remove
	}
	if o.Has(fsnotify.Rename) {
		op |= Rename
	}
	return op
}

func (s *fsnotifySource) Add(dir string) error {
	if err := s.w.Add(dir); err != nil {
		return addError(dir, err)
	}
	return nil
}

// addError says which limit an inotify_add_watch error means.
func addError(dir string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("watch %s: %w: %w", dir, ErrWatchLimit, err)
	}
	return fmt.Errorf("watch %s: %w", dir, err)
}

func (s *fsnotifySource) Remove(dir string) error { return s.w.Remove(dir) }
func (s *fsnotifySource) Events() <-chan FSEvent  { return s.events }
func (s *fsnotifySource) Errors() <-chan error    { return s.errs }

func (s *fsnotifySource) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.w.Close()
		s.wg.Wait()
	})
	return err
}
