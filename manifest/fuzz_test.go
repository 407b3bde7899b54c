package manifest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
)

// FuzzParseBackupName parses hostile backup names, as show, validate,
// restore and every store listing do: it must never panic, and a name it
// accepts must print back identically (BackupName) and give manifest and
// commit keys that are valid store keys of that host and keyspace.
func FuzzParseBackupName(f *testing.F) {
	for _, s := range []string{
		"2026_11_26T01_41_31_917564-ks1-node1.example.com",
		"2026_11_26T01_41_31_917564-ks1-a-b-c",
		"2026_02_30T01_41_31_917564-ks1-h",
		"2026_11_26T01_41_31_917564-ks-.h",
		"2026_11_26T01_41_31_917564-ks-h/../../x",
		"0000_01_01T00_00_00_000000-_-_",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, ks, host, err := ParseBackupName(s)
		if err != nil {
			return
		}
		if ts.Location() != time.UTC {
			t.Fatalf("ParseBackupName(%q): time %v not in UTC", s, ts)
		}
		if back := BackupName(ts, ks, host); back != s {
			t.Fatalf("ParseBackupName(%q) = %v, %q, %q, which print as %q", s, ts, ks, host, back)
		}
		key, err := Key(s)
		if err != nil {
			t.Fatalf("Key(%q): %v", s, err)
		}
		if err := remote.ValidKey(key); err != nil {
			t.Fatalf("backup %q: key %q: %v", s, key, err)
		}
		if segs := strings.Split(key, "/"); len(segs) != 4 || segs[1] != host || segs[2] != ks || segs[3] != s {
			t.Fatalf("backup %q: key %q is not <root>/%s/%s/<name>", s, key, host, ks)
		}
		// Its commit's marker, alone in the commit: one valid key that
		// parses back to it.
		e := CommitEntry{Keyspace: ks, Hash: HashOf([]byte(s))}
		cks, err := CommitKeys(host, ts, []CommitEntry{e}, remote.MaxKeyLen)
		if err != nil || len(cks) != 1 {
			t.Fatalf("CommitKeys(%q) = %q, %v; want one key", s, cks, err)
		}
		if err := remote.ValidKey(cks[0]); err != nil {
			t.Fatalf("backup %q: marker %q: %v", s, cks[0], err)
		}
		h, at, es, err := ParseCommitKey(cks[0])
		if err != nil || h != host || !at.Equal(ts) || !slices.Equal(es, []CommitEntry{e}) {
			t.Fatalf("ParseCommitKey(%q) = %q, %v, %v, %v; want %q, %v, %v", cks[0], h, at, es, err, host, ts, e)
		}
	})
}

// FuzzParseCommitKey parses hostile marker keys, as every listing of
// commits/ does: it must never panic, and a valid key it accepts is the
// one CommitKeys makes of what it parsed.
func FuzzParseCommitKey(f *testing.F) {
	for _, s := range []string{
		"commits/node1/2026_11_26T01_41_31_917564/ks1-0123456789abcdef01234567",
		"commits/node1/2026_11_26T01_41_31_917564/a-0123456789abcdef01234567.b-0123456789abcdef01234567",
		"commits/node1/2026_11_26T01_41_31_917564/b-0123456789abcdef01234567.a-0123456789abcdef01234567",
		"commits/node1/2026_11_26T01_41_31_917564/a-0123456789abcdef01234567.a-0123456789abcdef01234567",
		"commits/node1/2026_11_26T01_41_31_917564/a-0123456789ABCDEF01234567",
		"commits/node1/2026_11_26T01_41_31_917564/a-0123456789abcdef01234567.",
		"commits/n/ks/2026_11_26T01_41_31_917564-ks-n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		host, at, es, err := ParseCommitKey(key)
		if err != nil || remote.ValidKey(key) != nil {
			return
		}
		keys, err := CommitKeys(host, at, es, remote.MaxKeyLen)
		if err != nil || len(keys) != 1 || keys[0] != key {
			t.Fatalf("ParseCommitKey(%q) = %q, %v, %v, which CommitKeys makes %q, %v", key, host, at, es, keys, err)
		}
	})
}

// FuzzParseTime parses hostile times, as --at, --day, --purge-before and
// --extrapolate-to do: it must never panic, gives UTC, and a time within
// the years backup names can hold prints as a backup-name time that parses
// back to it, to the microsecond.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-11-26", "2026-11-26T12:00", "2026-11-26T12:00:05", "2026-11-26T12:00:05.123456",
		"2026-11-26T12:00:05+02:00", "2026-11-26T12:00:05.123456789Z", "2026_11_26T12_00_05_123456",
		"0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "2026-13-01", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if err != nil {
			return
		}
		if tm.Location() != time.UTC {
			t.Fatalf("ParseTime(%q) = %v, not UTC", s, tm)
		}
		if y := tm.Year(); y < 0 || y > 9999 {
			return // RFC 3339 with a zone can cross year 0 or 9999 in UTC
		}
		name := formatNameTime(tm)
		back, err := ParseTime(name)
		if want := tm.Truncate(time.Microsecond); err != nil || !back.Equal(want) {
			t.Fatalf("ParseTime(%q) = %v, printed %q, parsed back %v, %v", s, tm, name, back, err)
		}
	})
}
