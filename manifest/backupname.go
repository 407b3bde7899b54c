package manifest

import (
	"fmt"
	"strings"
	"time"

	"github.com/cassback/cassback/manifest/sstable"
)

// The original cassback's _SAFE_DT_FMT is "%Y_%m_%dT%H_%M_%S_%f": fixed
// width, so backup names of one keyspace and host sort by time. Go layouts
// know fractional seconds only after '.' or ',', so the "_ffffff" part is
// written and read by hand.
const (
	nameSecondsLayout = "2006_01_02T15_04_05"
	nameTimeLen       = len(nameSecondsLayout) + 7 // + "_ffffff"
)

// formatNameTime formats t as YYYY_MM_DDTHH_MM_SS_ffffff in UTC.
func formatNameTime(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%s_%06d", t.Format(nameSecondsLayout), t.Nanosecond()/1000)
}

// parseNameTime parses YYYY_MM_DDTHH_MM_SS_ffffff as UTC.
func parseNameTime(s string) (time.Time, bool) {
	if len(s) != nameTimeLen || s[nameTimeLen-7] != '_' || !allDigits(s[nameTimeLen-6:]) {
		return time.Time{}, false
	}
	t, err := time.Parse(nameSecondsLayout, s[:nameTimeLen-7])
	if err != nil {
		return time.Time{}, false
	}
	var us int
	for _, c := range []byte(s[nameTimeLen-6:]) {
		us = us*10 + int(c-'0')
	}
	return t.Add(time.Duration(us) * time.Microsecond), true
}

// maxName bounds a backup name, one segment of a store key.
const maxName = 255

// BackupName returns the original cassback's backup name
// "<YYYY_MM_DDTHH_MM_SS_ffffff>-<keyspace>-<host>", with t in UTC, truncated
// to the microsecond.
func BackupName(t time.Time, keyspace, host string) string {
	return formatNameTime(t) + "-" + keyspace + "-" + host
}

// ParseBackupName splits a backup name made by BackupName. The keyspace
// cannot contain '-'; the host may. The time is UTC.
func ParseBackupName(s string) (t time.Time, keyspace, host string, err error) {
	ts, rest, ok1 := strings.Cut(s, "-")
	keyspace, host, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 {
		return time.Time{}, "", "", fmt.Errorf("backup name %q: want <YYYY_MM_DDTHH_MM_SS_ffffff>-<keyspace>-<host>", s)
	}
	t, ok := parseNameTime(ts)
	if !ok {
		return time.Time{}, "", "", fmt.Errorf("backup name %q: time %q: want YYYY_MM_DDTHH_MM_SS_ffffff", s, ts)
	}
	if !sstable.IsName(keyspace) {
		return time.Time{}, "", "", fmt.Errorf("backup name %q: keyspace %q: want letters, digits and '_'", s, keyspace)
	}
	if err := checkHost(host); err != nil {
		return time.Time{}, "", "", fmt.Errorf("backup name %q: %w", s, err)
	}
	if len(s) > maxName {
		return time.Time{}, "", "", fmt.Errorf("backup name %.300q: %d bytes, more than %d (keyspace and host too long together)", s, len(s), maxName)
	}
	return t, keyspace, host, nil
}

// MaxHostLen bounds a host name: a backup name (26 bytes of time, the
// keyspace, the host and two '-') is one store key segment of at most 255
// bytes, and Cassandra allows keyspace names of 48.
const MaxHostLen = 255 - 26 - 2 - 48

// checkHost accepts host names as the store keys need them (remote.ValidKey
// segments): 1 to MaxHostLen bytes of A-Z a-z 0-9 '.' '_' '-', not starting
// with '.'.
func checkHost(host string) error {
	ok := host != "" && len(host) <= MaxHostLen && host[0] != '.'
	for _, c := range []byte(host) {
		ok = ok && hostByte(c)
	}
	if !ok {
		return fmt.Errorf("host %.300q: want 1 to %d letters, digits, '.', '_' or '-', not starting with '.'", host, MaxHostLen)
	}
	return nil
}

// timeInputs are the forms ParseTime accepts, in the order it tries them.
var timeInputs = []struct{ layout, show string }{
	{time.RFC3339Nano, "2006-01-02T15:04:05Z07:00 (RFC 3339)"},
	{"2006-01-02T15:04:05", "2006-01-02T15:04:05[.000000]"},
	{"2006-01-02T15:04", "2006-01-02T15:04"},
	{"2006-01-02", "2006-01-02"},
}

// ParseTime parses a time given on the command line. It accepts the original
// cassback's input formats (2006-01-02T15:04:05.000000, 2006-01-02T15:04:05,
// 2006-01-02T15:04, 2006-01-02), RFC 3339 with a zone, and the timestamp of a
// backup name. A time without a zone is UTC, like every time cassback
// stores: the original converted it from local time, which made a bare date
// mean a different UTC day east of Greenwich. The result is in UTC.
func ParseTime(s string) (time.Time, error) {
	for _, in := range timeInputs {
		if t, err := time.Parse(in.layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if t, ok := parseNameTime(s); ok {
		return t, nil
	}
	forms := make([]string, 0, len(timeInputs)+1)
	for _, in := range timeInputs {
		forms = append(forms, in.show)
	}
	forms = append(forms, "2006_01_02T15_04_05_000000 (as in backup names)")
	return time.Time{}, fmt.Errorf("time %q: want one of %s; a time without a zone is UTC", s, strings.Join(forms, ", "))
}

// hostByte reports whether c may appear in a host name.
func hostByte(c byte) bool {
	return c == '_' || c == '.' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
