package cassback

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// commitKss are the keyspaces of sixKeyspaceNode, and the three of them
// the tests that remove part of a commit remove.
var (
	commitKss = []string{"ks1", "ks2", "ks3", "ks4", "ks5", "ks6"}
	halfKss   = []string{"ks1", "ks3", "ks5"}
)

// The two commits the tests make, an hour apart; purging before the
// half hour removes the first.
var (
	commitT1 = time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	commitT2 = commitT1.Add(time.Hour)
	cutT1    = commitT1.Add(30 * time.Minute)
)

// sixKeyspaceNode generates a node of six keyspaces of one table each.
func sixKeyspaceNode(t *testing.T) string {
	t.Helper()
	var kss []nodegen.KeyspaceSpec
	for _, ks := range commitKss {
		kss = append(kss, nodegen.KeyspaceSpec{Name: ks, Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}})
	}
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 74, TotalBytes: 1 << 20, Keyspaces: kss}); err != nil {
		t.Fatal(err)
	}
	return data
}

// twoCommits backs data up as host h at commitT1 and at commitT2, and
// returns the backups of each commit.
func twoCommits(t *testing.T, r *Repo, data string) (first, second []string) {
	t.Helper()
	for i, at := range []time.Time{commitT1, commitT2} {
		s, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: "h", Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Manifests) != len(commitKss) {
			t.Fatalf("backup %d committed %v; want the %d keyspaces", i+1, s.Manifests, len(commitKss))
		}
		slices.Sort(s.Manifests)
		if i == 0 {
			first = s.Manifests
		} else {
			second = s.Manifests
		}
	}
	return first, second
}

// ofKeyspaces returns the backups of names whose keyspace is in kss.
func ofKeyspaces(names, kss []string) []string {
	var out []string
	for _, n := range names {
		if _, ks, _, _ := manifest.ParseBackupName(n); slices.Contains(kss, ks) {
			out = append(out, n)
		}
	}
	return out
}

// A purge that removes a whole commit of six keyspaces deletes its marker
// and writes none; one that removes three of them writes one marker of the
// other three. Removing a backup at a time rewrote the marker K−1 times
// (5 PUTs and 6 DELETEs of markers for the whole commit, 3 and 3 for
// half, and a LIST of the commit's folder a backup).
func TestPurgeCommitMarkerRequests(t *testing.T) {
	data := sixKeyspaceNode(t)
	for _, tc := range []struct {
		name       string
		kss        []string // purged; all when nil
		puts, dels int      // of markers
	}{
		{"whole", nil, 0, 1},
		{"half", halfKss, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			st := newKindCount(localStore(t))
			r := repoOn(t, st, writerOpts)
			first, second := twoCommits(t, r, data)
			gone := first
			if tc.kss != nil {
				gone = ofKeyspaces(first, tc.kss)
			}
			before := markers(t, st.Store)
			st.take()
			res, err := r.Purge(ctx, PurgeOptions{Host: "h", Keyspaces: tc.kss, Before: cutT1, Holder: "p"})
			if err != nil {
				t.Fatal(err)
			}
			n, total := st.take()
			t.Logf("purge of %d of a commit's %d backups: %d requests: %s", len(gone), len(first), total, format(n))
			if got := slices.Sorted(slices.Values(res.Manifests)); !slices.Equal(got, gone) {
				t.Fatalf("purge removed %v, want %v", got, gone)
			}
			if n["PUT commits"] != tc.puts || n["DELETE commits"] != tc.dels {
				t.Errorf("purge of %d of a commit's %d backups: %d marker PUTs and %d marker DELETEs, want %d and %d", len(gone), len(first), n["PUT commits"], n["DELETE commits"], tc.puts, tc.dels)
			}
			want := markersLeft(t, st.Store, before, gone)
			if got := markers(t, st.Store); !slices.Equal(got, want) {
				t.Errorf("markers after the purge:\n%v\nwant\n%v", got, want)
			}
			checkCommitted(t, st.Store, append(slices.Clone(second), ofKeyspaces(first, notIn(commitKss, tc.kss))...), gone)
		})
	}
}

// notIn returns the members of all not in kss (none when kss is nil: all
// were purged).
func notIn(all, kss []string) []string {
	if kss == nil {
		return nil
	}
	var out []string
	for _, ks := range all {
		if !slices.Contains(kss, ks) {
			out = append(out, ks)
		}
	}
	return out
}

// markersLeft returns the keys the markers before should be once the
// backups gone are removed from them: each marker without their entries,
// none where nothing is left, sorted.
func markersLeft(t *testing.T, st remote.Store, before, gone []string) []string {
	t.Helper()
	var want []string
	for _, k := range before {
		host, at, es, err := manifest.ParseCommitKey(k)
		if err != nil {
			t.Fatal(err)
		}
		es = slices.DeleteFunc(es, func(e manifest.CommitEntry) bool {
			return slices.Contains(gone, manifest.BackupName(at, e.Keyspace, host))
		})
		if len(es) == 0 {
			continue
		}
		keys, err := manifest.CommitKeys(host, at, es, remote.MaxKeyLenOf(st))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, keys...)
	}
	slices.Sort(want)
	return want
}

// checkCommitted checks that the backups kept are committed with the hash
// of their stored object and the backups gone are neither committed nor
// stored.
func checkCommitted(t *testing.T, st remote.Store, kept, gone []string) {
	t.Helper()
	ctx := t.Context()
	for _, n := range kept {
		h, ok, err := manifest.Committed(ctx, st, n)
		if err != nil || !ok || h != manifest.HashOf(storedObject(t, st, n)) {
			t.Errorf("kept backup %s: committed %v with hash %s, %v; want committed with its object's hash", n, ok, h, err)
		}
	}
	for _, n := range gone {
		if _, ok, err := manifest.Committed(ctx, st, n); ok || err != nil {
			t.Errorf("removed backup %s: committed %v, %v", n, ok, err)
		}
		if err := manifest.Exists(ctx, st, n); !errors.Is(err, manifest.ErrNoBackup) {
			t.Errorf("removed backup %s: its manifest: %v, want it gone", n, err)
		}
	}
}

// groupedRequest reports whether a request is one the removal of a
// commit's backups makes: a LIST of a commit's folder, a GET, PUT or
// DELETE of a marker, a DELETE of a manifest. (The purge's other requests
// on those keys list the whole of commits/ and manifests/, or the host's
// commits, and read manifests.)
func groupedRequest(op remotetest.Op, key string) bool {
	switch op {
	case remotetest.OpList:
		dir, ok := strings.CutPrefix(key, "commits/h/")
		return ok && dir != ""
	case remotetest.OpGet, remotetest.OpPut, remotetest.OpPutIf:
		return strings.HasPrefix(key, "commits/")
	case remotetest.OpDelete:
		return strings.HasPrefix(key, "commits/") || strings.HasPrefix(key, "manifests/")
	}
	return false
}

// A purge removing a whole commit, or half of one, stopped at each request
// of the removal in turn — the request refused, its reply lost after it
// was done, or the purge cancelled — leaves a store where every listed
// marker names manifest objects that exist, are the object it names, and
// read; where the latest backup of each keyspace restores; and which a
// purge run again finishes: the backups gone, their markers gone or
// naming the others only, validate clean.
func TestPurgeCommitCrash(t *testing.T) {
	data := sixKeyspaceNode(t)
	for _, tc := range []struct {
		name string
		kss  []string
		min  int // requests of the removal: at least this many stops
	}{
		// LIST, DELETE of the marker, 6 DELETEs of manifests.
		{"whole", nil, 8},
		// LIST, GET, PUT, DELETE of the marker, 3 DELETEs of manifests.
		{"half", halfKss, 7},
	} {
		for _, mode := range []string{"refused", "lost-reply", "cancelled"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				if testing.Short() && mode != "refused" {
					t.Skip("-short: refused requests only")
				}
				stops := 0
				for at := 0; ; at++ {
					if !purgeCrashAt(t, data, tc.kss, mode, at) {
						break
					}
					stops++
				}
				if stops < tc.min {
					t.Errorf("the removal stopped at %d requests; want at least %d", stops, tc.min)
				}
			})
		}
	}
}

// purgeCrashAt makes two commits, purges the first's backups of kss (all
// when nil), stopped at request at of their removal (0 first) as mode
// says, checks the store, and purges again. It reports whether the purge
// stopped: false once at is past the removal's last request.
func purgeCrashAt(t *testing.T, data string, kss []string, mode string, at int) bool {
	t.Helper()
	ctx := t.Context()
	st := remotetest.NewFaulty(localStore(t))
	r := repoOn(t, st, writerOpts)
	first, second := twoCommits(t, r, data)
	gone, kept := first, second
	if kss != nil {
		gone = ofKeyspaces(first, kss)
		kept = append(slices.Clone(second), ofKeyspaces(first, notIn(commitKss, kss))...)
	}
	before := markers(t, st)

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	armed, seen := false, 0
	var stopped string
	if mode == "lost-reply" {
		st.SetMode(remotetest.LostReply)
	}
	st.SetHook(func(op remotetest.Op, key string) error {
		mu.Lock()
		defer mu.Unlock()
		if !armed || !groupedRequest(op, key) {
			return nil
		}
		seen++
		if seen <= at {
			return nil
		}
		if stopped == "" {
			stopped = fmt.Sprintf("%s %s", op, key)
		}
		if mode == "cancelled" {
			cancel()
			return context.Canceled
		}
		return remotetest.ErrInjected
	})
	_, err := r.Purge(pctx, PurgeOptions{Host: "h", Keyspaces: kss, Before: cutT1, Holder: "p", Removing: func(string) {
		mu.Lock()
		armed = true
		mu.Unlock()
	}})
	st.Reset()
	if stopped == "" {
		if err != nil {
			t.Fatalf("stop at request %d: none stopped, but the purge: %v", at, err)
		}
		return false
	}
	if err == nil {
		t.Fatalf("stopped at request %d (%s): the purge did not fail", at, stopped)
	}
	t.Logf("stopped at request %d: %s", at, stopped)

	// Every listed marker names manifest objects that are there, are the
	// objects it names, and read, trees and all.
	src := ChunksOf(st)
	if err := manifest.Commits(ctx, st, func(o manifest.Object) error {
		if _, err := checkManifest(ctx, st, manifest.Commit{Name: o.Name, Hash: o.Hash}, src); err != nil {
			t.Errorf("stopped at %s: marker %s names %s: %v", stopped, o.Key, o.Name, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The latest backup of each keyspace is the second commit's, and
	// restores.
	ms, err := Select(ctx, st, "h", "", nil, time.Now())
	if err != nil {
		t.Fatalf("stopped at %s: select the latest: %v", stopped, err)
	}
	var latest []string
	for _, m := range ms {
		latest = append(latest, m.Name)
	}
	slices.Sort(latest)
	if !slices.Equal(latest, second) {
		t.Fatalf("stopped at %s: the latest backups are %v, want %v", stopped, latest, second)
	}
	dst := filepath.Join(t.TempDir(), "r")
	if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatalf("stopped at %s: restore the latest: %v", stopped, err)
	}
	sameFiles(t, data, dst, manifestPaths(t, st, second))

	// A purge run again finishes the job.
	res, err := r.Purge(ctx, PurgeOptions{Host: "h", Keyspaces: kss, Before: cutT1, Holder: "p"})
	if err != nil {
		t.Fatalf("stopped at %s: the next purge: %v", stopped, err)
	}
	if got := markers(t, st); !slices.Equal(got, markersLeft(t, st, before, gone)) {
		t.Errorf("stopped at %s: markers after the next purge (which removed %v, withdrew %v):\n%v\nwant\n%v", stopped, res.Manifests, res.GC.Withdrawn, got, markersLeft(t, st, before, gone))
	}
	checkCommitted(t, st, kept, gone)
	rep, err := r.Validate(ctx, ValidateOptions{Host: "h"})
	if err != nil || !rep.OK() || len(rep.Lone) != 0 || len(rep.Backups) != len(kept) {
		t.Errorf("stopped at %s: validate after the next purge: %v, ok %v, %d backups, lone %v, problems %v; want the %d kept", stopped, err, rep.OK(), len(rep.Backups), rep.Lone, rep.Problems, len(kept))
	}
	return true
}
