package manifest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/remote"
)

// A commit is the manifests one backup commits at once: one host, one
// time T (the time of their backup names), one manifest a keyspace. It is
// marked by one object,
//
//	commits/<host>/<T>/<ks1>-<h1>.<ks2>-<h2>…
//
// whose key names each keyspace committed, sorted, with the Hash of its
// manifest object: so a reader learns from a listing alone which
// keyspaces a commit holds and which object each manifest must be. ('-'
// and '.' separate: store keys allow no punctuation but them and '_',
// which keyspace names use, and neither a keyspace nor a hash holds
// them.) Entries fill segments of at most remote.MaxSegmentLen bytes
// joined by '/' (CommitKeys); a commit whose key would pass the store's
// longest key is split over several markers under its folder
// commits/<host>/<T>/, and readers take the
// union of the markers there: a backup counts when some marker of its
// commit names it. A marker is written only after the session's commit
// (docs/design.md §4.2 W3), or by a purge for a session that died after
// committing, and only while the manifests it names are stored; a purge
// removes a commit's backups together, writing one marker of the others
// (none when all go) before it deletes the old one (DeleteCommit), so a
// listed marker always means its manifests were there when it was
// written, and a backup stops counting before its manifest goes.

// commitFormat is the version of a commit marker.
const commitFormat = 2

// commitDoc is a marker's body. Readers need only the key; the body says
// which session committed the backups, for an operator.
type commitDoc struct {
	Format  int    `json:"format"`
	Session string `json:"session"`
}

// maxCommitDoc bounds the body of a marker a purge reads back.
const maxCommitDoc = 4 << 10

// Hash names a manifest object in its commit's marker: the first 96 bits
// of the BLAKE3 of the object as stored. 96 bits keep a marker short (a
// segment of 255 bytes holds three entries of the longest keyspace names)
// and leave a chance of 2⁻⁹⁶ that a changed object goes unnoticed.
type Hash [12]byte

// HashOf returns the hash of a manifest object.
func HashOf(obj []byte) Hash {
	id := chunk.Sum(obj)
	return Hash(id[:len(Hash{})])
}

// String returns the hash in lower-case hex, as markers hold it.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (ParseHash).
func (h *Hash) UnmarshalText(b []byte) error {
	x, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = x
	return nil
}

// ParseHash parses a hash in lower-case hex, the one form markers hold.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("manifest hash %.60q: want %d hex digits", s, 2*len(h))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil || h.String() != s {
		return h, fmt.Errorf("manifest hash %q: want lower-case hex", s)
	}
	return h, nil
}

// CommitEntry is one keyspace's backup in a commit marker.
type CommitEntry struct {
	Keyspace string
	Hash     Hash
}

// Commit is a committed backup: its name, and the hash of its manifest
// object that its commit's marker names.
type Commit struct {
	Name string
	Hash Hash
}

// ErrChanged reports a manifest object that is not the one its commit
// marker names: damaged, or replaced, since it was committed.
var ErrChanged = errors.New("manifest object does not match its commit marker")

// commitDir returns commits/<host>/<T>/, the folder of the markers of a
// commit of host at t.
func commitDir(host string, t time.Time) string {
	return commitRoot + host + "/" + formatNameTime(t) + "/"
}

// entrySep separates a keyspace from its hash, listSep one entry from the
// next.
const (
	entrySep = '-'
	listSep  = '.'
)

// CommitKeys returns the keys of the markers of a commit of host at t
// holding entries, which it sorts: one key, or several when the entries
// would not fit one key of at most maxKey bytes (remote.MaxKeyLenOf the
// store). A key holds a run of the sorted entries, as many as fit, in
// segments of at most remote.MaxSegmentLen bytes (a file name's limit on
// local disk): entries joined by '.' within a segment, segments by '/'.
// Each entry must name a backup ParseBackupName accepts, and a keyspace
// once.
func CommitKeys(host string, t time.Time, entries []CommitEntry, maxKey int) ([]string, error) {
	if len(entries) == 0 {
		return nil, errors.New("a commit marker of no backup")
	}
	es := slices.SortedFunc(slices.Values(entries), func(a, b CommitEntry) int { return strings.Compare(a.Keyspace, b.Keyspace) })
	for i, e := range es {
		name := BackupName(t, e.Keyspace, host)
		if _, _, _, err := ParseBackupName(name); err != nil {
			return nil, err
		}
		if i > 0 && es[i-1].Keyspace == e.Keyspace {
			return nil, fmt.Errorf("backup %s: twice in one commit", name)
		}
	}
	dir := commitDir(host, t)
	var keys []string
	var key []byte // the entries of the key being filled
	seg := 0       // bytes in its last segment
	for _, e := range es {
		s := e.Keyspace + string(entrySep) + e.Hash.String()
		if len(s) > remote.MaxSegmentLen || len(dir)+len(s) > maxKey {
			return nil, fmt.Errorf("backup %s: its commit marker %s%s is longer than the %d bytes the store takes", BackupName(t, e.Keyspace, host), dir, s, maxKey)
		}
		fits := len(dir)+len(key)+1+len(s) <= maxKey
		switch {
		case len(key) == 0:
			seg = 0
		case fits && seg+1+len(s) <= remote.MaxSegmentLen:
			key = append(key, listSep)
			seg++
		case fits:
			key = append(key, '/')
			seg = 0
		default:
			keys = append(keys, dir+string(key))
			key, seg = key[:0], 0
		}
		key = append(key, s...)
		seg += len(s)
	}
	return append(keys, dir+string(key)), nil
}

// ParseCommitKey parses the key of a commit marker made by CommitKeys.
// It accepts only keys of that form: entries sorted by keyspace, each
// once, each naming a valid backup of host at t, in non-empty segments.
func ParseCommitKey(key string) (host string, t time.Time, entries []CommitEntry, err error) {
	rest, ok := strings.CutPrefix(key, commitRoot)
	segs := strings.Split(rest, "/")
	if !ok || len(segs) < 3 || slices.Contains(segs[2:], "") {
		return "", time.Time{}, nil, fmt.Errorf("commit marker %.300q: want %s<host>/<time>/<keyspace>-<hash>…", key, commitRoot)
	}
	host = segs[0]
	if t, ok = parseNameTime(segs[1]); !ok {
		return "", time.Time{}, nil, fmt.Errorf("commit marker %.300q: time %.60q: want YYYY_MM_DDTHH_MM_SS_ffffff", key, segs[1])
	}
	for _, seg := range segs[2:] {
		for s := range strings.SplitSeq(seg, string(listSep)) {
			ks, hs, ok := strings.Cut(s, string(entrySep))
			if !ok {
				return "", time.Time{}, nil, fmt.Errorf("commit marker %.300q: entry %.300q: want <keyspace>-<hash>", key, s)
			}
			h, err := ParseHash(hs)
			if err != nil {
				return "", time.Time{}, nil, fmt.Errorf("commit marker %.300q: %w", key, err)
			}
			if !sstable.IsName(ks) {
				return "", time.Time{}, nil, fmt.Errorf("commit marker %.300q: keyspace %.300q: want letters, digits and '_'", key, ks)
			}
			if n := len(entries); n > 0 && entries[n-1].Keyspace >= ks {
				return "", time.Time{}, nil, fmt.Errorf("commit marker %.300q: keyspaces out of order or repeated", key)
			}
			if _, _, _, err := ParseBackupName(BackupName(t, ks, host)); err != nil {
				return "", time.Time{}, nil, fmt.Errorf("commit marker %.300q: %w", key, err)
			}
			entries = append(entries, CommitEntry{Keyspace: ks, Hash: h})
		}
	}
	return host, t, entries, nil
}

// PutCommit writes the marker (or markers, split as CommitKeys splits
// them) of a commit of host at t holding entries, written by the given
// session. The manifests must be stored. Only the session's commit
// (gc.Session), a purge writing a dead session's markers, and a purge
// rewriting a commit it removes backups from call it. Writing it again is
// harmless.
func PutCommit(ctx context.Context, st remote.Store, host string, t time.Time, entries []CommitEntry, session string) error {
	keys, err := CommitKeys(host, t, entries, remote.MaxKeyLenOf(st))
	if err != nil {
		return err
	}
	b, _ := json.Marshal(commitDoc{Format: commitFormat, Session: session})
	for _, k := range keys {
		if err := st.Put(ctx, k, bytes.NewReader(b), int64(len(b))); err != nil {
			return fmt.Errorf("commit backups of host %s at %s: %w", host, formatNameTime(t), err)
		}
	}
	return nil
}

// PutCommits writes the markers of committed backups, one commit (backups
// of one host and time) at a time, and returns the names of those whose
// markers are all written; the error joins those of the others.
func PutCommits(ctx context.Context, st remote.Store, cs []Commit, session string) (written []string, err error) {
	type commit struct {
		host    string
		t       time.Time
		names   []string
		entries []CommitEntry
	}
	var order []string
	groups := map[string]*commit{}
	var errs []error
	for _, c := range cs {
		t, ks, host, err := ParseBackupName(c.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dir := commitDir(host, t)
		g, ok := groups[dir]
		if !ok {
			g = &commit{host: host, t: t}
			groups[dir] = g
			order = append(order, dir)
		}
		if slices.Contains(g.names, c.Name) {
			continue
		}
		g.names = append(g.names, c.Name)
		g.entries = append(g.entries, CommitEntry{Keyspace: ks, Hash: c.Hash})
	}
	for _, dir := range order {
		g := groups[dir]
		if err := PutCommit(ctx, st, g.host, g.t, g.entries, session); err != nil {
			errs = append(errs, err)
			continue
		}
		written = append(written, g.names...)
	}
	return written, errors.Join(errs...)
}

// marker is a commit marker as a listing shows it.
type marker struct {
	info    remote.Info
	host    string
	t       time.Time
	entries []CommitEntry
}

// listMarkers calls fn with each commit marker whose key starts with
// prefix, in key order (so one host's commits in time order), passing
// over keys that are not markers.
func listMarkers(ctx context.Context, st remote.Store, prefix string, fn func(marker) error) error {
	return st.List(ctx, prefix, func(i remote.Info) error {
		host, t, es, err := ParseCommitKey(i.Key)
		if err != nil {
			return nil // not a marker: never counts
		}
		return fn(marker{info: i, host: host, t: t, entries: es})
	})
}

// Committed reports whether backup name is committed, and the hash of its
// manifest object that its commit's markers name, with one LIST of the
// commit's folder. Markers of one commit that name two objects for the
// same backup (none of cassback's making) are an error.
func Committed(ctx context.Context, st remote.Store, name string) (Hash, bool, error) {
	t, ks, host, err := ParseBackupName(name)
	if err != nil {
		return Hash{}, false, err
	}
	var h Hash
	found := false
	err = listMarkers(ctx, st, commitDir(host, t), func(m marker) error {
		for _, e := range m.entries {
			switch {
			case e.Keyspace != ks:
			case found && e.Hash != h:
				return fmt.Errorf("backup %s: its commit markers name two manifest objects, %s and %s", name, h, e.Hash)
			default:
				h, found = e.Hash, true
			}
		}
		return nil
	})
	if err != nil {
		return Hash{}, false, fmt.Errorf("read the commit of backup %s: %w", name, err)
	}
	return h, found, nil
}

// DeleteCommit makes backups stop counting, one commit (host and time)
// at a time: it lists the commit's markers once, writes for each marker
// that names some of the backups a marker of the others in it (with the
// old marker's session), and only then deletes the old markers. A marker
// that names nothing else is deleted and not rewritten, so removing every
// backup of a commit of K keyspaces takes a LIST and a DELETE, not K of
// each and K−1 rewrites. Written first, the new markers name only backups
// the old ones named, and those still count; a backup with no marker is
// left as it is.
func DeleteCommit(ctx context.Context, st remote.Store, names ...string) error {
	rs, err := byCommit(names)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := r.uncommit(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// ByCommit groups backup names by commit (host and time), each name once,
// in the order each commit is first named: the groups Delete removes one
// at a time, for a caller reporting progress.
func ByCommit(names []string) ([][]string, error) {
	rs, err := byCommit(names)
	if err != nil {
		return nil, err
	}
	groups := make([][]string, len(rs))
	for i, r := range rs {
		groups[i] = r.names
	}
	return groups, nil
}

// removal is the backups of one commit that Delete and DeleteCommit remove.
type removal struct {
	host  string
	t     time.Time
	names []string // each once, in the order given
	kss   []string // their keyspaces, in the same order
}

// byCommit groups backup names by commit, in the order each commit is
// first named.
func byCommit(names []string) ([]*removal, error) {
	var rs []*removal
	byDir := map[string]*removal{}
	for _, n := range names {
		t, ks, host, err := ParseBackupName(n)
		if err != nil {
			return nil, err
		}
		dir := commitDir(host, t)
		r, ok := byDir[dir]
		if !ok {
			r = &removal{host: host, t: t}
			byDir[dir] = r
			rs = append(rs, r)
		}
		if !slices.Contains(r.kss, ks) {
			r.names = append(r.names, n)
			r.kss = append(r.kss, ks)
		}
	}
	return rs, nil
}

// uncommit removes r's backups from their commit's markers (DeleteCommit).
func (r *removal) uncommit(ctx context.Context, st remote.Store) error {
	var ms []marker
	if err := listMarkers(ctx, st, commitDir(r.host, r.t), func(m marker) error {
		if slices.ContainsFunc(m.entries, r.removes) {
			ms = append(ms, m)
		}
		return nil
	}); err != nil {
		return r.errorf(err)
	}
	// The markers of what remains first. None of their keys is one deleted
	// below: it names none of r's backups.
	for _, m := range ms {
		others := slices.DeleteFunc(slices.Clone(m.entries), r.removes)
		if len(others) == 0 {
			continue
		}
		if err := PutCommit(ctx, st, r.host, r.t, others, markerSession(ctx, st, m.info.Key)); err != nil {
			return r.errorf(err)
		}
	}
	for _, m := range ms {
		if err := st.Delete(ctx, m.info.Key); err != nil {
			return r.errorf(err)
		}
	}
	return nil
}

// removes reports whether e is the entry of one of r's backups.
func (r *removal) removes(e CommitEntry) bool { return slices.Contains(r.kss, e.Keyspace) }

// errorf wraps err with the backups r removes.
func (r *removal) errorf(err error) error {
	if len(r.names) == 1 {
		return fmt.Errorf("uncommit backup %s: %w", r.names[0], err)
	}
	return fmt.Errorf("uncommit %d backups of host %s at %s: %w", len(r.names), r.host, formatNameTime(r.t), err)
}

// markerSession returns the session a marker's body names, or "" if it
// cannot be read: the body is for operators, and no reader relies on it.
func markerSession(ctx context.Context, st remote.Store, key string) string {
	rc, err := st.Get(ctx, key, 0, maxCommitDoc)
	if err != nil {
		return ""
	}
	defer rc.Close()
	var d commitDoc
	if err := json.NewDecoder(io.LimitReader(rc, maxCommitDoc)).Decode(&d); err != nil || d.Format != commitFormat {
		return ""
	}
	return d.Session
}

// Commits calls fn for every backup a commit marker in the store names,
// once for each marker naming it, in key order, with the marker's key and
// info and the manifest's hash.
func Commits(ctx context.Context, st remote.Store, fn func(Object) error) error {
	return listMarkers(ctx, st, commitRoot, func(m marker) error {
		for _, e := range m.entries {
			if err := fn(objectOf(m, e)); err != nil {
				return err
			}
		}
		return nil
	})
}

// HostCommits is Commits for the commits of host whose time starts with
// the timestamp prefix tsPrefix ("2026_11_26" for a day, "" for all): one
// LIST a thousand markers. A backup named by several markers of its
// commit is given once.
func HostCommits(ctx context.Context, st remote.Store, host, tsPrefix string, fn func(Object) error) error {
	prefix := commitRoot + host + "/"
	if err := remote.ValidKey(prefix + "x"); err != nil {
		return fmt.Errorf("host %q: %w", host, err)
	}
	var t time.Time
	var seen []string // the keyspaces given of commit t: its markers are listed together
	return listMarkers(ctx, st, prefix+tsPrefix, func(m marker) error {
		if !m.t.Equal(t) {
			t, seen = m.t, seen[:0]
		}
		for _, e := range m.entries {
			if slices.Contains(seen, e.Keyspace) {
				continue
			}
			seen = append(seen, e.Keyspace)
			if err := fn(objectOf(m, e)); err != nil {
				return err
			}
		}
		return nil
	})
}

// objectOf returns the Object of a backup marker m names.
func objectOf(m marker, e CommitEntry) Object {
	return Object{Name: BackupName(m.t, e.Keyspace, m.host), Key: m.info.Key, Info: m.info, Hash: e.Hash}
}

// CommittedHeader reads the header of a committed backup, as GetHeader
// does, and checks its manifest object against the hash its marker names:
// an object changed since its commit is an error naming the backup
// (ErrChanged), as a damaged manifest is.
func CommittedHeader(ctx context.Context, st remote.Store, c Commit) (*Manifest, error) {
	obj, err := getObject(ctx, st, c.Name)
	if err != nil {
		return nil, err
	}
	if err := checkHash(c, obj); err != nil {
		return nil, err
	}
	return Header(c.Name, obj)
}

// checkHash checks a manifest object against its commit's hash.
func checkHash(c Commit, obj []byte) error {
	if h := HashOf(obj); h != c.Hash {
		return fmt.Errorf("manifest %s: %w: its hash is %s, the marker's %s", c.Name, ErrChanged, h, c.Hash)
	}
	return nil
}
