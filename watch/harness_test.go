package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeClock is a Clock the test advances by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
		} else {
			w.ch <- c.now
		}
	}
	c.waiters = kept
}

// fakeSource is a Source that behaves like inotify on a real directory
// tree: pump compares the tree with the last pump and emits events only for
// entries of watched directories; a deleted directory loses its watch.
type fakeSource struct {
	mu       sync.Mutex
	roots    []string
	added    map[string]bool
	adds     []string               // every successful Add, in order
	removes  []string               // every Remove call
	addHook  func(dir string) error // before a watch is added; an error refuses it
	afterAdd func(dir string)       // after a watch is added
	snap     map[string]fsEntry
	events   chan FSEvent
	errs     chan error
	closed   bool
}

type fsEntry struct {
	dir   bool
	ino   uint64
	size  int64
	mtime int64
}

func newFakeSource(roots ...string) *fakeSource {
	s := &fakeSource{
		roots: roots, added: map[string]bool{},
		events: make(chan FSEvent, 1<<16), errs: make(chan error, 16),
	}
	s.snap = s.read()
	return s
}

func (s *fakeSource) Add(dir string) error {
	s.mu.Lock()
	hook := s.addHook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(dir); err != nil {
			return err
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("watch %s: not a directory", dir)
	}
	s.mu.Lock()
	s.added[dir] = true
	s.adds = append(s.adds, dir)
	after := s.afterAdd
	s.mu.Unlock()
	if after != nil {
		after(dir)
	}
	return nil
}

func (s *fakeSource) Remove(dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removes = append(s.removes, dir)
	if !s.added[dir] {
		return errors.New("not watched")
	}
	delete(s.added, dir)
	return nil
}

func (s *fakeSource) Events() <-chan FSEvent { return s.events }
func (s *fakeSource) Errors() <-chan error   { return s.errs }
func (s *fakeSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeSource) watched(dir string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.added[dir]
}

func (s *fakeSource) watchedDirs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for d := range s.added {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// read takes the "kernel's" view of every root.
func (s *fakeSource) read() map[string]fsEntry {
	m := map[string]fsEntry{}
	for _, r := range s.roots {
		filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == r {
				return nil
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil
			}
			e := fsEntry{dir: fi.IsDir(), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				e.ino = st.Ino
			}
			if e.dir {
				e.size, e.mtime = 0, 0
			}
			m[p] = e
			return nil
		})
	}
	return m
}

// pump emits the events inotify would have sent for the changes since the
// last pump, in a plausible order: creations top-down, changes, removals
// bottom-up.
func (s *fakeSource) pump() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.read()
	emit := func(p string, op Op) {
		if s.added[filepath.Dir(p)] {
			s.events <- FSEvent{Path: p, Op: op}
		}
	}
	var created, changed, removed []string
	for p, e := range cur {
		old, ok := s.snap[p]
		switch {
		case !ok:
			created = append(created, p)
		case old.dir != e.dir || old.ino != e.ino:
			created = append(created, p) // replaced by a rename
		case old != e:
			changed = append(changed, p)
		}
	}
	for p := range s.snap {
		if _, ok := cur[p]; !ok {
			removed = append(removed, p)
		}
	}
	sort.Strings(created)
	sort.Strings(changed)
	sort.Sort(sort.Reverse(sort.StringSlice(removed)))
	for _, p := range removed {
		emit(p, Remove)
		if s.snap[p].dir && s.added[p] {
			if !s.added[filepath.Dir(p)] {
				s.events <- FSEvent{Path: p, Op: Remove} // IN_DELETE_SELF
			}
			delete(s.added, p) // the kernel drops the watch
		}
	}
	for _, p := range created {
		emit(p, Create)
	}
	for _, p := range changed {
		emit(p, Write)
	}
	s.snap = cur
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// harness runs a Watcher with a fake source and clock on a real tree.
type harness struct {
	t       *testing.T
	root    string
	w       *Watcher
	src     *fakeSource
	clk     *fakeClock
	out     chan Event
	logs    *syncBuffer
	done    chan struct{}
	err     error
	cancel  context.CancelFunc
	stopped bool
}

type harnessOpt struct {
	opts   func(*Options)
	before func(*harness) // after New, before Run
	outCap int
}

const testDebounce = 200 * time.Millisecond

func newHarness(t *testing.T, root string, ho harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, root: root, clk: newFakeClock(), logs: &syncBuffer{}, done: make(chan struct{})}
	h.src = newFakeSource(root)
	opts := Options{
		Roots: []string{root}, Source: h.src, Clock: h.clk, Debounce: testDebounce,
		RescanInterval: time.Hour, PollInterval: time.Minute,
		Log: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if ho.opts != nil {
		ho.opts(&opts)
	}
	w, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.w = w
	if ho.before != nil {
		ho.before(h)
	}
	cap := ho.outCap
	if cap == 0 {
		cap = 1 << 16
	} else if cap < 0 {
		cap = 0
	}
	h.out = make(chan Event, cap)
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		h.err = w.Run(ctx, h.out)
	}()
	t.Cleanup(func() {
		h.stop()
		if h.err != nil && !errors.Is(h.err, context.Canceled) {
			t.Errorf("Run: %v", h.err)
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", h.logs.String())
		}
	})
	return h
}

func (h *harness) stop() {
	if h.stopped {
		return
	}
	h.stopped = true
	h.cancel()
	<-h.done
}

// sync waits until the watcher has handled every event the source holds and
// every check due by the clock, and returns the events sent meanwhile.
func (h *harness) sync() []Event {
	h.t.Helper()
	done := make(chan struct{})
	select {
	case h.w.syncc <- done:
		<-done
	case <-h.done:
		h.t.Fatalf("Run returned: %v", h.err)
	}
	var evs []Event
	if cap(h.out) == 0 {
		return nil // the test receives itself
	}
	for {
		select {
		case ev, ok := <-h.out:
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// step reports the file-system changes since the last step, lets the
// debounce period pass and returns the resulting events.
func (h *harness) step() []Event {
	h.t.Helper()
	h.src.pump()
	evs := h.sync()
	h.clk.Advance(testDebounce)
	return append(evs, h.sync()...)
}

// receive waits (boundedly) for the next event on an unbuffered out.
func (h *harness) receive() Event {
	h.t.Helper()
	select {
	case ev := <-h.out:
		return ev
	case <-h.done:
		h.t.Fatalf("Run returned: %v", h.err)
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no event within 10s")
	}
	return Event{}
}

func (h *harness) abs(rel string) string { return filepath.Join(h.root, filepath.FromSlash(rel)) }

// describe renders events as "kind dir/prefix" lines, sorted within runs of
// the same kind only where the watcher promises no order.
func describe(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		s := ev.Kind.String()
		if ev.Kind != Synced {
			s += " " + ev.SSTable.Dir + "/" + ev.SSTable.Prefix
		}
		out = append(out, s)
	}
	return out
}

func kinds(evs []Event, k Kind) []Event {
	var out []Event
	for _, ev := range evs {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

func keys(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.SSTable.Dir+"/"+ev.SSTable.Prefix)
	}
	sort.Strings(out)
	return out
}

// tableID is a fixed table id for hand-made trees.
const tableID = "0123456789abcdef0123456789abcdef"

// writeFiles creates dir and writes each file with content derived from
// its name.
func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("content of "+n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var modernComponents = []string{"Data.db", "Index.db", "Filter.db", "Statistics.db", "Summary.db", "Digest.crc32", "CompressionInfo.db"}

// writeSSTable writes a complete SSTable (components, then TOC.txt) with
// final names.
func writeSSTable(t *testing.T, dir, prefix string) {
	t.Helper()
	var names []string
	for _, c := range modernComponents {
		names = append(names, prefix+"-"+c)
	}
	writeFiles(t, dir, names...)
	writeTOC(t, dir, prefix)
}

// writeTOC writes <namePrefix>-TOC.txt listing the components.
func writeTOC(t *testing.T, dir, namePrefix string) {
	t.Helper()
	toc := strings.Join(append(slices.Clone(modernComponents), "TOC.txt"), "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, namePrefix+"-TOC.txt"), []byte(toc), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// heldFiles lists the links below a hold folder.
func heldFiles(t *testing.T, hold string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(hold, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}
