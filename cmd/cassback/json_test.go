package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote/local"
)

// jsonRun is one store that TestJSONSchemas runs commands against.
type jsonRun struct {
	t       *testing.T
	dir     string
	store   string
	schemas map[string]schema
	seen    map[string]map[string]bool // by schema: the paths output held
}

// run runs cassback against the store and checks that it exits with
// want, that stderr is empty or (on failure) one line, and that stdout is
// one document of the schema named, which it decodes into v.
func (r *jsonRun) run(schemaName string, want int, v any, args ...string) {
	r.t.Helper()
	args = append([]string{"--backup-base", r.store, "--log-level", "ERROR"}, args...)
	run := cli
	if slices.Contains(args, "status") {
		run = cliStatus
	}
	out, errs, code := run(r.t, filepath.Join(r.dir, "cache"), args...)
	what := strings.Join(args[4:], " ")
	if code != want {
		r.t.Fatalf("%s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", what, code, want, out, errs)
	}
	if lines := strings.Count(errs, "\n"); lines > 1 || (want == 0) != (lines == 0) {
		r.t.Errorf("%s: stderr should be empty on success and one line on failure, got:\n%s", what, errs)
	}
	s, ok := r.schemas[schemaName]
	if !ok {
		r.t.Fatalf("docs/cli.md has no JSON schema %q", schemaName)
	}
	if r.seen[schemaName] == nil {
		r.seen[schemaName] = map[string]bool{}
	}
	checkJSON(r.t, what, out, s, v, r.seen[schemaName])
}

// TestJSONSchemas runs every command that has --json on a store of two
// hosts — backups, restores into a folder with a differing file, a purge
// leaving a condemned set, a planted stale session, a live session, a lost
// pack — and checks each document against its schema in docs/cli.md, and
// a few values against the store.
func TestJSONSchemas(t *testing.T) {
	if testing.Short() {
		t.Skip("backs up a 2 MiB node four times")
	}
	dir := t.TempDir()
	r := &jsonRun{t: t, dir: dir, store: filepath.Join(dir, "store"), schemas: jsonSchemas(t), seen: map[string]map[string]bool{}}
	data := filepath.Join(dir, "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 1, TotalBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	var b backupDoc
	r.run("backup, one-shot", 0, &b, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1", "--json")
	if b.Mode != "one-shot" || b.Host != "n1" || len(b.Backups) == 0 || b.Files == 0 || b.BytesNew == 0 {
		t.Errorf("backup: %+v", b)
	}
	jsonReads(t, r, b.Backups)
	jsonRestore(t, r, data)
	jsonPurge(t, r, data)
	jsonContinuous(t, r, data)
	for name, s := range r.schemas {
		for path := range s {
			if !r.seen[name][path] {
				t.Errorf("%s: no output held %s: the test does not check it", name, path)
			}
		}
	}
}

// jsonReads checks list, list --hosts, show, status and validate on a
// healthy store, status with a live session of n1.
func jsonReads(t *testing.T, r *jsonRun, backups []string) {
	var l listDoc
	r.run("list", 0, &l, "list", "--host", "n1", "--json")
	if l.Command != "list" || l.Host != "n1" || len(l.Keyspaces) != len(backups) || len(l.Keyspaces[0].Backups) != 1 {
		t.Errorf("list: %+v, want %d keyspaces with one backup each", l, len(backups))
	}
	r.run("list", 0, &l, "list", "nosuchkeyspace", "--host", "n1", "--all", "--json")
	if len(l.Keyspaces) != 1 || l.Keyspaces[0].Backups == nil || len(l.Keyspaces[0].Backups) != 0 || !l.All {
		t.Errorf("list of a keyspace without backups: %+v", l)
	}
	var hs listHostsDoc
	r.run("list --hosts", 0, &hs, "list", "--hosts", "--json")
	if len(hs.Hosts) != 1 || hs.Hosts[0].Host != "n1" || hs.Hosts[0].Keyspaces != len(backups) {
		t.Errorf("list --hosts: %+v", hs)
	}
	var sh showDoc
	r.run("show", 0, &sh, "show", backups[0], "--json")
	var sum int64
	for _, tb := range sh.Tables {
		for _, f := range tb.Files {
			sum += f.Bytes
		}
	}
	if sh.Backup != backups[0] || sh.Host != "n1" || sh.Files == 0 || sh.Bytes != sum {
		t.Errorf("show: backup %s host %s, %d files, %d bytes (files add up to %d)", sh.Backup, sh.Host, sh.Files, sh.Bytes, sum)
	}
	st, err := local.Open(r.store)
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := gc.StartSession(t.Context(), st, "n1", gc.KindBackup, gc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var s statusDoc
	r.run("status", 0, &s, "status", "--json")
	if len(s.Hosts) != 1 || !s.Hosts[0].Live || len(s.Hosts[0].Sessions) != 1 || s.Hosts[0].Stale || s.StaleHosts != 0 ||
		s.Hosts[0].Bytes == 0 || len(s.Hosts[0].Keyspaces) != len(backups) {
		t.Errorf("status: %+v", s)
	}
	if err := sess.End(t.Context()); err != nil {
		t.Fatal(err)
	}
	var v validateDoc
	r.run("validate", 0, &v, "validate", "--checksum", "--json")
	if !v.OK || !v.Checksum || len(v.Backups) != len(backups) || v.Files == 0 || len(v.Problems) != 0 {
		t.Errorf("validate: %+v", v)
	}
}

// jsonRestore restores n1 three times: into an empty folder, again (every
// file skipped), and over a changed file (moved aside and restored).
func jsonRestore(t *testing.T, r *jsonRun, data string) {
	into := filepath.Join(r.dir, "restored")
	var rs restoreDoc
	r.run("restore", 0, &rs, "restore", "--data-dir", into, "--host", "n1", "--no-chown", "--json")
	if len(rs.Restored) == 0 || rs.Bytes == 0 || len(rs.Failed) != 0 || rs.DataDir != into {
		t.Fatalf("restore: %d restored, %d bytes, %d failed", len(rs.Restored), rs.Bytes, len(rs.Failed))
	}
	changed := rs.Restored[0].Path
	if err := os.WriteFile(filepath.Join(into, changed), []byte("not what was backed up"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run("restore", 0, &rs, "restore", "--data-dir", into, "--host", "n1", "--no-chown", "--json")
	if len(rs.Restored) != 1 || rs.Restored[0].Path != changed || len(rs.Moved) != 1 || len(rs.Skipped) == 0 {
		t.Errorf("restore over a changed file: restored %+v, moved %+v, %d skipped", rs.Restored, rs.Moved, len(rs.Skipped))
	}
}

// jsonPurge purges n1's older backups with a stale session of a gone host
// in the store: a dry run, a purge that condemns (grace 1h), validate
// showing the condemned set and the stale session, a dry run waiting on
// the set, a purge of everything, and validate after a pack is lost.
func jsonPurge(t *testing.T, r *jsonRun, data string) {
	st, err := local.Open(r.store)
	if err != nil {
		t.Fatal(err)
	}
	ghost, _, err := gc.StartSession(t.Context(), st, "ghost", gc.KindBackup, gc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(r.store, filepath.FromSlash(ghost.Key())), old, old); err != nil {
		t.Fatal(err)
	}
	var b backupDoc
	r.run("backup, one-shot", 0, &b, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n1", "--json")
	var p purgeDoc
	purge := []string{"purge", "--host", "n1", "--purge-before", "2100-01-01", "--json"}
	r.run("purge", 0, &p, append(purge, "--dry-run")...)
	if !p.DryRun || p.Plan == nil || p.Result != nil || len(p.Backups) == 0 || len(p.Kept) != len(b.Backups) || len(p.Plan.StaleSessions) != 1 {
		t.Errorf("purge --dry-run: %+v plan %+v", p, p.Plan)
	}
	r.run("purge", 0, &p, append(purge, "--purge-latest", "--new-pack-margin", "0")...)
	if p.DryRun || p.Plan != nil || p.Result == nil || p.Result.CondemnedPacks == 0 || len(p.Result.RevokedSessions) != 1 || len(p.Result.Waiting) == 0 {
		t.Errorf("purge: %+v result %+v", p, p.Result)
	}
	var v validateDoc
	r.run("validate", 0, &v, "validate", "--json")
	if !v.OK || len(v.Condemned) == 0 || len(v.StaleSessions) != 1 || v.StaleSessions[0].State != "revoked" {
		t.Errorf("validate after purge: %+v", v)
	}
	r.run("purge", 0, &p, append(purge, "--dry-run")...)
	if len(p.Plan.Waiting) == 0 || len(p.Backups) != 0 {
		t.Errorf("purge --dry-run with a condemned set: %+v plan %+v", p, p.Plan)
	}
	r.run("purge", 0, &p, append(purge, "--grace", "0", "--dry-run")...)
	if len(p.Plan.Sweep) == 0 {
		t.Errorf("purge --dry-run --grace 0 with a condemned set: plan %+v", p.Plan)
	}
	r.run("purge", 0, &p, append(purge, "--grace", "0", "--new-pack-margin", "0")...)
	if p.Result == nil || p.Result.DeletedPacks == 0 {
		t.Errorf("purge --grace 0: result %+v", p.Result)
	}
	jsonDamage(t, r, data)
}

// jsonDamage backs up n2, loses a pack and damages a manifest: validate,
// restore and status exit 1 and still print their documents, and purge
// leaves the damaged backup alone.
func jsonDamage(t *testing.T, r *jsonRun, data string) {
	var b backupDoc
	r.run("backup, one-shot", 0, &b, "backup", "--ignore-changes", "--cassandra_data_dir", data, "--host", "n2", "--json")
	// A pack of file chunks, not of manifest trees (whose loss makes the
	// manifests unreadable: "corrupt", not "missing").
	packs, _ := filepath.Glob(filepath.Join(r.store, "packs", "*", "*"))
	lost := ""
	for _, p := range packs {
		b, err := os.ReadFile(p)
		if err == nil && len(b) >= pack.TrailerSize && !pack.IsTreePack(b[len(b)-pack.TrailerSize:]) {
			lost = p
			break
		}
	}
	if lost == "" {
		t.Fatal("no pack of file chunks in the store")
	}
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}
	var v validateDoc
	r.run("validate", 1, &v, "validate", "--json")
	if v.OK || len(v.Problems) == 0 || v.Problems[0].Kind != "missing" {
		t.Errorf("validate after a pack was lost: ok %v, problems %+v", v.OK, v.Problems)
	}
	var rs restoreDoc
	r.run("restore", 1, &rs, "restore", "--data-dir", filepath.Join(r.dir, "damaged"), "--host", "n2", "--no-chown", "--json")
	if len(rs.Failed) == 0 {
		t.Errorf("restore after a pack was lost: nothing failed")
	}
	_, ks, _, _ := manifest.ParseBackupName(b.Backups[0])
	key, _ := manifest.Key(b.Backups[0])
	if err := os.WriteFile(filepath.Join(r.store, filepath.FromSlash(key)), []byte("not a manifest"), 0o644); err != nil {
		t.Fatal(err)
	}
	var p purgeDoc
	r.run("purge", 0, &p, "purge", "--host", "n2", "--purge-before", "2100-01-01", "--dry-run", "--json")
	if len(p.Skipped) != 1 || p.Skipped[0].Backup != b.Backups[0] {
		t.Errorf("purge --dry-run with a damaged manifest: skipped %+v, want %s", p.Skipped, b.Backups[0])
	}
	var s statusDoc
	r.run("status", 1, &s, "status", "--json")
	var unreadable []string
	for _, k := range s.Hosts[0].Keyspaces {
		if k.Unreadable != "" {
			unreadable = append(unreadable, k.Keyspace)
		}
	}
	if len(s.Hosts) != 1 || s.Hosts[0].Host != "n2" || !slices.Equal(unreadable, []string{ks}) {
		t.Errorf("status with a damaged manifest: %+v", s)
	}
}

// jsonContinuous runs a continuous backup in-process, into a store of its
// own, until its first manifests are committed, then stops it as the first
// SIGTERM would.
func jsonContinuous(t *testing.T, r *jsonRun, data string) {
	store := filepath.Join(r.dir, "continuous")
	ctl := &stopControl{stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(withStopControl(t.Context(), ctl), 2*time.Minute)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if ents, _ := os.ReadDir(filepath.Join(store, "commits", "c1")); len(ents) > 0 {
				close(ctl.stop)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var out, errb strings.Builder
	args := []string{"--log-file", "-", "--log-level", "ERROR", "--cache-dir", filepath.Join(r.dir, "cache"), "--backup-base", store,
		"backup", "--cassandra_data_dir", data, "--host", "c1", "--manifest-interval-secs", "0.1", "--json"}
	if code := exitCode(run(ctx, args, nil, &out, &errb), &errb); code != 0 {
		t.Fatalf("continuous backup: exit status %d\n%s%s", code, out.String(), errb.String())
	}
	r.seen["backup, continuous"] = map[string]bool{}
	var c continuousDoc
	checkJSON(t, "backup (continuous)", out.String(), r.schemas["backup, continuous"], &c, r.seen["backup, continuous"])
	if c.Mode != "continuous" || c.Host != "c1" || c.Manifests == 0 || c.SSTables == 0 {
		t.Errorf("continuous backup: %+v", c)
	}
}
