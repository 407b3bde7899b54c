package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cassback/cassback/manifest/sstable"
)

// Options configures a Watcher. Zero values take the documented defaults.
type Options struct {
	// Roots are the data directories (data_file_directories) to watch.
	Roots []string
	// ExcludeKeyspaces are never watched or reported (exact names).
	ExcludeKeyspaces []string
	// IncludeSystem also watches the keyspace "system" (matched without
	// regard to case); system_* keyspaces are always watched.
	IncludeSystem bool

	// HoldDirs maps a root to the folder where hard links are held for the
	// consumer. It must be on the root's file system and outside every
	// root. A root without an entry uses "<parent>/.cassback-hold-<base>"
	// beside it (/var/lib/cassandra/.cassback-hold-data for
	// /var/lib/cassandra/data). New removes holds left by an earlier run;
	// only one Watcher may use a hold folder at a time.
	HoldDirs map[string]string

	// Debounce is how long a directory must be quiet after an event before
	// its SSTables are checked; a busy directory is still checked every
	// 10×Debounce. Default 200ms.
	Debounce time.Duration
	// RescanInterval is the period of full rescans, a safety net for lost
	// events. Default 10 minutes.
	RescanInterval time.Duration
	// PollInterval is the period of full rescans while some directory
	// cannot be watched (inotify limit reached). Default 30 seconds.
	PollInterval time.Duration

	// Source delivers file-system events; nil means fsnotify.
	Source Source
	// Clock is the time source; nil means the real clock.
	Clock Clock
	// Log receives warnings (watch limit, lost events, rescan errors) and
	// debug detail; nil discards them.
	Log *slog.Logger
}

// Defaults for Options.
const (
	DefaultDebounce       = 200 * time.Millisecond
	DefaultRescanInterval = 10 * time.Minute
	DefaultPollInterval   = 30 * time.Second
)

// maxDelayFactor bounds how long events can postpone a directory's check:
// at most this many Debounce periods after its first pending event.
const maxDelayFactor = 10

// Watcher turns file-system events under Cassandra data directories into
// Events. Create it with New, then call Run once.
type Watcher struct {
	opts  Options
	log   *slog.Logger
	clock Clock
	roots []*rootState

	// Seams for tests.
	scan  func(root string, opt sstable.ScanOptions) (sstable.ScanResult, error)
	syncc chan chan struct{}

	started atomic.Bool
	loop    loopState // owned by Run's goroutine
}

type rootState struct {
	path string // absolute, clean
	hold string // absolute, clean
	h    *Holder
	dir  *dirState
}

// New checks opts and prepares the hold folders: it creates them, removes
// holds an earlier run left behind and checks that each is on its root's
// file system (the error then wraps ErrCrossDevice).
func New(opts Options) (*Watcher, error) {
	if len(opts.Roots) == 0 {
		return nil, errors.New("watch: no data directory given")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.RescanInterval <= 0 {
		opts.RescanInterval = DefaultRescanInterval
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	w := &Watcher{
		opts:  opts,
		log:   opts.Log,
		clock: opts.Clock,
		scan:  sstable.Scan,
		syncc: make(chan chan struct{}),
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.clock == nil {
		w.clock = realClock{}
	}
	holds := map[string]string{}
	for k, v := range opts.HoldDirs {
		abs, err := filepath.Abs(k)
		if err != nil {
			return nil, fmt.Errorf("watch: hold folder for %s: %w", k, err)
		}
		holds[abs] = v
	}
	for _, r := range opts.Roots {
		root, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("watch: data directory %s: %w", r, err)
		}
		fi, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("watch: data directory: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("watch: data directory %s is not a directory", root)
		}
		for _, o := range w.roots {
			if within(root, o.path) || within(o.path, root) {
				return nil, fmt.Errorf("watch: data directories %s and %s overlap", o.path, root)
			}
		}
		hold := holds[root]
		if hold == "" {
			hold = defaultHold(root)
		}
		if hold, err = filepath.Abs(hold); err != nil {
			return nil, fmt.Errorf("watch: hold folder: %w", err)
		}
		w.roots = append(w.roots, &rootState{path: root, hold: hold})
	}
	for _, rs := range w.roots {
		for _, o := range w.roots {
			if within(rs.hold, o.path) || within(o.path, rs.hold) {
				return nil, fmt.Errorf("watch: hold folder %s overlaps data directory %s: choose one outside it", rs.hold, o.path)
			}
		}
		if err := prepareHold(rs); err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
		rs.h = newHolder(rs.path, rs.hold, filepath.Join(rs.hold, heldDir))
	}
	return w, nil
}

// defaultHold is the hold folder of the data directory root when none is
// set: beside it, on the same file system as a rule.
func defaultHold(root string) string {
	return filepath.Join(filepath.Dir(root), ".cassback-hold-"+filepath.Base(root))
}

// within reports whether p is dir or below it (both absolute and clean).
func within(p, dir string) bool {
	if p == dir {
		return true
	}
	if !strings.HasSuffix(dir, string(filepath.Separator)) {
		dir += string(filepath.Separator)
	}
	return strings.HasPrefix(p, dir)
}

// heldDir is the folder below a hold folder that holds the links. Links
// mirror the data directory: <hold>/held/<ks>/<table>/<file>.<n>, n
// numbering the event, so that links of successive reports of one file
// differ. New removes it, and only it: a hold folder pointed at the wrong
// place loses nothing else.
const heldDir = "held"

// prepareHold creates rs.hold, removes the links an earlier run left and
// checks that it is on the root's file system.
func prepareHold(rs *rootState) error {
	if err := os.MkdirAll(rs.hold, 0o700); err != nil {
		return fmt.Errorf("hold folder: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(rs.hold, heldDir)); err != nil {
		return fmt.Errorf("remove stale holds: %w", err)
	}
	return sameDevice(rs.hold, rs.path)
}

// sameDevice checks that the hold folder is on root's file system.
func sameDevice(hold, root string) error {
	rd, err := deviceOf(root)
	if err != nil {
		return err
	}
	hd, err := deviceOf(hold)
	if err != nil {
		return err
	}
	if rd != hd {
		return crossDevice(hold, root, nil)
	}
	return nil
}

func crossDevice(hold, root string, err error) error {
	if err != nil {
		return fmt.Errorf("hold folder %s, data directory %s: %w (set a hold folder on the data directory's file system): %w", hold, root, ErrCrossDevice, err)
	}
	return fmt.Errorf("hold folder %s, data directory %s: %w (set a hold folder on the data directory's file system)", hold, root, ErrCrossDevice)
}

// Release removes the hard links held for ev once the consumer is done with
// its files. It is safe to call from any goroutine, also after Run returned,
// and more than once; events without holds (Gone, Synced) need none.
func (w *Watcher) Release(ev Event) error {
	for _, l := range ev.links {
		if !slices.ContainsFunc(w.roots, func(rs *rootState) bool { return within(l, filepath.Join(rs.hold, heldDir)) }) {
			return fmt.Errorf("release %s: not held by this watcher", l)
		}
	}
	return removeLinks(ev.links)
}

func removeLinks(links []string) error {
	var first error
	for _, l := range links {
		if err := os.Remove(l); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = fmt.Errorf("release hold: %w", err)
		}
	}
	return first
}
