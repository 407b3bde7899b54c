package cassback

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/remote"
)

// genRepo opens a repo on a counting local store with conditional writes
// (or none), with a node cache.
func genRepo(t *testing.T, cond bool) (*Repo, *reqCount) {
	t.Helper()
	ls := localStore(t)
	st := &reqCount{Store: ls, n: map[string]int{}}
	var s remote.Store = st
	if cond {
		s = withCond{Store: st, c: ls.(remote.Conditional)}
	}
	return laRepo(t, s, filepath.Join(t.TempDir(), "cache"), writerOpts), st
}

// counted runs fn and returns the requests it made, by kind and first key
// segment.
func counted(st *reqCount, fn func()) map[string]int {
	st.mu.Lock()
	st.n = map[string]int{}
	st.mu.Unlock()
	fn()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.n
}

// A warm unchanged backup reads no manifest object: its cache holds them,
// seen committed under the sweep generation its session lists again, and
// one listing of their commit's markers names them (markerNames). A
// sweep that deletes packs advances the generation, and the next backup
// reads every manifest from the store; a damaged cached copy is read from
// the store; a store without conditional writes has no generation to rely
// on, and every backup reads them.
func TestUnchangedBackupReadsNoManifestObject(t *testing.T) {
	data := smallNode(t, 31)
	r, st := genRepo(t, true)
	laBackup(t, r, data, "h1", nil)
	objs, _ := filepath.Glob(filepath.Join(r.CacheDir, "nodes", "h1", objectPrefix+"*"))
	k := len(objs)
	if k < 2 {
		t.Fatalf("cached manifest objects after a backup: %v", objs)
	}
	backup := func() map[string]int { return counted(st, func() { laBackup(t, r, data, "h1", nil) }) }
	if n := backup(); n["get manifests"] != 0 || n["list commits"] != 1 {
		t.Errorf("a warm unchanged backup: %v; want no manifest read, one listing of its previous commit's markers", n)
	}

	// A damaged copy is read from the store, and mended.
	b, err := os.ReadFile(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	os.WriteFile(objs[0], b, 0o644)
	if n := backup(); n["get manifests"] != 1 {
		t.Errorf("with one cached object damaged: %v; want 1 manifest read", n)
	}
	if n := backup(); n["get manifests"] != 0 {
		t.Errorf("the damaged copy was not mended: %v", n)
	}

	// A sweep that deletes packs: another host's backups, purged.
	other := smallNode(t, 32)
	laBackup(t, r, other, "h2", nil)
	if res := taPurge(t, r.Store, "h2"); res.GC.Deleted == 0 {
		t.Fatalf("the purge of h2 deleted no pack: %+v", res.GC)
	}
	if n := backup(); n["get manifests"] != k {
		t.Errorf("after a sweep: %v; want all %d manifests read from the store", n, k)
	}
	if n := backup(); n["get manifests"] != 0 {
		t.Errorf("after a sweep and one backup: %v; want the cache trusted again", n)
	}

	// A purge that deletes no pack leaves the generation alone.
	taPurge(t, r.Store, "h2")
	if n := backup(); n["get manifests"] != 0 {
		t.Errorf("after a purge that deleted nothing: %v; want no manifest read", n)
	}
}

func TestUnchangedBackupWithoutConditionalWritesReadsManifests(t *testing.T) {
	data := smallNode(t, 33)
	r, st := genRepo(t, false)
	s := laBackup(t, r, data, "h1", nil)
	for range 2 {
		if n := counted(st, func() { laBackup(t, r, data, "h1", nil) }); n["get manifests"] != len(s.Manifests) {
			t.Errorf("without conditional writes: %v; want all %d manifests read", n, len(s.Manifests))
		}
	}
}

// TestHole9StaleGeneration: host h1's backup M is cached with the
// generation its session listed. A purge of h1 (everything) removes M and
// sweeps its packs; then late copies of M's commit marker writes land,
// putting its marker back (M's manifest stays gone). h1 backs up the same
// files again: its cache still names M, and M's marker is listed. With the sweep advancing the generation, the backup reads M
// from the store, finds it gone and stores the files again; with the hole
// (a sweep that does not advance it) it trusts the cached M and commits a
// backup naming deleted chunks.
func TestHole9StaleGeneration(t *testing.T) {
	for _, open := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "hole"}[open], func(t *testing.T) {
			defer hole.Set(hole.StaleGeneration, open)()
			data := smallNode(t, 34)
			r, _ := genRepo(t, true)
			laBackup(t, r, data, "h1", nil)
			markers := markersOf(t, r.Store, "h1")
			if res := taPurge(t, r.Store, "h1"); res.GC.Deleted == 0 {
				t.Fatalf("the purge deleted no pack: %+v", res.GC)
			}
			if replayMarkers(t, r.Store, markers) == 0 {
				t.Fatal("the purge removed no marker")
			}
			laBackup(t, r, data, "h1", nil)
			taPurge(t, r.Store, "nobody") // removes the lone markers
			err := laCheck(t, r, "h1", data, time.Now().Add(time.Hour))
			switch {
			case !open && err != nil:
				t.Errorf("INVARIANT BROKEN: %v", err)
			case open && err == nil:
				t.Errorf("the hole is open and the backup is whole: the test cannot fail")
			case open:
				t.Logf("hole found: %s", strings.SplitN(err.Error(), "\n", 2)[0])
			}
		})
	}
}

// markersOf returns the commit markers of host in st, key to body.
func markersOf(t *testing.T, st remote.Store, host string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := st.List(t.Context(), "commits/"+host+"/", func(i remote.Info) error {
		rc, err := st.Get(t.Context(), i.Key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		m[i.Key], err = io.ReadAll(rc)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// replayMarkers puts back the markers of before that are gone, as late
// copies of their writes would land after a purge removed them (a PUT
// delayed in the network: the simulator's PDelay). A marker whose manifest
// is gone never counts (readers confirm the manifest), but it is what a
// backup's cache is checked against (markerNames), so only the sweep
// generation keeps such a backup from trusting its cached manifest.
func replayMarkers(t *testing.T, st remote.Store, before map[string][]byte) int {
	t.Helper()
	n := 0
	for k, b := range before {
		if _, err := st.Stat(t.Context(), k); err == nil {
			continue
		}
		if err := st.Put(t.Context(), k, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}
