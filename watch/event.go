package watch

import (
	"errors"
	"time"

	"github.com/cassback/cassback/manifest/sstable"
)

// Kind says what an Event reports.
type Kind uint8

const (
	// Ready: an SSTable became complete (or was complete at start-up). Its
	// files are held for the consumer until Release.
	Ready Kind = iota + 1
	// Rewritten: a component of an SSTable already reported Ready changed
	// (Statistics.db or Summary.db replaced via ".tmp" and rename, rewritten
	// in place, or a component added such as an SAI index). The event
	// carries the whole SSTable again, with fresh hard links; Changed names
	// the files that differ from the last report.
	Rewritten
	// Gone: an SSTable reported Ready no longer exists (compaction, DROP,
	// TRUNCATE). SSTable is the one last reported. Nothing is held.
	Gone
	// Synced: a full scan of Root ended. Every SSTable the watcher considers
	// live in Root has been reported Ready (or Rewritten) and not Gone by the
	// events before this one, and nothing else has. Sent after the start-up
	// scan and after every periodic rescan.
	Synced
)

func (k Kind) String() string {
	switch k {
	case Ready:
		return "ready"
	case Rewritten:
		return "rewritten"
	case Gone:
		return "gone"
	case Synced:
		return "synced"
	}
	return "unknown"
}

// Event is one thing the backup must react to.
type Event struct {
	Kind Kind
	// Root is the data directory, as an absolute, clean path.
	Root string
	// SSTable is the SSTable as found complete (Ready, Rewritten) or as last
	// reported (Gone); its Files are relative to Root. Empty for Synced.
	SSTable sstable.SSTable
	// Held maps every entry of SSTable.Files to a hard link of it taken just
	// before the event was sent (Ready, Rewritten). Read the bytes there:
	// they stay readable after Cassandra deletes or replaces the file, until
	// Release. The link shares the file's inode, so its size, mtime, owner
	// and mode are the file's.
	Held map[string]string
	// Changed lists the entries of SSTable.Files that are new or have a
	// different inode, size or mtime than in the last report (Rewritten).
	Changed []string
	// Time is when the watcher took the links (Ready, Rewritten) or saw the
	// change (Gone, Synced), from Options.Clock.
	Time time.Time

	links []string // the values of Held, for Release
}

// ErrWatchLimit is wrapped by a Source's Add when the kernel's inotify
// limits are exhausted: fs.inotify.max_user_watches (ENOSPC from
// inotify_add_watch) or fs.inotify.max_user_instances (EMFILE from
// inotify_init). The watcher then rescans every Options.PollInterval.
var ErrWatchLimit = errors.New("inotify limit reached")

// ErrOverflow is sent on a Source's Errors channel when it lost events
// (inotify's queue overflowed, fs.inotify.max_queued_events). The watcher
// then rescans.
var ErrOverflow = errors.New("file system events lost")

// ErrCrossDevice is wrapped by the errors of New and Run when a hold folder
// is not on the file system of its data directory: hard links cannot cross
// file systems.
var ErrCrossDevice = errors.New("hold folder is on another file system than the data directory")
