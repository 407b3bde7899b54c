package cassback

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// staleDirs is a store whose ListDirs also returns prefixes with no key
// left under them, as some S3-compatible servers do after the last key of
// a "directory" is deleted.
type staleDirs struct {
	remote.Store
	extra map[string][]string // by ListDirs prefix
}

func (s staleDirs) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	dirs, err := s.Store.ListDirs(ctx, prefix)
	dirs = append(dirs, s.extra[prefix]...)
	slices.Sort(dirs)
	return slices.Compact(dirs), err
}

// TestStatusLeavesOutEmptyDirs checks that Status shows every host with
// its newest backup per keyspace, sizes and live sessions, and leaves out
// hosts and keyspaces with no backup left: a prefix the store still lists
// after its last key went, a host whose backups were all purged, a host
// with only a commit marker written late after a purge removed its backup,
// and a backup dated after the clock.
func TestStatusLeavesOutEmptyDirs(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	lst, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := index.NewConfig(); err != nil {
		t.Fatal(err)
	} else if _, err := index.Init(t.Context(), lst, cfg); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	data := bytes.Repeat([]byte("cassandra"), 100)
	refs := []chunk.Ref{{ID: chunk.Sum(data), Len: uint32(len(data))}}
	writeManifest(t, lst, nil, "n1", now.Add(-3*time.Hour), data, refs)
	n1 := writeManifest(t, lst, nil, "n1", now.Add(-time.Hour), data, refs)
	writeManifest(t, lst, nil, "n1", now.Add(2*time.Hour), data, refs) // after the clock: not counted
	n2 := writeManifest(t, lst, nil, "n2", now.Add(-72*time.Hour), data, refs)
	if err := manifest.Delete(ctx, lst, writeManifest(t, lst, nil, "purged", now.Add(-time.Hour), data, refs)); err != nil {
		t.Fatal(err)
	}
	lone := writeManifest(t, lst, nil, "lone", now.Add(-time.Hour), data, refs)
	key, _ := manifest.Key(lone)
	if err := lst.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	live, _, err := gc.StartSession(ctx, lst, "n1", gc.KindBackup, gc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.End(context.WithoutCancel(ctx))
	stale, _, err := gc.StartSession(ctx, lst, "n2", gc.KindBackup, gc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := now.Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(stale.Key())), old, old); err != nil {
		t.Fatal(err)
	}

	st := staleDirs{lst, map[string][]string{"commits/": {"ghost"}, "manifests/ghost/": {"ks"}, "manifests/n1/": {"ghostks"}}}
	if hs, _ := manifest.Hosts(ctx, st); !slices.Equal(hs, []string{"ghost", "lone", "n1", "n2"}) {
		t.Fatalf("the store lists hosts %v, want the stale prefix ghost and lone, n1, n2", hs)
	}
	got, err := Status(ctx, st, StatusOptions{Now: now, Sizes: true, Sessions: true})
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, h := range got {
		hosts = append(hosts, h.Host)
	}
	if !slices.Equal(hosts, []string{"n1", "n2"}) {
		t.Fatalf("Status shows hosts %v, want [n1 n2]", hosts)
	}
	for i, want := range []struct {
		backup   string
		sessions int
	}{{n1, 1}, {n2, 0}} {
		h := got[i]
		if len(h.Keyspaces) != 1 || h.Keyspaces[0].Keyspace != "ks" || h.Keyspaces[0].Backup != want.backup {
			t.Errorf("%s: keyspaces %+v, want only ks with %s", h.Host, h.Keyspaces, want.backup)
		}
		if wt, _, _, _ := manifest.ParseBackupName(want.backup); !h.Newest.Equal(wt) {
			t.Errorf("%s: newest %v, want %v", h.Host, h.Newest, wt)
		}
		if h.Files != 1 || h.Bytes != int64(len(data)) || len(h.Sessions) != want.sessions {
			t.Errorf("%s: %d files, %d bytes, %d live sessions; want 1, %d, %d", h.Host, h.Files, h.Bytes, len(h.Sessions), len(data), want.sessions)
		}
	}

	// Without Sizes and Sessions, nothing but the listing and commit
	// markers is read.
	cheap, err := Status(ctx, st, StatusOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(cheap) != 2 || cheap[0].Bytes != 0 || cheap[0].Sessions != nil || cheap[0].Keyspaces[0].Backup != n1 {
		t.Errorf("Status without sizes or sessions: %+v", cheap)
	}
}

// TestStatusAt checks the latest backup time Status counts: an hour after
// the clock, but not past the end of its UTC day.
func TestStatusAt(t *testing.T) {
	for _, tc := range []struct{ now, want string }{
		{"2026-11-26T12:00:00Z", "2026-11-26T13:00:00Z"},
		{"2026-11-26T23:30:00Z", "2026-11-26T23:59:59.999999Z"},
		{"2026-11-26T23:30:00+01:00", "2026-11-26T23:30:00Z"},
	} {
		now, _ := time.Parse(time.RFC3339, tc.now)
		want, _ := time.Parse(time.RFC3339Nano, tc.want)
		if got := statusAt(now); !got.Equal(want) {
			t.Errorf("statusAt(%s) = %s, want %s", tc.now, got.Format(time.RFC3339Nano), tc.want)
		}
	}
}

// TestSelectLeavesOutEmptyKeyspaces: restore of every keyspace of a host
// (Select without keyspaces) passes over a keyspace prefix the store still
// lists after its last backup was deleted, instead of failing on it.
func TestSelectLeavesOutEmptyKeyspaces(t *testing.T) {
	lst, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := index.NewConfig(); err != nil {
		t.Fatal(err)
	} else if _, err := index.Init(t.Context(), lst, cfg); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("cassandra"), 100)
	refs := []chunk.Ref{{ID: chunk.Sum(data), Len: uint32(len(data))}}
	name := writeManifest(t, lst, nil, "n1", time.Now().Add(-time.Hour), data, refs)
	st := staleDirs{lst, map[string][]string{"manifests/n1/": {"gone"}}}
	ms, err := Select(t.Context(), st, "n1", "", nil, time.Now())
	if err != nil || len(ms) != 1 || ms[0].Name != name {
		t.Fatalf("Select = %d manifests, %v; want only %s", len(ms), err, name)
	}
}
