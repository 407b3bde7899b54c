package watch

import "time"

// Op is a set of file-system operations on a path.
type Op uint32

const (
	Create Op = 1 << iota // created, or renamed into a watched directory
	Write                 // written to (not necessarily finished)
	Remove                // removed
	Rename                // renamed away
	Chmod                 // attributes changed (also sent by inotify when a link count changes); ignored
)

func (o Op) String() string {
	var s string
	for _, x := range []struct {
		op   Op
		name string
	}{{Create, "create"}, {Write, "write"}, {Remove, "remove"}, {Rename, "rename"}, {Chmod, "chmod"}} {
		if o&x.op != 0 {
			if s != "" {
				s += "|"
			}
			s += x.name
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// FSEvent is one notification from a Source.
type FSEvent struct {
	Path string // the path as given to Add joined with the entry's name
	Op   Op
}

// Source delivers change notifications for individual directories, like
// inotify: not recursive, and only for entries of directories added. The
// default Source is fsnotify; tests inject their own.
//
// Add watches a directory; it returns an error wrapping ErrWatchLimit when
// the kernel will not watch more, and one wrapping fs.ErrNotExist when the
// directory is gone. Remove stops watching (an error for a directory the
// kernel already dropped is expected and ignored). Events and Errors are
// read by one goroutine; Errors may carry ErrOverflow. Close releases
// everything; Run calls it when it returns.
type Source interface {
	Add(dir string) error
	Remove(dir string) error
	Events() <-chan FSEvent
	Errors() <-chan error
	Close() error
}

// Clock is the watcher's time source; tests inject one they advance by hand.
type Clock interface {
	Now() time.Time
	// After sends the time once d has passed (at once for d <= 0).
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
