package sstable

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind says what a file under a data directory is.
type Kind uint8

const (
	// KindOther is anything that is not an SSTable component or a
	// transaction log: LCS "<cf>.json" manifests, a snapshot's manifest.json
	// and schema.cql, stray files. Never an error.
	KindOther Kind = iota
	// KindComponent is one component file of an SSTable, possibly temporary.
	KindComponent
	// KindTxnLog is a 3.0+ transaction log "<ver>_txn_<op>_<uuid>.log".
	KindTxnLog
)

func (k Kind) String() string {
	switch k {
	case KindComponent:
		return "component"
	case KindTxnLog:
		return "txnlog"
	default:
		return "other"
	}
}

// Layout says which of Cassandra's file-name styles a component uses. The
// table directory is independent of it: Path.TableID is "" for a directory
// without the 2.1+ "-<id>" suffix, which a node upgraded from 2.0 keeps using.
type Layout uint8

const (
	// LayoutNone: not an SSTable component.
	LayoutNone Layout = iota
	// Layout10 (Cassandra ≤ 1.0): no table directory and no keyspace in the
	// name: "<ks>/<cf>-[tmp-]<ver>-<gen>-<Component>".
	Layout10
	// Layout11 (1.1 – 2.1): "<ks>/<cf>[-<id>]/<ks>-<cf>-[tmp-|tmplink-]<ver>-<gen>-<Component>";
	// secondary indexes live in the same directory as "<ks>-<cf>.<idx>-…".
	Layout11
	// Layout22 (2.2+): "<ks>/<cf>[-<id>]/[tmp-|tmplink-]<ver>-<gen>-<format>-<Component>";
	// secondary indexes live in "<cf>-<id>/.<idx>/".
	Layout22
)

func (l Layout) String() string {
	switch l {
	case Layout10:
		return "1.0"
	case Layout11:
		return "1.1"
	case Layout22:
		return "2.2"
	default:
		return "none"
	}
}

// Path is a file path relative to a data directory, classified by the
// file-name grammar of Cassandra 1.0 – 5.0. Fields that do not apply are
// empty. The directory is authoritative for Keyspace and Table: a legacy name
// such as "ks-cf-ka-1-Data.db" carries its own keyspace and table, and those
// are not required to agree with the directories (Cassandra's own test
// SSTables contain such a file).
type Path struct {
	Rel  string // the path as given, e.g. "ks/t-0123…/nb-1-big-Data.db"
	Dir  string // Rel without the file name
	Name string // the file name

	Kind   Kind
	Layout Layout

	Keyspace  string
	Table     string
	TableID   string // 32 lowercase hex digits from a "<table>-<id>" directory (2.1+), else ""
	Index     string // secondary index, from a ".<idx>" directory (2.2+) or a "<cf>.<idx>" name
	Snapshot  string // the tag, if under snapshots/<tag>/
	InBackups bool   // under backups/ (incremental-backup hard links)

	Version   string // SSTable format version: "hd", "ic", "ka", "nb", "oa", "da" …
	Gen       string // generation: decimal, or the 28-character UUID-based id (4.1+)
	Format    string // "big", "bti" …; "" for the legacy names (Layout10, Layout11)
	Component string // "Data.db", "TOC.txt", "Digest.crc32", "SAI+aa+GroupComplete.db" …
	// Temporary is set for files that are not (yet) part of a live SSTable:
	// a tmp-/tmplink- marker, a ".tmp" or ".<timeuuid>.tmp" suffix, or a
	// file under the table's tmp/ directory.
	Temporary bool
	// Prefix is the final SSTable's file prefix, without any temporary
	// marker or suffix and without the trailing "-": "nb-1-big",
	// "ks-cf-ka-1", "cf-hd-5". Every component of the SSTable is named
	// Prefix + "-" + Component in Dir.
	Prefix string

	TxnOp string // transaction-log operation, e.g. "compaction" (KindTxnLog)
	TxnID string // transaction-log UUID (KindTxnLog)
}

// ErrBadPath is wrapped by ParsePath's errors: the path is not a clean,
// slash-separated, relative path.
var ErrBadPath = errors.New("not a clean relative path")

// maxSegment bounds each path segment; Linux allows 255 bytes per name.
const maxSegment = 255

// ParsePath classifies rel, a slash-separated path relative to a data
// directory. Anything that is a clean relative path but not an SSTable
// component or transaction log comes back as KindOther with a nil error, with
// the keyspace, table and snapshot fields filled in as far as the
// directories tell. The error (wrapping ErrBadPath) is only for paths that
// no scan of a real directory produces: empty, absolute, with empty, "." or
// ".." segments, backslashes, control characters or invalid UTF-8.
func ParsePath(rel string) (Path, error) {
	if err := checkRel(rel); err != nil {
		return Path{}, err
	}
	segs := strings.Split(rel, "/")
	n := len(segs)
	p := Path{Rel: rel, Name: segs[n-1], Dir: strings.Join(segs[:n-1], "/")}
	if n < 2 || !IsName(segs[0]) {
		return p, nil // a file at the root, or not a keyspace (lost+found …)
	}
	p.Keyspace = segs[0]
	dirs := segs[1 : n-1]

	// A file in a table directory (1.1+) is tried first: only a 1.1–2.0 table
	// literally named "snapshots" or "backups" can also look like 1.0's
	// keyspace-level snapshots/ and backups/, and the name grammar decides.
	var fallback *Path
	if len(dirs) > 0 {
		q := p
		if tableDir(&q, dirs[0], dirs[1:]) {
			if parseTableLevelName(&q) {
				return q, nil
			}
			fallback = &q
		}
	}
	if q := p; keyspaceDir(&q, dirs) && parseKeyspaceLevelName(&q) {
		return q, nil
	}
	if fallback != nil {
		return *fallback, nil
	}
	return p, nil
}

func checkRel(rel string) error {
	bad := func(why string) error { return fmt.Errorf("path %q: %s: %w", rel, why, ErrBadPath) }
	switch {
	case rel == "":
		return bad("empty")
	case rel[0] == '/':
		return bad("absolute")
	case !utf8.ValidString(rel):
		return bad("invalid UTF-8")
	case strings.ContainsRune(rel, '\\'):
		return bad("backslash")
	}
	for _, r := range rel {
		if r < 0x20 || r == 0x7f {
			return bad("control character")
		}
	}
	for s := range strings.SplitSeq(rel, "/") {
		switch {
		case s == "":
			return bad("empty segment")
		case s == "." || s == "..":
			return bad("dot segment")
		case len(s) > maxSegment:
			return bad("segment too long")
		}
	}
	return nil
}

// tableDir fills in what a table directory and the directories below it
// say; it reports false if they do not have one of the shapes Cassandra
// makes: "" | backups | snapshots/<tag> | .<idx> | backups/.<idx> |
// snapshots/<tag>/.<idx> | tmp.
func tableDir(p *Path, dir string, sub []string) bool {
	name, id, ok := splitTableDir(dir)
	if !ok {
		return false
	}
	var snap string
	var backups, tmp bool
	switch {
	case len(sub) >= 1 && sub[0] == "backups":
		backups, sub = true, sub[1:]
	case len(sub) >= 2 && sub[0] == "snapshots":
		snap, sub = sub[1], sub[2:]
	case len(sub) == 1 && sub[0] == "tmp":
		tmp, sub = true, nil
	}
	var idx string
	if len(sub) == 1 && strings.HasPrefix(sub[0], ".") && IsName(sub[0][1:]) {
		idx, sub = sub[0][1:], nil
	}
	if len(sub) != 0 {
		return false
	}
	p.Table, p.TableID, p.Index = name, id, idx
	p.Snapshot, p.InBackups, p.Temporary = snap, backups, tmp
	return true
}

// splitTableDir splits "<table>" or "<table>-<32 hex>".
func splitTableDir(dir string) (name, id string, ok bool) {
	name = dir
	if i := strings.IndexByte(dir, '-'); i >= 0 {
		name, id = dir[:i], dir[i+1:]
		if !IsTableID(id) {
			return "", "", false
		}
	}
	return name, id, IsName(name)
}

// keyspaceDir accepts the 1.0 directories below a keyspace: "" | backups |
// snapshots/<tag>.
func keyspaceDir(p *Path, dirs []string) bool {
	switch {
	case len(dirs) == 0:
	case len(dirs) == 1 && dirs[0] == "backups":
		p.InBackups = true
	case len(dirs) == 2 && dirs[0] == "snapshots":
		p.Snapshot = dirs[1]
	default:
		return false
	}
	return true
}

// parseTableLevelName parses a file name found in a table directory: a
// transaction log, a 2.2+ name or a 1.1–2.1 legacy name.
func parseTableLevelName(p *Path) bool {
	if parseTxnLog(p) {
		return true
	}
	base, tmp := stripTmpSuffix(p.Name)
	t := strings.Split(base, "-")
	n := len(t)
	if n < 4 || !validComponent(t[n-1]) {
		return false
	}
	q := *p
	q.Component = t[n-1]
	switch {
	case isLower(t[n-2]): // "<ver>-<id>-<fmt>-<Comp>"
		lead := t[:n-4]
		switch {
		case len(lead) == 1 && (lead[0] == "tmp" || lead[0] == "tmplink"):
			tmp = true
		case len(lead) != 0:
			return false
		}
		ver, id := t[n-4], t[n-3]
		if !isModernVersion(ver) || !isSSTableID(id) {
			return false
		}
		q.Layout, q.Version, q.Gen, q.Format = Layout22, ver, id, t[n-2]
		q.Prefix = strings.Join(t[n-4:n-1], "-")
	case isDigits(t[n-2]): // "<ks>-<cf>[.<idx>]-[tmp-|tmplink-]<ver>-<gen>-<Comp>"
		lead := t[:n-3]
		switch {
		case len(lead) == 3 && (lead[2] == "tmp" || lead[2] == "tmplink"):
			tmp, lead = true, lead[:2]
		case len(lead) != 2:
			return false
		}
		_, idx, ok := splitCF(lead[1])
		ver, gen := t[n-3], t[n-2]
		if !IsName(lead[0]) || !ok || !isLegacyVersion(ver) || len(gen) > 19 {
			return false
		}
		if idx != "" {
			if q.Index != "" {
				return false // an index name and a .<idx> directory: no version does both
			}
			q.Index = idx
		}
		q.Layout, q.Version, q.Gen = Layout11, ver, gen
		q.Prefix = strings.Join([]string{lead[0], lead[1], ver, gen}, "-")
	default:
		return false
	}
	q.Kind = KindComponent
	q.Temporary = q.Temporary || tmp
	*p = q
	return true
}

// parseKeyspaceLevelName parses a 1.0 name, "<cf>[.<idx>]-[tmp-]<ver>-<gen>-<Comp>",
// found directly in a keyspace directory.
func parseKeyspaceLevelName(p *Path) bool {
	base, tmp := stripTmpSuffix(p.Name)
	t := strings.Split(base, "-")
	n := len(t)
	switch {
	case n == 5 && t[1] == "tmp":
		tmp = true
	case n != 4:
		return false
	}
	cf, idx, ok := splitCF(t[0])
	ver, gen, comp := t[n-3], t[n-2], t[n-1]
	if !ok || !isLegacyVersion(ver) || !isDigits(gen) || len(gen) > 19 || !validComponent(comp) {
		return false
	}
	p.Kind, p.Layout = KindComponent, Layout10
	p.Table, p.Index = cf, idx
	p.Version, p.Gen, p.Component = ver, gen, comp
	p.Temporary = tmp
	p.Prefix = strings.Join([]string{t[0], ver, gen}, "-")
	return true
}

// parseTxnLog parses "<ver>_txn_<op>_<uuid>.log" (LogFile.FILE_REGEX).
func parseTxnLog(p *Path) bool {
	name, ok := strings.CutSuffix(p.Name, ".log")
	if !ok || len(name) < 2+5+1+1+36 || name[2:7] != "_txn_" {
		return false
	}
	ver, rest := name[:2], name[7:]
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 || !isModernVersion(ver) || !isUUID(rest[i+1:]) {
		return false
	}
	op := rest[:i]
	for _, c := range []byte(op) {
		if !isWordByte(c) {
			return false
		}
	}
	p.Kind, p.Version, p.TxnOp, p.TxnID = KindTxnLog, ver, op, rest[i+1:]
	return true
}

// stripTmpSuffix removes ".tmp" and a ".<timeuuid>" before it
// (Descriptor.TMP_EXT; 4.0+ streaming writes "<file>.<timeuuid>.tmp").
func stripTmpSuffix(name string) (string, bool) {
	base, ok := strings.CutSuffix(name, ".tmp")
	if !ok {
		return name, false
	}
	if i := strings.LastIndexByte(base, '.'); i >= 0 && isUUID(base[i+1:]) {
		base = base[:i]
	}
	return base, true
}

// splitCF splits a legacy column-family token "<cf>" or "<cf>.<idx>".
func splitCF(s string) (cf, idx string, ok bool) {
	cf, idx, dot := strings.Cut(s, ".")
	if !IsName(cf) || (dot && !IsName(idx)) {
		return "", "", false
	}
	return cf, idx, true
}

// SplitPrefix parses an SSTable prefix as found in Path.Prefix ("nb-1-big",
// "ks-cf-ka-1", "cf-hd-5") into its layout, version, generation and format.
func SplitPrefix(prefix string) (layout Layout, version, gen, format string, ok bool) {
	p := Path{Name: prefix + "-Data.db"}
	t := strings.Split(prefix, "-")
	switch {
	case len(t) == 3 && isLower(t[2]):
		ok = parseTableLevelName(&p)
	case len(t) == 4:
		ok = parseTableLevelName(&p)
	case len(t) == 3:
		ok = parseKeyspaceLevelName(&p)
	}
	if !ok || p.Temporary || p.Kind != KindComponent {
		return LayoutNone, "", "", "", false
	}
	return p.Layout, p.Version, p.Gen, p.Format, true
}

// Release returns the Cassandra release line that introduced an SSTable
// format version ("nb" → "4.0", "oa" → "5.0"), or "" if the version is
// unknown. Sources: the version comments in Cassandra's Descriptor (≤ 2.1)
// and BigFormat/BtiFormat (2.2+).
func Release(version string) string {
	switch version {
	case "a":
		return "0.6"
	case "b", "c", "d", "e", "f":
		return "0.7"
	case "g":
		return "0.8"
	case "h", "ha", "hb", "hc", "hd":
		return "1.0"
	case "he", "hf":
		return "1.1"
	case "ia", "ib", "ic":
		return "1.2"
	case "ja", "jb":
		return "2.0"
	case "ka":
		return "2.1"
	case "la", "lb":
		return "2.2"
	case "ma", "mb", "mc", "md", "me":
		return "3.0"
	case "na", "nb":
		return "4.0"
	case "nc", "oa":
		return "5.0" // nc: written by 5.0 in 4.x storage-compatibility mode
	case "da":
		return "5.0" // BTI
	}
	return ""
}

// HasTOC reports whether SSTables of this version always have a TOC.txt:
// every version from 1.2 ("ia") on, including the BTI versions ("da" …).
// Before that (single letters and "h*") the components are whatever exists.
func HasTOC(version string) bool {
	return isModernVersion(version) && version[0] != 'h'
}

// isBTI reports whether version is a trie-indexed (BTI) version. BIG's
// two-letter versions start at "hb", so a two-letter version below 'h' is BTI.
func isBTI(version string) bool {
	return len(version) == 2 && version[0] < 'h'
}

// IsName reports whether s is a keyspace, table or index name: CQL allows
// [A-Za-z0-9_]+ (at most 48 characters, which is not enforced here).
func IsName(s string) bool {
	if s == "" || len(s) > maxSegment {
		return false
	}
	for _, c := range []byte(s) {
		if !isWordByte(c) {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// validComponent reports whether s can be a component name: "Data.db",
// "Digest.crc32", "SI_idx.db", "SAI+aa+idx+TermsData.db", 1.0's "Compacted".
func validComponent(s string) bool {
	if s == "" || len(s) > maxSegment {
		return false
	}
	for _, c := range []byte(s) {
		if !isWordByte(c) && c != '.' && c != '+' {
			return false
		}
	}
	return true
}

func isLower(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isModernVersion(s string) bool { return len(s) == 2 && isLower(s) }
func isLegacyVersion(s string) bool { return (len(s) == 1 || len(s) == 2) && isLower(s) }

// isSSTableID accepts a decimal generation or a UUID-based id
// "[0-9a-z]{4}_[0-9a-z]{4}_[0-9a-z]{18}" (UUIDBasedSSTableId).
func isSSTableID(s string) bool {
	if isDigits(s) {
		return len(s) <= 19
	}
	if len(s) != 28 || s[4] != '_' || s[9] != '_' {
		return false
	}
	for i, c := range []byte(s) {
		if i == 4 || i == 9 {
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// IsTableID reports whether s is a table ID as in a 2.1+ table directory
// name: 32 lowercase hex digits.
func IsTableID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isUUID accepts the textual form 8-4-4-4-12 of hex digits, either case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range []byte(s) {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
