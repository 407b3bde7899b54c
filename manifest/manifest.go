package manifest

import (
	"errors"
	"fmt"
	"iter"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest/sstable"
)

// FormatVersion is the manifest encoding this code writes. Readers accept
// it and refuse any other with a clear error. Format 2 added Session;
// format 3 stores each table's files as a tree of chunks (tree.go), and
// format 4 its leaves in a binary encoding (leaf.go).
const FormatVersion = 4

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

	// roots are the tables' trees of a manifest read by GetHeader, which
	// EachFile reads; nil once the files are read.
	roots []rootTable
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

// MaxDecodedMemory bounds what Read holds of a manifest in memory: its
// tables, files and chunk references at their Go sizes plus the bytes of
// its strings, counted as they are decoded (Manifest.MemCost). It holds
// 1.16 million chunk references of 36 bytes (4.5 TiB of one keyspace on
// one node at the default mean chunk of 4 MiB), or some 140,000 files
// without chunks. Without it `{},`, which decodes to a 184-byte File, made a bomb
// within MaxDecodedSize take 16 GB. A command holds a decoded manifest and,
// while it decodes one, the pieces it assembles it from, and the garbage
// collector lets the heap grow to twice what is live: at this bound every
// command stays under 256 MiB (TestRSSAtObjectLimits in cmd/cassback).
// A larger manifest is valid: restore, validate, show, purge and backup
// read it a table, a batch of leaves and a file at a time (GetHeader,
// EachFile), and one file's record is bounded by the same amount.
const MaxDecodedMemory = 40 << 20

// ErrTooLarge reports a manifest, a table or a file too large for a
// reader: a manifest over MaxDecodedMemory for Read, a file or a table's
// tree over what EachFile accepts for every reader (and Encode).
var ErrTooLarge = errors.New("keyspace too large for one manifest")

// MemCost is what m costs a reader in memory, as a reader counts it
// against MaxDecodedMemory: tables, files and chunk references at their Go
// sizes, plus the bytes of the strings it decodes.
func (m *Manifest) MemCost() int64 {
	n := int64(len(m.Name) + len(m.Host) + len(m.Keyspace) + len(m.CassandraVersion) + len(m.Session))
	for i := range m.Tables {
		t := &m.Tables[i]
		n += tableSize + int64(len(t.Name)+len(t.ID))
		for j := range t.Files {
			f := &t.Files[j]
			n += fileSize + int64(len(f.Path)+len(f.Root)+len(f.User)+len(f.Group)) + int64(len(f.Chunks))*refSize
		}
	}
	return n
}

// In-memory sizes of what a manifest holds, as a reader counts them.
var (
	tableSize = int64(reflect.TypeFor[Table]().Size())
	fileSize  = int64(reflect.TypeFor[File]().Size())
	refSize   = int64(reflect.TypeFor[chunk.Ref]().Size())
)

// Sort puts tables in order by name then ID, and each table's files by
// path then root, as Validate requires.
func (m *Manifest) Sort() {
	slices.SortFunc(m.Tables, compareTables)
	for i := range m.Tables {
		// Files usually come in order (a continuous commit concatenates
		// its SSTables in order): checking costs a pass, sorting 800,000
		// records of 184 bytes most of a second.
		if !slices.IsSortedFunc(m.Tables[i].Files, compareFiles) {
			slices.SortFunc(m.Tables[i].Files, compareFiles)
		}
	}
}

func compareTables(a, b Table) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func compareFiles(a, b File) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	return strings.Compare(a.Root, b.Root)
}

// Refs yields every chunk reference of every file, in manifest order; a
// chunk used twice is yielded twice.
func (m *Manifest) Refs() iter.Seq[chunk.Ref] {
	return func(yield func(chunk.Ref) bool) {
		for _, r := range m.Nodes {
			if !yield(r) {
				return
			}
		}
		for _, t := range m.Tables {
			for _, f := range t.Files {
				for _, r := range f.Chunks {
					if !yield(r) {
						return
					}
				}
			}
		}
	}
}

// TotalSize returns the sum of the sizes of all files.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, t := range m.Tables {
		for _, f := range t.Files {
			n += f.Size
		}
	}
	return n
}

// Validate checks every field of m: the format, the name against host,
// keyspace and time (UTC, whole microseconds, years 1970 – 9999), tables
// sorted by name then ID and unique, and for each file a clean relative path
// that sstable.ParsePath reads as a final SSTable component of this keyspace and
// table (not in a snapshot or backups/ directory), files sorted by path then
// root and unique, a size ≥ 0, permission bits only, a non-zero BLAKE3 sum,
// and chunks of positive length that add up to the size.
func (m *Manifest) Validate() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("manifest format %d not supported", m.Format)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("manifest %.300q: %s", m.Name, fmt.Sprintf(format, a...))
	}
	if !sstable.IsName(m.Keyspace) {
		return bad("keyspace %.300q: want letters, digits and '_'", m.Keyspace)
	}
	if err := checkHost(m.Host); err != nil {
		return bad("%v", err)
	}
	if err := checkTime(m.Time); err != nil {
		return bad("time: %v", err)
	}
	if m.Time.Location() != time.UTC {
		return bad("time %s: not UTC", m.Time)
	}
	if m.Time.Nanosecond()%1000 != 0 {
		return bad("time %s: finer than a microsecond", m.Time)
	}
	if want := BackupName(m.Time, m.Keyspace, m.Host); m.Name != want {
		return bad("name does not match host, keyspace and time (want %s)", want)
	}
	if m.Session != "" && !isHexID(m.Session) {
		return bad("session %.100q: want 24 lowercase hex digits", m.Session)
	}
	if !printableASCII(m.CassandraVersion, 64) {
		return bad("cassandra version %.100q: want at most 64 printable ASCII characters", m.CassandraVersion)
	}
	for i := range m.Tables {
		t := &m.Tables[i]
		if !sstable.IsName(t.Name) {
			return bad("table %.300q: want letters, digits and '_'", t.Name)
		}
		if t.ID != "" && !sstable.IsTableID(t.ID) {
			return bad("table %s: id %.100q: want 32 lowercase hex digits", t.Name, t.ID)
		}
		if i > 0 && compareTables(m.Tables[i-1], *t) >= 0 {
			return bad("table %s %s: tables not sorted by name and id, or repeated", t.Name, t.ID)
		}
		for j := range t.Files {
			f := &t.Files[j]
			if err := m.checkFile(t, f); err != nil {
				return bad("table %s: file %.300q: %v", t.Name, f.Path, err)
			}
			if j > 0 && compareFiles(t.Files[j-1], *f) >= 0 {
				return bad("table %s: file %s: files not sorted by path and root, or repeated", t.Name, f.Path)
			}
		}
	}
	return nil
}

func (m *Manifest) checkFile(t *Table, f *File) error {
	p, err := sstable.ParsePath(f.Path)
	switch {
	case err != nil:
		return err
	case p.Kind != sstable.KindComponent:
		return errors.New("not an SSTable component")
	case p.Temporary:
		return errors.New("a temporary file")
	case p.Snapshot != "" || p.InBackups:
		return errors.New("in a snapshot or backups directory")
	case p.Keyspace != m.Keyspace:
		return fmt.Errorf("not in keyspace %s", m.Keyspace)
	case p.Table != t.Name || p.TableID != t.ID:
		return fmt.Errorf("not in table %s %s", t.Name, t.ID)
	}
	// Root only records where the file was read (restore writes below its
	// own data directory), so any printable path is accepted as given.
	if !utf8.ValidString(f.Root) || hasControl(f.Root) || len(f.Root) > 4096 {
		return fmt.Errorf("root %.300q: want a printable path of at most 4096 bytes", f.Root)
	}
	if f.Size < 0 {
		return fmt.Errorf("size %d", f.Size)
	}
	if f.Mode&^0o7777 != 0 {
		return fmt.Errorf("mode %#o: want permission bits only", f.Mode)
	}
	if !validOwner(f.User) || !validOwner(f.Group) {
		return fmt.Errorf("user %.100q or group %.100q: want at most 256 printable characters", f.User, f.Group)
	}
	if y := f.MTime.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("mtime: year %d: want 0 to 9999", y)
	}
	if f.Unstored {
		// Recorded by --ignore-existing: known to exist, never read.
		if len(f.Chunks) != 0 || !f.Sum.IsZero() {
			return errors.New("unstored file with chunks or a sum")
		}
		return nil
	}
	if f.Sum.IsZero() {
		return errors.New("no BLAKE3 sum")
	}
	var total int64
	for k, r := range f.Chunks {
		if r.Len == 0 {
			return fmt.Errorf("chunk %d: length 0", k)
		}
		total += int64(r.Len)
		if total > f.Size {
			break // also keeps total from overflowing
		}
	}
	if total != f.Size {
		return fmt.Errorf("chunk lengths add up to %s bytes, size is %d", atLeast(total, f.Size), f.Size)
	}
	return nil
}

func atLeast(total, size int64) string {
	if total > size {
		return fmt.Sprintf("more than %d", size)
	}
	return fmt.Sprint(total)
}

// checkTime keeps times that JSON and backup names can hold, and refuses the
// zero time a forgotten field has.
func checkTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return fmt.Errorf("year %d: want 1970 to 9999", y)
	}
	return nil
}

func printableASCII(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func validOwner(s string) bool {
	return len(s) <= 256 && utf8.ValidString(s) && !hasControl(s)
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return true
		}
	}
	return false
}

// isHexID reports whether s is a session ID: 24 lowercase hex digits.
func isHexID(s string) bool {
	return len(s) == 24 && strings.Trim(s, "0123456789abcdef") == ""
}
