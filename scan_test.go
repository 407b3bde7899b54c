package cassback

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/internal/hole"
)

// keepOneSSTable removes every SSTable of the node at data but the first
// (by path) of each keyspace, so that most chunks of its first backup are
// referenced by that backup alone.
func keepOneSSTable(t *testing.T, data string) {
	t.Helper()
	kept := map[string]string{} // keyspace -> the SSTable kept
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		i := strings.Index(path, "-big-")
		if i < 0 {
			return nil
		}
		rel, err := filepath.Rel(data, path)
		if err != nil {
			return err
		}
		ks, _, _ := strings.Cut(rel, string(filepath.Separator))
		if kept[ks] == "" {
			kept[ks] = path[:i]
		}
		if path[:i] != kept[ks] {
			return os.Remove(path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) == 0 {
		t.Fatal("no SSTable in the node")
	}
}

// Hole 10: a purge that did not list the packs took every indexed pack as
// stored. A repack copied the live chunks of a sparse pack into a new
// pack, which the store then lost; the sweep kept the lost copy and
// deleted the sparse pack, the last copy of the chunks. The sweep must
// confirm the packs it keeps instead of the ones it deletes, and look
// again with a full listing when one is missing.
func TestHole10UnconfirmedKeepers(t *testing.T) {
	holeTest(t, hole.UnconfirmedKeepers, func(t *testing.T) error {
		ctx := t.Context()
		st := &saDamagesRepacked{Store: localStore(t), how: saDelete} // loses the repacked pack
		o := gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 0.5}
		r := repoOn(t, st, o)
		data := smallNode(t, 61)
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h"}); err != nil {
			t.Fatal(err)
		}
		// A first purge removes nothing and lists every pack (none has),
		// so the next one judges packs from the index files.
		res, err := r.Purge(ctx, PurgeOptions{Host: "h", Before: time.Now().Add(-time.Hour), Holder: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Plan.Scanned {
			t.Fatalf("the first purge did not list the packs: %s", res.Plan.ScanWhy)
		}
		time.Sleep(10 * time.Millisecond)
		cut := time.Now()
		time.Sleep(10 * time.Millisecond)
		keepOneSSTable(t, data)
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h"}); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		st.armed = true
		st.mu.Unlock()
		res, err = r.Purge(ctx, PurgeOptions{Host: "h", Before: cut, Holder: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Plan.Scanned {
			t.Fatalf("the second purge listed the packs: %s", res.Plan.ScanWhy)
		}
		if res.GC.Repacked == 0 || st.damaged == "" {
			t.Fatalf("no repack, or no pack lost: %+v; removed %v kept %v", res.GC, res.Manifests, res.Kept)
		}
		if !hole.On(hole.UnconfirmedKeepers) && res.GC.Resurrected == 0 {
			t.Errorf("the sweep kept no condemned pack though the repacked copy was lost: %+v", res.GC)
		}
		return committedWhole(t, st)
	})
}
