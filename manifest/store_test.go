package manifest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// commitOf stores a manifest of each keyspace of host at time at and
// commits them in one commit; it returns their names and hashes.
func commitOf(t *testing.T, st remote.Store, host string, at time.Time, kss ...string) []Commit {
	t.Helper()
	var cs []Commit
	var es []CommitEntry
	for _, ks := range kss {
		m := &Manifest{Format: FormatVersion, Host: host, Keyspace: ks, Time: at, Session: "0123456789abcdef01234567", Tables: []Table{}}
		m.Name = BackupName(m.Time, m.Keyspace, m.Host)
		obj, _, err := Encode(m, chunk.Namer{})
		if err != nil {
			t.Fatal(err)
		}
		if err := Put(t.Context(), st, m.Name, obj); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, Commit{Name: m.Name, Hash: HashOf(obj)})
		es = append(es, CommitEntry{Keyspace: ks, Hash: HashOf(obj)})
	}
	if err := PutCommit(t.Context(), st, host, at, es, "0123456789abcdef01234567"); err != nil {
		t.Fatal(err)
	}
	return cs
}

func openLocal(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Latest passes over a commit marker whose manifest is gone (written late,
// after a purge removed the backup) to the newest backup that is there,
// and over a newer manifest that is not committed.
func TestLatestPassesOverLoneMarkers(t *testing.T) {
	ctx := t.Context()
	st := openLocal(t)
	day := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var cs []Commit
	for i := range 3 {
		cs = append(cs, commitOf(t, st, "h", day.Add(time.Duration(i)*time.Hour), "ks", "other")[0])
	}
	if got, err := LatestCommit(ctx, st, "h", "ks", day.Add(time.Hour*24)); err != nil || got != cs[2] {
		t.Fatalf("LatestCommit = %v, %v; want %v", got, err, cs[2])
	}
	// The newest is removed, and its marker written again late.
	if err := Delete(ctx, st, cs[2].Name); err != nil {
		t.Fatal(err)
	}
	at, _, _, _ := ParseBackupName(cs[2].Name)
	if err := PutCommit(ctx, st, "h", at, []CommitEntry{{"ks", cs[2].Hash}}, "0123456789abcdef01234567"); err != nil {
		t.Fatal(err)
	}
	// A newer manifest that is not committed.
	m := &Manifest{Format: FormatVersion, Host: "h", Keyspace: "ks", Time: day.Add(5 * time.Hour), Session: "0123456789abcdef01234567", Tables: []Table{}}
	m.Name = BackupName(m.Time, m.Keyspace, m.Host)
	if err := putManifest(ctx, st, m, memChunks{}); err != nil {
		t.Fatal(err)
	}
	if got, err := Latest(ctx, st, "h", "ks", day.Add(time.Hour*24)); err != nil || got != cs[1].Name {
		t.Fatalf("Latest with a lone marker and an uncommitted manifest = %q, %v; want %s", got, err, cs[1].Name)
	}
	if got, err := Latest(ctx, st, "h", "ks", day.Add(-time.Hour)); err != nil || got != "" {
		t.Fatalf("Latest before the first backup = %q, %v; want none", got, err)
	}
}

// keyspaces returns n keyspace names of the given length, distinct.
func keyspaces(n, length int) []string {
	var kss []string
	for i := range n {
		s := fmt.Sprintf("ks%04d", i)
		kss = append(kss, s+strings.Repeat("x", length-len(s)))
	}
	return kss
}

// A commit too large for one marker is split into as few as hold it, each
// a valid key of the store's length that parses back to its run of the
// sorted entries; a prefix the store puts before its keys leaves less room.
func TestCommitKeysSplit(t *testing.T) {
	at := time.Date(2026, 11, 26, 1, 41, 31, 917564000, time.UTC)
	host := strings.Repeat("h", MaxHostLen)
	for _, tc := range []struct {
		name   string
		host   string
		n, len int
		maxKey int
		want   int // markers
	}{
		{"one", "n1", 1, 8, remote.MaxKeyLen, 1},
		{"short names", "n1", 7, 8, remote.MaxKeyLen, 1},    // 7 × 33 + 6 = 237 bytes
		{"a segment full", "n1", 8, 8, remote.MaxKeyLen, 1}, // 271 > 255: a second segment
		{"many short names", "n1", 60, 8, remote.MaxKeyLen, 3},
		{"long host", host, 40, 40, remote.MaxKeyLen, 4},                            // 65 bytes an entry: 3 a segment, 11 a key
		{"longest keyspaces", "n1", 5, 255 - 26 - 2 - 2, remote.MaxKeyLen, 2},       // one a segment, 3 a key
		{"the store's prefix", host, 40, 40, 8 + MaxHostLen + 1 + 26 + 1 + 140, 20}, // 140 bytes: 2 a key
		{"one entry a key", host, 3, 40, 8 + MaxHostLen + 1 + 26 + 1 + 65, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var es []CommitEntry
			for i, ks := range keyspaces(tc.n, tc.len) {
				es = append(es, CommitEntry{Keyspace: ks, Hash: HashOf([]byte{byte(i)})})
			}
			rev := slices.Clone(es)
			slices.Reverse(rev)
			keys, err := CommitKeys(tc.host, at, rev, tc.maxKey)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != tc.want {
				t.Errorf("%d entries of %d bytes: %d markers, want %d", tc.n, tc.len+25, len(keys), tc.want)
			}
			var got []CommitEntry
			dir := commitRoot + tc.host + "/2026_11_26T01_41_31_917564/"
			for i, k := range keys {
				if err := remote.ValidKey(k); err != nil || len(k) > tc.maxKey {
					t.Errorf("marker %d: %d bytes (at most %d): %v", i, len(k), tc.maxKey, err)
				}
				if !strings.HasPrefix(k, dir) {
					t.Errorf("marker %q is not under %s", k, dir)
				}
				h, kt, kes, err := ParseCommitKey(k)
				if err != nil || h != tc.host || !kt.Equal(at) {
					t.Fatalf("ParseCommitKey(%q) = %q, %v, %v", k, h, kt, err)
				}
				// As many as fit: the next marker's first entry did not.
				if i+1 < len(keys) {
					next := keys[i+1][len(dir):]
					next = next[:strings.IndexAny(next+".", "./")]
					if len(k)+1+len(next) <= tc.maxKey {
						t.Errorf("marker %d ends before %s, which fits", i, next)
					}
				}
				for _, seg := range strings.Split(k[len(dir):], "/") {
					if len(seg) > remote.MaxSegmentLen {
						t.Errorf("marker %d: a segment of %d bytes", i, len(seg))
					}
				}
				got = append(got, kes...)
			}
			if !slices.Equal(got, es) {
				t.Errorf("the markers hold %v, want %v", got, es)
			}
		})
	}
	// An entry the store has no room for, a keyspace twice, and none.
	es := []CommitEntry{{Keyspace: "ks", Hash: HashOf(nil)}}
	if _, err := CommitKeys(host, at, es, 8+MaxHostLen+1+26+1+20); err == nil {
		t.Error("a marker longer than the store takes was made")
	}
	if _, err := CommitKeys("n1", at, append(es, es[0]), remote.MaxKeyLen); err == nil {
		t.Error("a marker naming a keyspace twice was made")
	}
	if _, err := CommitKeys("n1", at, nil, remote.MaxKeyLen); err == nil {
		t.Error("a marker of no backup was made")
	}
}

// prefixed is a store that says it puts a prefix before every key, as
// s3.Store does, leaving markers less room.
type prefixed struct {
	remote.Store
	prefix string
}

func (p prefixed) KeyPrefix() string { return p.prefix }

// ops records a store's writes and deletions, in order.
type ops struct {
	remote.Store
	mu  sync.Mutex
	log []string
}

func (o *ops) note(s string) {
	o.mu.Lock()
	o.log = append(o.log, s)
	o.mu.Unlock()
}

func (o *ops) Put(ctx context.Context, key string, r io.Reader, n int64) error {
	o.note("put " + key)
	return o.Store.Put(ctx, key, r, n)
}

func (o *ops) Delete(ctx context.Context, key string) error {
	o.note("delete " + key)
	return o.Store.Delete(ctx, key)
}

// Readers take the union of a commit's markers: split over several (a
// long host, many keyspaces, a store with a long key prefix) or written
// twice, each backup is committed once with its hash, and listed once.
func TestCommitUnion(t *testing.T) {
	ctx := t.Context()
	host := strings.Repeat("h", 100)
	st := prefixed{openLocal(t), strings.Repeat("p", 749) + "/"} // 138 bytes left for a marker's entries
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	kss := keyspaces(30, 20)
	cs := commitOf(t, st, host, at, kss...)
	var markers []string
	st.List(ctx, commitRoot, func(i remote.Info) error { markers = append(markers, i.Key); return nil })
	if len(markers) != 10 {
		t.Fatalf("30 keyspaces of 45 bytes an entry, 138 bytes left by the store's prefix: %d markers, want 10", len(markers))
	}
	for _, k := range markers {
		if len(k) > remote.MaxKeyLenOf(st) {
			t.Errorf("marker %s: %d bytes, more than the %d the store takes", k, len(k), remote.MaxKeyLenOf(st))
		}
	}
	// The first keyspaces' entries written again in a marker of their own.
	if err := PutCommit(ctx, st, host, at, []CommitEntry{{kss[0], cs[0].Hash}, {kss[1], cs[1].Hash}}, ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		h, ok, err := Committed(ctx, st, c.Name)
		if err != nil || !ok || h != c.Hash {
			t.Errorf("Committed(%s) = %s, %v, %v; want %s", c.Name, h, ok, err, c.Hash)
		}
	}
	var got []Commit
	if err := HostCommits(ctx, st, host, "2026_11", func(o Object) error {
		got = append(got, Commit{o.Name, o.Hash})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, cs) {
		t.Errorf("HostCommits gave %d backups, want the %d committed, each once:\n%v", len(got), len(cs), got)
	}
	var names []string
	if err := List(ctx, st, host, kss[1], "", func(n string) error { names = append(names, n); return nil }); err != nil || !slices.Equal(names, []string{cs[1].Name}) {
		t.Errorf("List(%s) = %v, %v; want %s once", kss[1], names, err, cs[1].Name)
	}
	// Not committed: another time, another keyspace.
	other := BackupName(at.Add(time.Microsecond), kss[0], host)
	if _, ok, err := Committed(ctx, st, other); ok || err != nil {
		t.Errorf("Committed(%s) = %v, %v; want not committed", other, ok, err)
	}
	// Two objects for one backup (a hostile store) are an error.
	if err := PutCommit(ctx, st, host, at, []CommitEntry{{kss[2], HashOf(nil)}}, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Committed(ctx, st, cs[2].Name); err == nil {
		t.Errorf("Committed(%s) with two hashes in its markers: no error", cs[2].Name)
	}
}

// Removing one backup of a commit keeps the others committed, with their
// hashes: a marker of them is written before the old marker is deleted,
// and the manifest goes last.
func TestDeleteKeepsTheCommitsOthers(t *testing.T) {
	ctx := t.Context()
	st := &ops{Store: openLocal(t)}
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	cs := commitOf(t, st, "n1", at, "a", "b", "c")
	st.log = nil
	if err := Delete(ctx, st, cs[1].Name); err != nil {
		t.Fatal(err)
	}
	dir := "commits/n1/2026_11_26T01_00_00_000000/"
	mk, _ := Key(cs[1].Name)
	want := []string{
		"put " + dir + "a-" + cs[0].Hash.String() + ".c-" + cs[2].Hash.String(),
		"delete " + dir + "a-" + cs[0].Hash.String() + ".b-" + cs[1].Hash.String() + ".c-" + cs[2].Hash.String(),
		"delete " + mk,
	}
	if !slices.Equal(st.log, want) {
		t.Errorf("Delete(%s) did\n%s\nwant\n%s", cs[1].Name, strings.Join(st.log, "\n"), strings.Join(want, "\n"))
	}
	for i, c := range cs {
		h, ok, err := Committed(ctx, st, c.Name)
		if err != nil || ok != (i != 1) || ok && h != c.Hash {
			t.Errorf("after removing %s: Committed(%s) = %s, %v, %v", cs[1].Name, c.Name, h, ok, err)
		}
	}
	kss, err := BackedUpKeyspaces(ctx, st, "n1")
	if err != nil || !slices.Equal(kss, []string{"a", "c"}) {
		t.Errorf("BackedUpKeyspaces = %v, %v; want [a c]", kss, err)
	}
	// The marker's body still names the session.
	k := strings.TrimPrefix(want[0], "put ")
	if s := markerSession(ctx, st, k); s != "0123456789abcdef01234567" {
		t.Errorf("the rewritten marker names session %q", s)
	}
	// The last ones: no marker is left.
	for _, c := range []Commit{cs[0], cs[2]} {
		if err := Delete(ctx, st, c.Name); err != nil {
			t.Fatal(err)
		}
	}
	var left []string
	st.List(ctx, "", func(i remote.Info) error { left = append(left, i.Key); return nil })
	if len(left) != 0 {
		t.Errorf("after removing every backup of the commit the store holds %v", left)
	}
}

// A manifest object changed after its commit is not the one its marker
// names: CommittedHeader refuses it, naming the backup.
func TestCommittedHeaderChecksTheHash(t *testing.T) {
	ctx := t.Context()
	st := openLocal(t)
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	c := commitOf(t, st, "n1", at, "ks")[0]
	m, err := CommittedHeader(ctx, st, c)
	if err != nil || m.Name != c.Name {
		t.Fatalf("CommittedHeader(%s) = %v, %v", c.Name, m, err)
	}
	// Another object of the same backup, which decodes as well.
	m2 := *m
	m2.CassandraVersion = "4.1.3"
	obj, _, err := Encode(&m2, chunk.Namer{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := Key(c.Name)
	if err := st.Put(ctx, key, strings.NewReader(string(obj)), int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	if _, err := GetHeader(ctx, st, c.Name); err != nil {
		t.Fatalf("the changed object does not decode: %v", err)
	}
	_, err = CommittedHeader(ctx, st, c)
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), c.Name) {
		t.Errorf("CommittedHeader of a changed object: %v; want ErrChanged naming %s", err, c.Name)
	}
}

// PutCommits writes one commit's marker for the backups of one host and
// time, and says which it wrote.
func TestPutCommitsGroupsByCommit(t *testing.T) {
	ctx := t.Context()
	st := &ops{Store: openLocal(t)}
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	var cs []Commit
	for _, b := range []struct {
		host, ks string
		t        time.Time
	}{{"n1", "a", at}, {"n1", "b", at}, {"n1", "a", at.Add(time.Second)}, {"n2", "a", at}, {"n1", "c", at}} {
		cs = append(cs, Commit{Name: BackupName(b.t, b.ks, b.host), Hash: HashOf([]byte(b.ks))})
	}
	written, err := PutCommits(ctx, st, append(cs, Commit{Name: "bad"}), "s")
	if err == nil {
		t.Error("a bad name was not an error")
	}
	slices.Sort(written)
	want := slices.Sorted(maps.Keys(map[string]bool{cs[0].Name: true, cs[1].Name: true, cs[2].Name: true, cs[3].Name: true, cs[4].Name: true}))
	if !slices.Equal(written, want) {
		t.Errorf("PutCommits wrote %v, want %v", written, want)
	}
	if len(st.log) != 3 {
		t.Errorf("PutCommits of three commits made %d writes:\n%s", len(st.log), strings.Join(st.log, "\n"))
	}
}
