package manifest

import (
	"testing"
	"time"

	"github.com/cassback/cassback/remote/local"
)

// Latest passes over a commit marker whose manifest is gone (written late,
// after a purge removed the backup) to the newest backup that is there.
func TestLatestPassesOverLoneMarkers(t *testing.T) {
	ctx := t.Context()
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var names []string
	for i := range 3 {
		m := &Manifest{Format: FormatVersion, Host: "h", Keyspace: "ks", Time: day.Add(time.Duration(i) * time.Hour), Session: "0123456789abcdef01234567", Tables: []Table{}}
		m.Name = BackupName(m.Time, m.Keyspace, m.Host)
		if err := putManifest(ctx, st, m, memChunks{}); err != nil {
			t.Fatal(err)
		}
		if err := PutCommit(ctx, st, m.Name, m.Session); err != nil {
			t.Fatal(err)
		}
		names = append(names, m.Name)
	}
	if got, err := Latest(ctx, st, "h", "ks", day.Add(time.Hour*24)); err != nil || got != names[2] {
		t.Fatalf("Latest = %q, %v; want %s", got, err, names[2])
	}
	// The newest is removed, and its marker written again late.
	if err := Delete(ctx, st, names[2]); err != nil {
		t.Fatal(err)
	}
	if err := PutCommit(ctx, st, names[2], "0123456789abcdef01234567"); err != nil {
		t.Fatal(err)
	}
	if got, err := Latest(ctx, st, "h", "ks", day.Add(time.Hour*24)); err != nil || got != names[1] {
		t.Fatalf("Latest with a lone marker = %q, %v; want %s", got, err, names[1])
	}
}
