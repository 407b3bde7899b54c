package manifest

import (
	"time"

	"github.com/cassback/cassback/chunk"
)

// FormatVersion is the manifest encoding this code writes. Readers accept
// it and refuse any other with a clear error. Format 2 added Session;
// format 3 stores each table's files as a tree of chunks (tree.go).
const FormatVersion = 3

// Manifest records the complete SSTables of one keyspace of one host at one
// moment. It is immutable once stored; a newer state is a newer Manifest.
type Manifest struct {
	Format           int       `json:"format"`
	Name             string    `json:"name"` // BackupName(Time, Keyspace, Host)
	Host             string    `json:"host"`
	Keyspace         string    `json:"keyspace"`
	Time             time.Time `json:"time"` // UTC, whole microseconds
	CassandraVersion string    `json:"cassandra_version,omitempty"`
	// Session is the ID of the backup session that wrote the manifest: a
	// purge withdraws a manifest that was never committed once that
	// session can no longer commit it (docs/design.md §4).
	Session string  `json:"session"`
	Tables  []Table `json:"tables"` // sorted by Name, then ID
	// Nodes are the chunks of the trees the tables' files are stored in:
	// set by Encode and by Get, and among Refs, since a backup needs them
	// as much as its files' chunks.
	Nodes []chunk.Ref `json:"-"`
}

// Table is one table (or column family) of the keyspace.
type Table struct {
	Name  string `json:"name"`
	ID    string `json:"id,omitempty"` // 32 lowercase hex digits from the directory name (2.1+), else ""
	Files []File `json:"files"`        // sorted by Path, then Root
	// Count and Bytes are the number and total size of Files; GetHeader
	// sets them without reading the files.
	Count int   `json:"-"`
	Bytes int64 `json:"-"`
}

// File is one SSTable component file as it was backed up.
type File struct {
	// Path is relative to the data directory, slash-separated, in the layout
	// of the version that wrote it, e.g. "ks/t-0123…/nb-1-big-Data.db". It
	// never starts with '/' and has no "." or ".." segment.
	Path  string    `json:"path"`
	Root  string    `json:"root,omitempty"` // the data directory it was read from (JBOD)
	Size  int64     `json:"size"`
	Mode  uint32    `json:"mode"` // permission bits
	UID   uint32    `json:"uid"`
	GID   uint32    `json:"gid"`
	User  string    `json:"user,omitempty"`
	Group string    `json:"group,omitempty"`
	MTime time.Time `json:"mtime"`
	Inode uint64    `json:"inode,omitempty"` // for the unchanged-file fast path only
	Sum   chunk.ID  `json:"blake3"`          // BLAKE3-256 of the whole file
	// Chunks lists the file's chunks in order; their lengths add up to Size.
	Chunks []chunk.Ref `json:"chunks"`
	// Unstored marks a file that existed when continuous backup started
	// with --ignore-existing: it is recorded, but its bytes were never read
	// or stored (no Sum, no Chunks). Restore skips it and says so.
	Unstored bool `json:"unstored,omitempty"`
}
