package manifest

import (
	"strings"
	"testing"
	"time"
)

func TestBackupName(t *testing.T) {
	at := time.Date(2013, 3, 6, 3, 12, 44, 123456789, time.UTC)
	tests := []struct {
		t              time.Time
		keyspace, host string
		want           string
	}{
		{at, "ks", "host1", "2013_03_06T03_12_44_123456-ks-host1"},
		{at, "Key_Space1", "node-1.dc-2.example.com", "2013_03_06T03_12_44_123456-Key_Space1-node-1.dc-2.example.com"},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "ks", "h", "2026_01_02T03_04_05_000000-ks-h"},
		{time.Date(2026, 1, 2, 3, 4, 5, 7000, time.FixedZone("X", -3600)), "ks", "h", "2026_01_02T04_04_05_000007-ks-h"},
	}
	for _, tt := range tests {
		got := BackupName(tt.t, tt.keyspace, tt.host)
		if got != tt.want {
			t.Errorf("BackupName(%v, %s, %s) = %s, want %s", tt.t, tt.keyspace, tt.host, got, tt.want)
			continue
		}
		pt, ks, host, err := ParseBackupName(got)
		if err != nil || !pt.Equal(tt.t.Truncate(time.Microsecond)) || pt.Location() != time.UTC || ks != tt.keyspace || host != tt.host {
			t.Errorf("ParseBackupName(%s) = %v, %s, %s, %v", got, pt, ks, host, err)
		}
	}
}

func TestParseBackupNameErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"2013_03_06T03_12_44_123456",
		"2013_03_06T03_12_44_123456-ks",
		"2013_03_06T03_12_44_123456-ks-",
		"2013_03_06T03_12_44-ks-h",
		"2013_03_06T03_12_44_12345-ks-h",
		"2013_03_06T03_12_44_12345x-ks-h",
		"2013_13_06T03_12_44_123456-ks-h",
		"2013-03-06T03:12:44.123456-ks-h",
		"2013_03_06T03_12_44_123456-k.s-h",
		"2013_03_06T03_12_44_123456-ks-h/x",
		"2013_03_06T03_12_44_123456-ks-.h",
		"2013_03_06T03_12_44_123456-ks-" + strings.Repeat("h", 201),
	} {
		if _, _, _, err := ParseBackupName(s); err == nil {
			t.Errorf("ParseBackupName(%q): no error", s)
		}
	}
}

func TestParseTime(t *testing.T) {
	utc := func(y, mo, d, h, mi, s, us int) time.Time {
		return time.Date(y, time.Month(mo), d, h, mi, s, us*1000, time.UTC)
	}
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2013-03-06T03:12:44.123456", utc(2013, 3, 6, 3, 12, 44, 123456)},
		{"2013-03-06T03:12:44", utc(2013, 3, 6, 3, 12, 44, 0)},
		{"2013-03-06T03:12", utc(2013, 3, 6, 3, 12, 0, 0)},
		{"2013-03-06", utc(2013, 3, 6, 0, 0, 0, 0)},
		{"2013-03-06T03:12:44Z", utc(2013, 3, 6, 3, 12, 44, 0)},
		{"2013-03-06T05:12:44.5+02:00", utc(2013, 3, 6, 3, 12, 44, 500000)},
		{"2013_03_06T03_12_44_123456", utc(2013, 3, 6, 3, 12, 44, 123456)},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2013-3-6", "2013-03-06 03:12", "06/03/2013"} {
		_, err := ParseTime(bad)
		if err == nil || !strings.Contains(err.Error(), "2006-01-02T15:04") || !strings.Contains(err.Error(), "UTC") {
			t.Errorf("ParseTime(%q) = %v, want an error listing the accepted forms", bad, err)
		}
	}
}

// A backup name is one key segment: the host is bounded so that any
// Cassandra keyspace name fits beside it, and a longer name is refused.
func TestBackupNameFitsASegment(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)
	host, ks := strings.Repeat("h", MaxHostLen), strings.Repeat("k", 48)
	name := BackupName(at, ks, host)
	if _, _, _, err := ParseBackupName(name); err != nil || len(name) != 255 {
		t.Errorf("longest host and keyspace: %d bytes: %v", len(name), err)
	}
	if _, _, _, err := ParseBackupName(BackupName(at, ks, host+"h")); err == nil {
		t.Errorf("host of %d bytes accepted", MaxHostLen+1)
	}
	if _, _, _, err := ParseBackupName(BackupName(at, ks+"k", host)); err == nil || !strings.Contains(err.Error(), "more than 255") {
		t.Errorf("backup name of 256 bytes: %v, want refused as too long", err)
	}
}
