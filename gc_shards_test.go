package cassback

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// TestPurgeInShards: a purge whose memory bound is far below the store's
// chunks judges them from shards spilled to disk, and plans exactly what
// a purge holding them all in memory plans — the same packs condemned,
// repacked (with the same chunks), re-indexed and lost — on a store of
// three hosts sharing chunks, with an orphan pack holding manifest tree
// nodes. Then such a purge runs: validate --checksum is clean and the
// spill folder is gone.
func TestPurgeInShards(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	var names []string
	for i, host := range []string{"a", "b", "c"} {
		data := filepath.Join(t.TempDir(), host)
		for round := range 2 {
			// b backs up a's node too (a replaced node), so packs are shared.
			seed := uint64(40 + i + round*10)
			if host == "b" && round == 0 {
				seed = 40
			}
			os.RemoveAll(data)
			if _, err := nodegen.Generate(data, nodegen.Config{Seed: seed, TotalBytes: 3 << 20}); err != nil {
				t.Fatal(err)
			}
			s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: host, PackSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, s.Manifests...)
		}
	}
	// An orphan: c's newest index file lost (its packs, data and tree
	// nodes, are then known from their headers only).
	var keys []string
	r.Store.List(ctx, "index/c/", func(i remote.Info) error { keys = append(keys, i.Key); return nil })
	if len(keys) == 0 {
		t.Fatal("no index file of c")
	}
	if err := r.Store.Delete(ctx, keys[len(keys)-1]); err != nil {
		t.Fatal(err)
	}
	skip := map[string]bool{}
	for _, n := range names {
		if _, _, h, _ := manifest.ParseBackupName(n); h == "a" {
			skip[n] = true
		}
	}
	plan := func(memory int64, spill string) *gc.Plan {
		c := &gc.Collector{Store: r.Store, Config: r.Config, Opts: r.GC, Host: "a", Skip: skip, Memory: memory, SpillDir: spill}
		p, err := c.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	whole := plan(0, "")
	whole.Close()
	spill := t.TempDir()
	shards := plan(1, spill)
	if d, _ := os.ReadDir(spill); len(d) == 0 {
		t.Error("a plan at a 1-byte bound spilled nothing to disk")
	}
	shards.Close()
	if d, _ := os.ReadDir(spill); len(d) != 0 {
		t.Errorf("the plan left %d entries in its spill folder after Close", len(d))
	}
	if len(whole.Condemn) == 0 || len(whole.Reindex) == 0 || len(whole.Blocked) != 0 {
		t.Fatalf("the store is not the case meant: condemn %d, reindex %d, blocked %v", len(whole.Condemn), len(whole.Reindex), whole.Blocked)
	}
	if !slices.Equal(whole.Condemn, shards.Condemn) || whole.CondemnBytes != shards.CondemnBytes {
		t.Errorf("condemned %v (%d bytes) in shards, %v (%d bytes) in memory", shards.Condemn, shards.CondemnBytes, whole.Condemn, whole.CondemnBytes)
	}
	ids := func(ps []*gc.PackState) (out []string) {
		for _, p := range ps {
			s := p.ID.String()
			for _, e := range p.Entries {
				s += " " + e.ID.String()[:8]
			}
			out = append(out, s)
		}
		return out
	}
	if a, b := ids(whole.Repack), ids(shards.Repack); !slices.Equal(a, b) {
		t.Errorf("repack %v in shards, %v in memory", b, a)
	}
	if a, b := ids(whole.Reindex), ids(shards.Reindex); !slices.Equal(a, b) {
		t.Errorf("reindex %v in shards, %v in memory", b, a)
	}
	if !slices.EqualFunc(whole.Lost, shards.Lost, func(a, b chunk.ID) bool { return a == b }) {
		t.Errorf("lost %v in shards, %v in memory", shards.Lost, whole.Lost)
	}
	// What a purge killed midway leaves in the cache folder.
	left := filepath.Join(r.CacheDir, "cassback-purge-123", "shard-1")
	if err := os.MkdirAll(filepath.Dir(left), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t", Memory: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.GC.Deleted == 0 || len(res.GC.Blocked) != 0 {
		t.Errorf("the purge deleted %d packs, blocked %v", res.GC.Deleted, res.GC.Blocked)
	}
	rep, err := r.Validate(ctx, ValidateOptions{Checksum: true})
	if err != nil || !rep.OK() || len(rep.Backups) != len(names)-len(skip) {
		t.Fatalf("validate after the purge: %v, %d backups, %+v", err, len(rep.Backups), rep.Problems)
	}
	if d, _ := os.ReadDir(r.CacheDir); slices.ContainsFunc(d, func(e os.DirEntry) bool {
		return filepath.Ext(e.Name()) == "" && len(e.Name()) > 15 && e.Name()[:15] == "cassback-purge-"
	}) {
		t.Error("a spill folder is left in the cache folder after the purge")
	}
}
