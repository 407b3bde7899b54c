package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/local"
)

// ageBackups moves host's backups taken in the last hour back by d, as if
// the host had taken them then: each is stored again under its earlier
// time and name, committed, and the original removed.
func ageBackups(t *testing.T, store, host string, d time.Duration) {
	t.Helper()
	ctx := t.Context()
	st, err := local.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	kss, err := manifest.Keyspaces(ctx, st, host)
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range kss {
		var names []string
		if err := manifest.List(ctx, st, host, ks, "", func(n string) error { names = append(names, n); return nil }); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			m, err := manifest.Get(ctx, st, n, cassback.ChunksOf(st))
			if err != nil {
				t.Fatal(err)
			}
			if time.Since(m.Time) > time.Hour {
				continue
			}
			m.Time = m.Time.Add(-d)
			m.Name = manifest.BackupName(m.Time, ks, host)
			if err := cassback.CommitManifest(ctx, st, m, m.Session); err != nil {
				t.Fatal(err)
			}
			if err := manifest.Delete(ctx, st, n); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// backupNode generates a node with the given seed and backs it up as host.
func backupNode(t *testing.T, dir, store, host string, seed uint64) {
	t.Helper()
	data := filepath.Join(dir, "data-"+host)
	if _, err := os.Stat(data); err != nil {
		if _, err := nodegen.Generate(data, nodegen.Config{Seed: seed, TotalBytes: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	out, errs, code := cli(t, filepath.Join(dir, "cache"), "--backup-base", store, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", host)
	if code != 0 {
		t.Fatalf("backup %s: exit status %d\n%s%s", host, code, out, errs)
	}
}

// TestStatus checks status on a store of two hosts, one of which has not
// backed up for three days, and empty directories of a host and of a
// keyspace (as an S3-compatible server may keep listing): the old host is
// flagged and makes the exit status 1 unless --stale-after covers it, and
// the empty directories show neither in status nor in list --hosts.
func TestStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("backs up two 1 MiB nodes")
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cache := filepath.Join(dir, "cache")
	backupNode(t, dir, store, "n2", 2)
	ageBackups(t, store, "n2", 72*time.Hour)
	backupNode(t, dir, store, "n1", 1)
	for _, d := range []string{"commits/ghost/ks_app", "manifests/ghost/ks_app", "commits/n1/ghostks", "manifests/n1/ghostks"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	out, errs, code := cliStatus(t, cache, "--backup-base", store, "status")
	if want := "cassback: status: 1 of 2 hosts have no backup newer than 24h: n2\n"; code != 1 || errs != want {
		t.Errorf("status: exit status %d, stderr %q; want 1 and %q", code, errs, want)
	}
	for _, re := range []string{
		`(?m)^n1  newest backup [0-9dhms]+ ago, no live session; [0-9.]+[KM] in \d+ files$`,
		`(?m)^n2  STALE: newest backup 3d0h ago, no live session; [0-9.]+[KM] in \d+ files$`,
		`(?m)^  ks_app +\S+-ks_app-n2 +3d0h ago +[0-9.]+[KM] in \d+ files$`,
		`(?m)^2 hosts, 1 stale \(newest backup older than 24h\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output has no line matching %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "ghost") {
		t.Errorf("status shows an empty directory:\n%s", out)
	}
	t.Logf("status:\n%s", out)

	out, errs, code = cliStatus(t, cache, "--backup-base", store, "status", "--stale-after", "100h")
	if code != 0 || errs != "" || strings.Contains(out, "STALE") || !strings.Contains(out, "2 hosts, 0 stale (newest backup older than 100h)") {
		t.Errorf("status --stale-after 100h: exit status %d\n%s%s", code, out, errs)
	}
	out, errs, code = cli(t, cache, "--backup-base", store, "list", "--hosts")
	if code != 0 || !regexp.MustCompile(`(?m)^n1 +6 +\S+-n1\n+n2 +6 +\S+-n2\n$`).MatchString(out) {
		t.Errorf("list --hosts: exit status %d, want n1 and n2 with 6 keyspaces each:\n%s%s", code, out, errs)
	}
	_, errs, code = cliStatus(t, cache, "--backup-base", store, "status", "--stale-after", "-1h")
	if code != 2 || !strings.HasPrefix(errs, "cassback: --stale-after -1h") || strings.Count(errs, "\n") != 1 {
		t.Errorf("status --stale-after -1h: exit status %d, stderr %q; want 2 and one line naming the option", code, errs)
	}
}

// TestLocalStoreHidesEmptyDirs checks what TestStatus relies on to be
// strict: the local store already leaves out empty directories, so the
// engine's own filtering is tested against a store that does not
// (cassback.TestStatusLeavesOutEmptyDirs).
func TestLocalStoreHidesEmptyDirs(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "commits", "ghost", "ks"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if hs, err := manifest.Hosts(t.Context(), st); err != nil || len(hs) != 0 {
		t.Errorf("local store lists hosts %v (%v) for an empty directory, want none", hs, err)
	}
}

// TestPurgeDecommissionedHost applies retention to a host that no longer
// runs, from another host's machine: purge --host with --keep-days keeps
// its newest backup of each keyspace, with --purge-latest removes the rest
// and frees its packs; the host then leaves list --hosts and status, and
// the remaining host's backups are intact.
func TestPurgeDecommissionedHost(t *testing.T) {
	if testing.Short() {
		t.Skip("backs up two 1 MiB nodes")
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	cache := filepath.Join(dir, "cache")
	backupNode(t, dir, store, "gone", 2)
	ageBackups(t, store, "gone", 10*24*time.Hour)
	backupNode(t, dir, store, "gone", 2)
	ageBackups(t, store, "gone", 9*24*time.Hour)
	backupNode(t, dir, store, "n1", 1)
	if _, errs, code := cliStatus(t, cache, "--backup-base", store, "status"); code != 1 || !strings.Contains(errs, ": gone\n") {
		t.Errorf("status before the purge: exit status %d, stderr %q; want 1 naming gone", code, errs)
	}

	purge := []string{"--backup-base", store, "purge", "--host", "gone", "--keep-days", "7", "--json"}
	var p purgeDoc
	out, errs, code := cli(t, cache, purge...)
	checkJSON(t, "purge --host gone --keep-days 7", out, jsonSchemas(t)["purge"], &p, map[string]bool{})
	if code != 0 || len(p.Backups) != 6 || len(p.Kept) != 6 || !strings.Contains(p.Backups[0], "-gone") {
		t.Errorf("purge --host gone --keep-days 7: exit status %d, removed %v, kept %v; want the 6 older ones removed, the 6 newest kept\n%s", code, p.Backups, p.Kept, errs)
	}
	out, errs, code = cli(t, cache, append(purge, "--purge-latest", "--grace", "0", "--new-pack-margin", "0")...)
	checkJSON(t, "purge --host gone --keep-days 7 --purge-latest", out, jsonSchemas(t)["purge"], &p, map[string]bool{})
	if code != 0 || len(p.Backups) != 6 || len(p.Kept) != 0 || p.Result.DeletedPacks == 0 {
		t.Errorf("purge --purge-latest: exit status %d, removed %v, kept %v, result %+v\n%s", code, p.Backups, p.Kept, p.Result, errs)
	}

	out, _, code = cli(t, cache, "--backup-base", store, "list", "--hosts")
	if code != 0 || !regexp.MustCompile(`^Host .*\nn1 +6 +\S+-n1\n\nStore [0-9a-f]{32}, encrypted: no\n$`).MatchString(out) {
		t.Errorf("list --hosts after the purge: exit status %d, want only n1:\n%s", code, out)
	}
	if out, errs, code := cliStatus(t, cache, "--backup-base", store, "status"); code != 0 || strings.Contains(out, "gone") {
		t.Errorf("status after the purge: exit status %d\n%s%s", code, out, errs)
	}
	if out, errs, code := cli(t, cache, "--backup-base", store, "validate", "--checksum"); code != 0 || !strings.Contains(out, "Checked 6 backups") {
		t.Errorf("validate after the purge: exit status %d\n%s%s", code, out, errs)
	}
}
