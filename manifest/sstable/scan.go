package sstable

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ScanOptions selects what Scan looks at. The zero value scans every
// keyspace except "system".
type ScanOptions struct {
	// Keyspaces, if not empty, limits the scan to these keyspaces (exact,
	// case-sensitive names).
	Keyspaces []string
	// ExcludeKeyspaces are never scanned (exact, case-sensitive names).
	ExcludeKeyspaces []string
	// IncludeSystem also scans the keyspace "system" (matched without regard
	// to case, like the original cassback); naming it in Keyspaces does too.
	// Other system_* keyspaces (system_auth, system_schema …) are always
	// scanned.
	IncludeSystem bool
	// MaxSkipped bounds ScanResult.Skipped; SkipCounts still counts every
	// skip. 0 means DefaultMaxSkipped; a negative value keeps none.
	MaxSkipped int
}

// DefaultMaxSkipped is the number of Skip entries Scan keeps by default.
const DefaultMaxSkipped = 1000

// SSTable is one complete SSTable found by Scan.
type SSTable struct {
	Keyspace string
	Table    string
	TableID  string // "" for directories without the 2.1+ id suffix
	Index    string // secondary index name, or ""
	Dir      string // directory relative to the data directory, slash-separated
	Prefix   string // "nb-1-big", "ks-cf-ka-1", "cf-hd-5"
	Layout   Layout
	Version  string
	Gen      string
	Format   string // "" for legacy names
	// Files are the SSTable's component files, relative to the data
	// directory and sorted: every final-named file Prefix-<Component> in
	// Dir, which includes every component TOC.txt lists and extras such as
	// SAI index components.
	Files []string
}

// Skip records something Scan did not return, for logging.
type Skip struct {
	Path   string // relative file or directory; Dir/Prefix for an SSTable
	Reason string // one of the Skip* constants
	Detail string // what exactly, for a human
}

// Reasons for a Skip. SSTables are skipped as SkipIncomplete, SkipUncommitted
// or SkipObsolete; the rest name files or whole directories.
const (
	SkipSnapshot    = "snapshot"             // a snapshots/<tag>/ tree
	SkipBackups     = "backups"              // an incremental backups/ tree
	SkipTemporary   = "temporary"            // tmp/tmplink marker, .tmp suffix, tmp/ directory
	SkipTxnLog      = "txnlog"               // a transaction log (read, not backed up)
	SkipOther       = "other"                // not an SSTable component (LCS .json, stray files)
	SkipMalformed   = "malformed"            // a name no clean path has (control characters …)
	SkipExcluded    = "excluded"             // keyspace excluded or not selected
	SkipSystem      = "system"               // the keyspace "system"
	SkipUnexpected  = "unexpected directory" // a directory where Cassandra makes none
	SkipNotRegular  = "not a regular file"   // symbolic link (never followed), FIFO, device, socket
	SkipIncomplete  = "incomplete"           // TOC.txt missing, or lists a component missing or not a regular file
	SkipUncommitted = "uncommitted"          // added by a transaction that has not committed
	SkipObsolete    = "obsolete"             // removed by a committed transaction, about to be deleted
)

// ScanResult is what Scan found.
type ScanResult struct {
	SSTables   []SSTable      // sorted by Dir, then Prefix
	Skipped    []Skip         // the first ScanOptions.MaxSkipped skips, in walk order
	SkipCounts map[string]int // every skip, by Reason
}

// Scan walks the data directory root and returns its complete SSTables.
//
// An SSTable is complete when its TOC.txt exists and
// every component it lists exists (versions before 1.2 have no TOC: Data.db,
// which 1.x renames into place last, must exist); and no transaction log in
// its directory has an ADD for it without a COMMIT. Files with a temporary
// marker or suffix are never part of an SSTable; a ".tmp" rewrite of a
// mutable component (Statistics.db) leaves the SSTable complete with the old
// component. SSTables that a committed transaction removed are skipped.
//
// Scan skips snapshots/, backups/ and tmp/ trees, transaction logs, files
// that are not SSTable components, keyspaces excluded by opt and the
// keyspace "system" unless opt.IncludeSystem. It never follows a symbolic
// link below root, to a file or a directory, and never opens anything but a
// regular file, so nothing outside the data directory is reported and a
// FIFO cannot block it: such entries are skipped as SkipNotRegular, and an
// SSTable whose TOC.txt lists one is incomplete. root itself may be a link.
//
// Directories and files may vanish while Scan runs (compaction, DROP
// TABLE): that is not an error, the SSTable is skipped or not seen. A
// directory or file that exists but cannot be read is an error naming it, so
// a backup fails instead of silently missing data.
func Scan(root string, opt ScanOptions) (ScanResult, error) {
	s := &scanner{root: root, opt: opt, res: ScanResult{SkipCounts: map[string]int{}}}
	if s.opt.MaxSkipped == 0 {
		s.opt.MaxSkipped = DefaultMaxSkipped
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return ScanResult{}, fmt.Errorf("scan data directory: %w", err)
	}
	for _, e := range entries {
		if reason, detail := opt.keyspace(e); reason != "" {
			s.skip(e.Name(), reason, detail)
		} else if err := s.dir(e.Name(), 1); err != nil {
			return ScanResult{}, err
		}
	}
	return s.res, nil
}

// Keyspaces lists the keyspace directories of the data directory root that
// Scan scans with opt, without reading them: those whose SSTables Scan may
// return.
func Keyspaces(root string, opt ScanOptions) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("scan data directory: %w", err)
	}
	var out []string
	for _, e := range entries {
		if reason, _ := opt.keyspace(e); reason == "" {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// keyspace says why Scan skips the entry e of the data directory, or ""
// for a keyspace directory to scan.
func (opt ScanOptions) keyspace(e fs.DirEntry) (reason, detail string) {
	name := e.Name()
	switch kind := entryKind(e); {
	case kind == kindOtherType:
		return SkipNotRegular, skipDetail(e.Type())
	case kind != kindDir:
		return SkipOther, "file at the root of the data directory"
	case !IsName(name):
		return SkipUnexpected, "not a keyspace name"
	case len(opt.Keyspaces) > 0 && !slices.Contains(opt.Keyspaces, name):
		return SkipExcluded, "keyspace not selected"
	case slices.Contains(opt.ExcludeKeyspaces, name):
		return SkipExcluded, "keyspace excluded"
	case strings.EqualFold(name, "system") && !opt.IncludeSystem && !slices.Contains(opt.Keyspaces, name):
		return SkipSystem, "keyspace system not included"
	}
	return "", ""
}

type scanner struct {
	root string
	opt  ScanOptions
	res  ScanResult
}

func (s *scanner) skip(rel, reason, detail string) {
	s.res.SkipCounts[reason]++
	if len(s.res.Skipped) < s.opt.MaxSkipped {
		s.res.Skipped = append(s.res.Skipped, Skip{Path: rel, Reason: reason, Detail: detail})
	}
}

// dir scans the directory rel at depth 1 (keyspace), 2 (table) or 3
// (secondary index below a table).
func (s *scanner) dir(rel string, depth int) error {
	abs := filepath.Join(s.root, filepath.FromSlash(rel))
	entries, ls, err := readListing(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // dropped while we walked
	}
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if err := s.files(rel, ls); err != nil {
		return err
	}
	for _, e := range entries {
		kind := entryKind(e)
		name := e.Name()
		sub := rel + "/" + name
		switch {
		case kind == kindOtherType:
			s.skip(sub, SkipNotRegular, skipDetail(e.Type()))
			continue
		case kind != kindDir:
			continue
		}
		switch {
		case depth == 1:
			if _, _, ok := splitTableDir(name); ok {
				if err := s.dir(sub, 2); err != nil {
					return err
				}
			} else {
				s.skip(sub, SkipUnexpected, "not a table directory")
			}
		case depth == 2 && name == "snapshots":
			s.skip(sub, SkipSnapshot, "")
		case depth == 2 && name == "backups":
			s.skip(sub, SkipBackups, "")
		case depth == 2 && name == "tmp":
			s.skip(sub, SkipTemporary, "temporary directory")
		case depth == 2 && strings.HasPrefix(name, ".") && IsName(name[1:]):
			if err := s.dir(sub, 3); err != nil {
				return err
			}
		case depth == 2 && path.Base(rel) == "snapshots":
			s.skip(sub, SkipSnapshot, "1.0 keyspace-level snapshot")
		default:
			s.skip(sub, SkipUnexpected, "")
		}
	}
	return nil
}

// files classifies the regular files of one directory and returns its
// complete SSTables.
func (s *scanner) files(rel string, ls *listing) error {
	groups := map[string]Path{}
	for _, name := range ls.sorted {
		frel := rel + "/" + name
		p, err := ParsePath(frel)
		switch {
		case err != nil:
			s.skip(frel, SkipMalformed, err.Error())
		case p.Kind == KindTxnLog:
			s.skip(frel, SkipTxnLog, "")
		case p.Kind == KindOther:
			s.skip(frel, SkipOther, "")
		case p.Snapshot != "":
			s.skip(frel, SkipSnapshot, "")
		case p.InBackups:
			s.skip(frel, SkipBackups, "")
		case p.Temporary:
			s.skip(frel, SkipTemporary, "")
		default:
			if _, ok := groups[p.Prefix]; !ok {
				groups[p.Prefix] = p
			}
		}
	}
	for _, prefix := range slices.Sorted(maps.Keys(groups)) {
		names, reason, detail, err := ls.check(prefix)
		if err != nil {
			return err
		}
		if reason != "" {
			s.skip(rel+"/"+prefix, reason, detail)
			continue
		}
		p := groups[prefix]
		t := SSTable{
			Keyspace: p.Keyspace, Table: p.Table, TableID: p.TableID, Index: p.Index,
			Dir: rel, Prefix: prefix, Layout: p.Layout,
			Version: p.Version, Gen: p.Gen, Format: p.Format,
		}
		for _, n := range names {
			t.Files = append(t.Files, rel+"/"+n)
		}
		s.res.SSTables = append(s.res.SSTables, t)
	}
	return nil
}

// CheckComplete applies Scan's completion rule to the SSTable prefix (as in
// Path.Prefix) in directory dir, an OS path. It returns the SSTable's
// component file names (base names, sorted) and ok if it is complete;
// otherwise reason says why not ("incomplete: TOC.txt lists Index.db, which
// is missing"). The error is for a directory or file that exists but cannot
// be read; a vanished directory is "incomplete", not an error. It reads the
// whole directory, so a caller checking many SSTables of one directory should
// use Scan.
func CheckComplete(dir, prefix string) (files []string, ok bool, reason string, err error) {
	_, ls, err := readListing(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, SkipIncomplete + ": directory vanished", nil
	}
	if err != nil {
		return nil, false, "", err
	}
	files, cat, detail, err := ls.check(prefix)
	if err != nil || cat != "" {
		if detail != "" {
			cat += ": " + detail
		}
		return nil, false, cat, err
	}
	return files, true, "", nil
}

// listing is one read of a directory: its regular files and what its
// transaction logs say.
type listing struct {
	abs      string
	names    map[string]bool
	odd      map[string]fs.FileMode // entries that are neither files nor directories
	sorted   []string
	byPrefix map[string][]string // final-named files by the prefix before their last '-', sorted
	txn      txnState
}

// maxListingAttempts bounds how often a directory is re-read because a
// transaction log vanished between listing and reading it.
const maxListingAttempts = 3

// readListing lists abs and then reads its transaction logs. The order
// matters: Cassandra writes an ADD record before it creates the SSTable's
// files, so every file in the listing has its ADD complete in the log read
// afterwards. A log that vanishes in between ended (committed or aborted) and
// may have taken files with it, so the directory is read again.
func readListing(abs string) ([]fs.DirEntry, *listing, error) {
	for attempt := 1; ; attempt++ {
		entries, err := os.ReadDir(abs)
		if err != nil {
			return nil, nil, err
		}
		ls := &listing{abs: abs, names: map[string]bool{}, odd: map[string]fs.FileMode{}, byPrefix: map[string][]string{}}
		var logs []string
		for _, e := range entries {
			switch entryKind(e) {
			case kindOtherType:
				ls.odd[e.Name()] = e.Type()
				continue
			case kindDir:
				continue
			}
			ls.names[e.Name()] = true
			ls.sorted = append(ls.sorted, e.Name())
			// A component name has no '-', so "<prefix>-<Component>" splits
			// at the last one; this is what check looks files up by.
			if i := strings.LastIndexByte(e.Name(), '-'); i > 0 {
				if comp := e.Name()[i+1:]; validComponent(comp) && !strings.HasSuffix(comp, ".tmp") {
					ls.byPrefix[e.Name()[:i]] = append(ls.byPrefix[e.Name()[:i]], e.Name())
				}
			}
			if p := (Path{Name: e.Name()}); parseTxnLog(&p) {
				logs = append(logs, e.Name())
			}
		}
		vanished, err := ls.txn.read(abs, logs)
		if err != nil {
			return nil, nil, err
		}
		if !vanished {
			return entries, ls, nil
		}
		if attempt == maxListingAttempts {
			ls.txn.blockAll = "transaction logs keep vanishing while the directory is read"
			return entries, ls, nil
		}
	}
}

// check decides whether prefix is a complete SSTable in the listing. A
// non-empty reason (a Skip* constant) with detail means it is not.
func (ls *listing) check(prefix string) (files []string, reason, detail string, err error) {
	_, version, _, _, ok := SplitPrefix(prefix)
	if !ok {
		return nil, SkipMalformed, "not an SSTable prefix", nil
	}
	files = slices.Clone(ls.byPrefix[prefix])
	if len(files) == 0 {
		return nil, SkipIncomplete, "no files", nil
	}
	if ls.txn.blockAll != "" {
		return nil, SkipUncommitted, ls.txn.blockAll, nil
	}
	if d, ok := ls.txn.uncommitted[prefix]; ok {
		return nil, SkipUncommitted, d, nil
	}
	if d, ok := ls.txn.obsolete[prefix]; ok {
		return nil, SkipObsolete, d, nil
	}
	toc := prefix + "-TOC.txt"
	switch {
	case ls.names[toc]:
		comps, err := readTOC(filepath.Join(ls.abs, toc))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, SkipIncomplete, "TOC.txt vanished", nil
		}
		if errors.Is(err, ErrNotRegular) {
			return nil, SkipIncomplete, "TOC.txt is not a regular file", nil
		}
		if err != nil {
			return nil, "", "", err
		}
		for _, c := range comps {
			if !validComponent(c) {
				return nil, SkipIncomplete, fmt.Sprintf("TOC.txt lists %q, not a component name", c), nil
			}
			if !ls.names[prefix+"-"+c] {
				return nil, SkipIncomplete, fmt.Sprintf("TOC.txt lists %s, which is %s", c, ls.absent(prefix+"-"+c)), nil
			}
		}
	case HasTOC(version):
		return nil, SkipIncomplete, "TOC.txt is " + ls.absent(toc), nil
	case !ls.names[prefix+"-Data.db"]:
		return nil, SkipIncomplete, "Data.db is " + ls.absent(prefix+"-Data.db"), nil
	}
	return files, "", "", nil
}

// absent says why name, not a regular file of the listing, is not one:
// "missing", or "a symbolic link (not followed)", "a named pipe" …
func (ls *listing) absent(name string) string {
	m, ok := ls.odd[name]
	if !ok {
		return "missing"
	}
	return "a " + skipDetail(m)
}

// maxTOC bounds TOC.txt; a real one is about a hundred bytes.
const maxTOC = 64 << 10

func readTOC(name string) ([]string, error) {
	f, err := OpenFile(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTOC+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxTOC {
		return nil, fmt.Errorf("read %s: larger than %d bytes", name, maxTOC)
	}
	var comps []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if c := strings.TrimSpace(line); c != "" {
			comps = append(comps, c)
		}
	}
	return comps, nil
}

// txnState is what the transaction logs of one directory say about the
// SSTables in it, by prefix.
type txnState struct {
	uncommitted map[string]string // ADD in a log without COMMIT (open or aborted)
	obsolete    map[string]string // REMOVE in a committed log
	blockAll    string            // if set, no SSTable of the directory is complete
}

// maxTxnLog bounds a transaction log; one holds a line per SSTable added or
// removed, so even a large compaction stays far below this.
const maxTxnLog = 16 << 20

// read parses the named logs in dir. vanished reports that one was gone.
func (st *txnState) read(dir string, logs []string) (vanished bool, err error) {
	st.uncommitted, st.obsolete = map[string]string{}, map[string]string{}
	for _, name := range logs {
		full := filepath.Join(dir, name)
		b, err := readLimited(full, maxTxnLog)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotRegular) {
			return true, nil // gone, or replaced: list the directory again
		}
		if errors.Is(err, errTooLarge) {
			st.blockAll = "transaction log " + name + " too large to read"
			continue
		}
		if err != nil {
			return false, err
		}
		adds, removes, committed, aborted := parseTxnRecords(b)
		switch {
		case committed:
			for _, r := range removes {
				st.obsolete[r] = "removed by committed transaction " + name
			}
		case aborted:
			for _, a := range adds {
				st.uncommitted[a] = "added by aborted transaction " + name
			}
		default:
			for _, a := range adds {
				st.uncommitted[a] = "added by open transaction " + name
			}
		}
	}
	return false, nil
}

var errTooLarge = errors.New("file too large")

func readLimited(name string, limit int64) ([]byte, error) {
	f, err := OpenFile(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("read %s: %w", name, errTooLarge)
	}
	return b, nil
}

// parseTxnRecords reads transaction-log lines (LogRecord, case-insensitive):
//
//	ADD:[<abs path prefix>,0,<files>][<crc>]
//	REMOVE:[<abs path prefix>,<mtime ms>,<files>][<crc>]
//	COMMIT:[,0,0][<crc>]
//	ABORT:[,0,0][<crc>]
//
// The path is the SSTable prefix without the trailing "-"; only its base name
// is returned, so logs written under another mount point still match. Lines
// that do not have this shape (a torn last line) are ignored, and record
// checksums are not verified: a torn COMMIT then reads as "not committed",
// the safe side.
func parseTxnRecords(b []byte) (adds, removes []string, committed, aborted bool) {
	for line := range strings.SplitSeq(string(b), "\n") {
		typ, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || len(rest) < 2 || rest[0] != '[' || rest[len(rest)-1] != ']' {
			continue
		}
		i := strings.LastIndex(rest, "][")
		if i < 0 || !isDigits(rest[i+2:len(rest)-1]) {
			continue
		}
		body := rest[1:i]
		j := strings.LastIndexByte(body, ',')
		if j < 0 {
			continue
		}
		k := strings.LastIndexByte(body[:j], ',')
		if k < 0 {
			continue
		}
		base := body[:k]
		if s := strings.LastIndexByte(base, '/'); s >= 0 {
			base = base[s+1:]
		}
		switch strings.ToLower(typ) {
		case "add":
			adds = append(adds, base)
		case "remove":
			removes = append(removes, base)
		case "commit":
			committed = true
		case "abort":
			aborted = true
		}
	}
	return adds, removes, committed, aborted
}

type entryType uint8

const (
	kindFile entryType = iota + 1
	kindDir
	kindOtherType // a symbolic link (whatever it points at), FIFO, device, socket
)

// entryKind classifies a directory entry without following a symbolic
// link.
func entryKind(e fs.DirEntry) entryType {
	switch t := e.Type(); {
	case t.IsRegular():
		return kindFile
	case t.IsDir():
		return kindDir
	}
	return kindOtherType
}

// skipDetail describes an entry skipped as SkipNotRegular.
func skipDetail(m fs.FileMode) string {
	if m&fs.ModeSymlink != 0 {
		return "symbolic link (not followed)"
	}
	return TypeName(m)
}
