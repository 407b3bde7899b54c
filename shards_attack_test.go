package cassback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
)

// Attacks on the purge that judges packs from a ledger and shards (index/gc
// ledger.go, spill.go): each tries to make a purge delete a pack that a
// committed manifest still needs, or leave behind what it spilled.

// spillLeft returns the purge spill folders left under dir.
func spillLeft(t *testing.T, dir string) []string {
	t.Helper()
	d, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var left []string
	for _, e := range d {
		if strings.HasPrefix(e.Name(), "cassback-purge-") {
			left = append(left, e.Name())
		}
	}
	return left
}

// TestShardsAttackDryRunLeavesNoSpill: a dry run (purge --dry-run) at a
// memory bound that spills returns its plan and must leave nothing in the
// cache folder, as a purge that executes does. Plan.Close is the only thing
// that removes the plan's spilled references, and Purge returns the plan
// to its caller without closing it (nor does cmd_purge).
func TestShardsAttackDryRunLeavesNoSpill(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{smallNode(t, 81)}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	for _, memory := range []int64{1, 4 << 10} {
		res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t", DryRun: true, Memory: memory})
		if err != nil {
			t.Fatal(err)
		}
		if res.Plan == nil || len(res.Manifests) == 0 {
			t.Fatalf("dry run: plan %v, %d manifests; want a plan removing some", res.Plan, len(res.Manifests))
		}
		if left := spillLeft(t, r.CacheDir); len(left) > 0 {
			t.Errorf("memory %d: a dry run left %v in the cache folder %s", memory, left, r.CacheDir)
		}
		res.Plan.Close()
	}
	if left := spillLeft(t, r.CacheDir); len(left) > 0 {
		t.Errorf("after Plan.Close: %v left", left)
	}
}

// crashStore builds a small store: host a with two backups, host b with a
// backup sharing a's first node and another of its own, and one index file
// of b lost (its packs are orphans).
func crashStore(t *testing.T, dir string) (aOnly string) {
	t.Helper()
	ctx := t.Context()
	r := gcRepo(t, dir, true)
	n1, n2, n3 := smallNode(t, 91), smallNode(t, 92), smallNode(t, 93)
	for _, b := range []struct {
		host, data string
	}{{"a", n1}, {"a", n2}, {"b", n1}, {"b", n3}} {
		if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{b.data}, Host: b.host, PackSize: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	r.Store.List(ctx, "index/b/", func(i remote.Info) error { keys = append(keys, i.Key); return nil })
	if len(keys) == 0 {
		t.Fatal("no index file of b")
	}
	if err := r.Store.Delete(ctx, keys[len(keys)-1]); err != nil {
		t.Fatal(err)
	}
	return n2
}

// commitsOf returns the committed backups of host in st.
func commitsOf(t *testing.T, st remote.Store, host string) []string {
	t.Helper()
	var names []string
	if err := manifest.Commits(t.Context(), st, func(o manifest.Object) error {
		if _, _, h, err := manifest.ParseBackupName(o.Name); err == nil && h == host {
			names = append(names, o.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// crashAfter makes every store operation after the first n fail, as if
// the process died there (the lease object excepted, so that the next
// purge need not wait out the lease), and cancels the purge's context.
func crashAfter(f *remotetest.Faulty, n int64, cancel func()) *atomic.Int64 {
	var ops atomic.Int64
	f.SetHook(func(op remotetest.Op, key string) error {
		if key == "gc/lease" {
			return nil
		}
		if ops.Add(1) > n {
			cancel()
			return context.Canceled
		}
		return nil
	})
	return &ops
}

// TestShardsAttackCrashEverywhere: a purge at a 1-byte memory bound (256
// shards on disk) dies after n store operations, for n across the whole
// purge. After each death no spill folder is left; a second purge (in
// memory, then in shards) finishes the work, b's backups are all whole and
// validate --checksum is clean.
func TestShardsAttackCrashEverywhere(t *testing.T) {
	ctx := t.Context()
	pristine := filepath.Join(t.TempDir(), "pristine")
	crashStore(t, pristine)
	bBackups := len(commitsOf(t, func() remote.Store { st, _ := local.Open(pristine); return st }(), "b"))

	// How many operations a whole purge makes.
	total := func() int64 {
		dir := filepath.Join(t.TempDir(), "count")
		if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
			t.Fatal(err)
		}
		inner, _ := local.Open(dir)
		f := remotetest.NewFaulty(inner)
		r := repoOn(t, f, noWait)
		r.CacheDir = t.TempDir()
		ops := crashAfter(f, 1<<62, func() {})
		res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t", Memory: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.GC.Deleted == 0 || res.GC.IndexRewritten == 0 || len(res.GC.Blocked) > 0 {
			t.Fatalf("not the purge meant: %+v", res.GC)
		}
		return ops.Load()
	}()
	step, phase := sweepStep(t, total, 80)
	t.Logf("a whole purge makes %d store operations; crashing every %d from %d", total, step, phase)
	for n := phase; n < total; n += step {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("s", n))
		if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
			t.Fatal(err)
		}
		inner, err := local.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		f := remotetest.NewFaulty(inner)
		r := repoOn(t, f, noWait)
		r.CacheDir = t.TempDir()
		cctx, cancel := context.WithCancel(ctx)
		crashAfter(f, n, cancel)
		_, perr := r.Purge(cctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t", Memory: 1})
		cancel()
		if left := spillLeft(t, r.CacheDir); len(left) > 0 {
			t.Errorf("crash after %d ops (purge: %v): spill folders left: %v", n, perr, left)
		}
		if err := committedWhole(t, inner); err != nil {
			t.Fatalf("crash after %d ops (purge: %v): %v", n, perr, err)
		}
		for i, memory := range []int64{0, 1} {
			r2 := repoOn(t, inner, noWait)
			r2.CacheDir = t.TempDir()
			res, err := r2.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: fmt.Sprint("t", i), Memory: memory})
			if err != nil {
				t.Fatalf("crash after %d ops, then purge %d: %v", n, i, err)
			}
			if len(res.GC.Blocked) > 0 {
				t.Fatalf("crash after %d ops, then purge %d blocked: %v", n, i, res.GC.Blocked)
			}
			if left := spillLeft(t, r2.CacheDir); len(left) > 0 {
				t.Errorf("crash after %d ops, then purge %d left %v", n, i, left)
			}
		}
		if err := committedWhole(t, inner); err != nil {
			t.Fatalf("crash after %d ops, after the next purges: %v", n, err)
		}
		rv := repoOn(t, inner, noWait)
		rep, err := rv.Validate(ctx, ValidateOptions{Checksum: true})
		if err != nil || !rep.OK() {
			t.Fatalf("crash after %d ops: validate: %v %+v %v", n, err, rep.Problems, rep.BadIndex)
		}
		if got := len(commitsOf(t, inner, "b")); got != bBackups || len(commitsOf(t, inner, "a")) != 0 {
			t.Fatalf("crash after %d ops: b has %d backups (want %d), a has %d (want 0)", n, got, bBackups, len(commitsOf(t, inner, "a")))
		}
	}
}

// putIndex writes an index file of host naming packs.
func putIndex(t *testing.T, st remote.Store, host string, packs ...index.PackRecord) string {
	t.Helper()
	b, sum := index.EncodeFile(packs)
	key := index.Key(host, sum)
	if err := st.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return key
}

// shardsPackOf writes one pack of the given chunks (whatever the index knows)
// through a writer of host, and returns its record.
func shardsPackOf(t *testing.T, r *Repo, host string, chunks ...[]byte) index.PackRecord {
	t.Helper()
	ctx := t.Context()
	shardsWritePack(t, r, host, chunks)
	var found []index.PackRecord
	r.Store.List(ctx, "index/"+host+"/", func(i remote.Info) error {
		recs, err := index.ReadFile(ctx, r.Store, i.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range recs {
			if slices.ContainsFunc(p.Entries, func(e pack.Entry) bool { return e.ID == chunk.Sum(chunks[0]) }) {
				found = append(found, p)
			}
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("pack of %d chunks: found %d records", len(chunks), len(found))
	}
	return found[0]
}

// shardsWritePack writes one pack of chunks, and its index file, through a
// writer of host with an empty index (so every chunk is stored again).
func shardsWritePack(t *testing.T, r *Repo, host string, chunks [][]byte) {
	t.Helper()
	ctx := t.Context()
	w, err := index.NewWriter(ctx, r.Store, index.New(), r.Config, index.WriterOptions{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	pk := w.NewPacker()
	for _, c := range chunks {
		if _, err := pk.Add(ctx, chunk.Sum(c), c); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

func packStored(t *testing.T, st remote.Store, id chunk.ID) bool {
	t.Helper()
	_, err := st.Stat(t.Context(), pack.Key(id))
	return err == nil
}

// TestShardsAttackPackNamedTwice: pack P holds x (referenced) and y (not).
// Index files that sort before P's own name P again with other entries and
// another size, and name it twice in one file; the ledger must still count
// P as x's copy and keep P. Run at each memory bound.
func TestShardsAttackPackNamedTwice(t *testing.T) {
	for _, c := range []struct {
		memory int64
		repack float64
	}{{0, 1}, {1, 1}, {0, 0.5}, {1, 0.5}} {
		t.Run(fmt.Sprintf("memory%d-repack%v", c.memory, c.repack), func(t *testing.T) {
			ctx := t.Context()
			memory := c.memory
			r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
			r.GC.RepackThreshold = c.repack
			x, y := bytes.Repeat([]byte("x-referenced "), 200), bytes.Repeat([]byte("y-dead "), 300)
			p := shardsPackOf(t, r, "w", y, x)
			var onlyY, xOf []pack.Entry
			for _, e := range p.Entries {
				if e.ID == chunk.Sum(y) {
					onlyY = append(onlyY, e)
				} else {
					xOf = append(xOf, e)
				}
			}
			// "a" and "b" sort before "w": their records of P come first.
			putIndex(t, r.Store, "a", index.PackRecord{ID: p.ID, Size: p.Size + 4096, Entries: onlyY})
			putIndex(t, r.Store, "b", index.PackRecord{ID: p.ID, Size: p.Size, Entries: onlyY}, index.PackRecord{ID: p.ID, Size: p.Size, Entries: onlyY})
			// A second pack Q holds y alone (dead).
			q := shardsPackOf(t, r, "q", y)
			writeManifest(t, r.Store, nil, "m", time.Now().Add(-time.Minute), x, []chunk.Ref{refOf(x)})
			res, err := r.Purge(ctx, PurgeOptions{Host: "nobody", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t", Memory: memory})
			if err != nil {
				t.Fatal(err)
			}
			// Without repacking P is x's only copy; with it (the record of
			// a sizes P 4 KiB larger, so it looks sparse) x may move.
			if c.repack == 1 && !packStored(t, r.Store, p.ID) {
				t.Errorf("pack %s, the only copy of referenced chunk x, was deleted (report %+v)", p.ID, res.GC)
			}
			if c.repack == 1 && packStored(t, r.Store, q.ID) {
				t.Errorf("pack %s (y alone, unreferenced) was not deleted: the test is not what it means", q.ID)
			}
			if err := committedWhole(t, r.Store); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestShardsAttackOrphanInDamagedIndex: an orphan pack (its writer's index
// file lost) that a damaged index file also names, holding the only copy
// of a referenced chunk: the purge is blocked and deletes nothing.
func TestShardsAttackOrphanInDamagedIndex(t *testing.T) {
	for _, memory := range []int64{0, 1} {
		t.Run(fmt.Sprint("memory", memory), func(t *testing.T) {
			ctx := t.Context()
			r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
			x := bytes.Repeat([]byte("orphan x "), 300)
			dead := bytes.Repeat([]byte("dead "), 300)
			p := shardsPackOf(t, r, "w", x)
			shardsPackOf(t, r, "d", dead)
			var wKeys []string
			r.Store.List(ctx, "index/w/", func(i remote.Info) error { wKeys = append(wKeys, i.Key); return nil })
			for _, k := range wKeys {
				r.Store.Delete(ctx, k)
			}
			bad := putIndex(t, r.Store, "z", p)
			flip(t, r.Store, bad, 40)
			writeManifest(t, r.Store, nil, "m", time.Now().Add(-time.Minute), x, []chunk.Ref{refOf(x)})
			packs := countKeys(t, r.Store, "packs/")
			res, err := r.Purge(ctx, PurgeOptions{Host: "nobody", Before: time.Now().Add(time.Hour), Holder: "t", Memory: memory})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.GC.Blocked) == 0 || countKeys(t, r.Store, "packs/") != packs {
				t.Errorf("blocked %v, packs %d -> %d; want blocked, none deleted", res.GC.Blocked, packs, countKeys(t, r.Store, "packs/"))
			}
			if !packStored(t, r.Store, p.ID) {
				t.Error("the orphan holding x was deleted")
			}
		})
	}
}

// TestShardsAttackShardBoundaries: 1200 random chunks (their IDs fall in
// every one of 256 shards) in 70 packs, most chunks in two or three packs,
// a tenth of the packs orphans; four manifests reference random chunks,
// and the plan skips one. Planned at memory bounds from the whole store
// down to 1 byte (1 to 256 shards), every plan equals the one made in
// memory, and none condemns every copy of a chunk another manifest
// references. Then a purge in 256 shards runs and every committed backup
// is whole.
func TestShardsAttackShardBoundaries(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	rng := rand.New(rand.NewPCG(7, 11))
	pool := make([][]byte, 1200)
	for i := range pool {
		b := make([]byte, 64+rng.IntN(400))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		pool[i] = b
	}
	stored := map[chunk.ID]bool{}
	for p := range 70 {
		host := "w"
		if p%10 == 3 {
			host = "o" // orphans: their index files are deleted below
		}
		var chunks [][]byte
		for _, i := range rng.Perm(len(pool))[:45] {
			chunks = append(chunks, pool[i])
			stored[chunk.Sum(pool[i])] = true
		}
		shardsWritePack(t, r, host, chunks)
	}
	var orphanIndex []string
	r.Store.List(ctx, "index/o/", func(i remote.Info) error { orphanIndex = append(orphanIndex, i.Key); return nil })
	for _, k := range orphanIndex {
		r.Store.Delete(ctx, k)
	}
	var names []string
	for m := range 4 {
		var data []byte
		var refs []chunk.Ref
		for _, i := range rng.Perm(len(pool))[:300] {
			if stored[chunk.Sum(pool[i])] {
				data = append(data, pool[i]...)
				refs = append(refs, refOf(pool[i]))
			}
		}
		names = append(names, writeManifest(t, r.Store, nil, fmt.Sprint("m", m), time.Now().Add(-time.Duration(10-m)*time.Minute), data, refs))
	}
	// The copies of every chunk the kept manifests reference.
	idx := index.New()
	if _, err := idx.Load(ctx, r.Store, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := idx.RebuildOrphans(ctx, r.Store); err != nil {
		t.Fatal(err)
	}
	needed := map[chunk.ID][]chunk.ID{}
	for _, n := range names[1:] {
		m, err := manifest.Get(ctx, r.Store, n, ChunksOf(r.Store))
		if err != nil {
			t.Fatal(err)
		}
		for ref := range m.Refs() {
			for _, l := range idx.Copies(ref.ID) {
				needed[ref.ID] = append(needed[ref.ID], l.Pack)
			}
		}
	}
	var indexBytes int64
	r.Store.List(ctx, "index/", func(i remote.Info) error { indexBytes += i.Size; return nil })
	skip := map[string]bool{names[0]: true}
	plan := func(memory int64) *gc.Plan {
		c := &gc.Collector{Store: r.Store, Config: r.Config, Opts: r.GC, Host: "m0", Skip: skip, Memory: memory, SpillDir: t.TempDir()}
		p, err := c.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		return p
	}
	show := func(ps []*gc.PackState) (out []string) {
		for _, p := range ps {
			s := p.ID.String()
			for _, e := range p.Entries {
				s += fmt.Sprintf(" %.8s@%d+%d", e.ID, e.Off, e.Len)
			}
			out = append(out, s)
		}
		return out
	}
	whole := plan(0)
	if len(whole.Blocked) > 0 || len(whole.Condemn) == 0 || len(whole.Reindex) == 0 {
		t.Fatalf("not the store meant: blocked %v, condemn %d, reindex %d", whole.Blocked, len(whole.Condemn), len(whole.Reindex))
	}
	t.Logf("index bytes %d; in memory: condemn %d, repack %d, reindex %d", indexBytes, len(whole.Condemn), len(whole.Repack), len(whole.Reindex))
	for memory := 4 * indexBytes * 8; memory >= 1; memory /= 2 {
		p := plan(memory)
		if !slices.Equal(p.Condemn, whole.Condemn) || p.CondemnBytes != whole.CondemnBytes {
			t.Errorf("memory %d: condemn %d packs (%d bytes), in memory %d (%d)", memory, len(p.Condemn), p.CondemnBytes, len(whole.Condemn), whole.CondemnBytes)
		}
		if a, b := show(p.Repack), show(whole.Repack); !slices.Equal(a, b) {
			t.Errorf("memory %d: repack %v, in memory %v", memory, a, b)
		}
		if a, b := show(p.Reindex), show(whole.Reindex); !slices.Equal(a, b) {
			t.Errorf("memory %d: reindex %v, in memory %v", memory, a, b)
		}
		if len(p.Lost) > 0 || len(p.Blocked) > 0 {
			t.Errorf("memory %d: lost %d, blocked %v", memory, len(p.Lost), p.Blocked)
		}
		condemned := map[chunk.ID]bool{}
		for _, id := range p.Condemn {
			condemned[id] = true
		}
		for id, packs := range needed {
			if !slices.ContainsFunc(packs, func(p chunk.ID) bool { return !condemned[p] }) {
				t.Errorf("memory %d: every copy of referenced chunk %s condemned (%d copies)", memory, id, len(packs))
			}
		}
	}
	res, err := r.Purge(ctx, PurgeOptions{Host: "m0", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t", Memory: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.GC.Deleted == 0 || len(res.GC.Blocked) > 0 {
		t.Errorf("purge deleted %d packs, blocked %v", res.GC.Deleted, res.GC.Blocked)
	}
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Validate(ctx, ValidateOptions{Checksum: true})
	if err != nil || !rep.OK() || len(rep.Backups) != 3 {
		t.Fatalf("validate: %v, %d backups, %+v %v", err, len(rep.Backups), rep.Problems, rep.BadIndex)
	}
}

// TestShardsAttackBackupDuringLook: while a purge of every backup of host a
// runs (in 256 shards on disk, no grace, no new-pack margin), host c backs
// up the very node a alone had backed up, so its backup deduplicates
// against packs the purge is judging dead: the backup runs to its commit
// right before the purge's k-th store operation, for k across the whole
// purge (between the manifest listing and the ledger's index listing,
// between that and the pack listing, amid the orphan header reads, amid
// the mark, between the condemned set and the sweep's look, and so on).
// Every committed backup must be whole after the purge and after another.
func TestShardsAttackBackupDuringLook(t *testing.T) {
	ctx := t.Context()
	pristine := filepath.Join(t.TempDir(), "pristine")
	node := crashStore(t, pristine)
	run := func(k int64) (ops int64) {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("s", k))
		if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
			t.Fatal(err)
		}
		inner, err := local.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		f := remotetest.NewFaulty(inner)
		r := repoOn(t, f, noWait)
		r.CacheDir = t.TempDir()
		w := repoOn(t, inner, writerOpts)
		var n atomic.Int64
		var backup error
		var backedUp bool
		f.SetHook(func(op remotetest.Op, key string) error {
			if key == "gc/lease" {
				return nil
			}
			if n.Add(1) == k {
				_, backup = w.Backup(ctx, BackupOptions{DataDirs: []string{node}, Host: "c", PackSize: 1 << 20})
				backedUp = true
			}
			return nil
		})
		res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t", Memory: 1})
		if err != nil {
			t.Fatalf("backup before op %d: purge: %v", k, err)
		}
		if k == 0 && (res.GC.Deleted == 0 || len(res.GC.Blocked) > 0) {
			t.Fatalf("not the purge meant: %+v", res.GC)
		}
		if backup != nil {
			t.Fatalf("backup before op %d: %v", k, backup)
		}
		if k > 0 && !backedUp {
			return n.Load()
		}
		if err := committedWhole(t, inner); err != nil {
			t.Fatalf("backup before op %d (purge %+v): %v", k, res.GC, err)
		}
		if k > 0 && len(commitsOf(t, inner, "c")) == 0 {
			t.Fatalf("backup before op %d: c has no committed backup", k)
		}
		r2 := repoOn(t, inner, noWait)
		if _, err := r2.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t2", Memory: 1}); err != nil {
			t.Fatal(err)
		}
		if err := committedWhole(t, inner); err != nil {
			t.Fatalf("backup before op %d, after a second purge: %v", k, err)
		}
		return n.Load()
	}
	total := run(0)
	step, phase := sweepStep(t, total, 40)
	t.Logf("a whole purge makes %d store operations; a backup before every %d from %d", total, step, 1+phase)
	for k := 1 + phase; k <= total; k += step {
		run(k)
	}
}

// TestShardsAttackTreeNodeBadCopy: a backup's tree nodes have two stored
// copies, and the bytes of one are damaged (validate names it). The mark
// reads trees through the ledger, which must fall back to the good copy
// as every reader does (index.Source: "read from another copy when one
// fails") rather than find the backup unreadable and block the purge —
// the more so as which copy it tries first must not depend on chance.
func TestShardsAttackTreeNodeBadCopy(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	x := bytes.Repeat([]byte("tree test x "), 100)
	storeChunk(t, r, index.New(), "x", x)
	name := writeManifest(t, r.Store, nil, "m", time.Now().Add(-time.Minute), x, []chunk.Ref{refOf(x)})
	m, err := manifest.Get(ctx, r.Store, name, ChunksOf(r.Store))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Nodes) == 0 {
		t.Fatal("the manifest has no tree nodes")
	}
	idx := index.New()
	if _, err := idx.Load(ctx, r.Store, ""); err != nil {
		t.Fatal(err)
	}
	var ids []chunk.ID
	for _, n := range m.Nodes {
		ids = append(ids, n.ID)
	}
	nodes := map[chunk.ID][]byte{}
	if err := (index.Source{Store: r.Store, Index: idx}).FetchChunks(ctx, ids, func(id chunk.ID, b []byte) error {
		nodes[id] = bytes.Clone(b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The second copy, then damage to the first.
	var data [][]byte
	for _, id := range ids {
		data = append(data, nodes[id])
	}
	second := shardsPackOf(t, r, "n2", data...)
	for _, id := range ids {
		for _, l := range idx.Copies(id) {
			if l.Pack != second.ID {
				flip(t, r.Store, pack.Key(l.Pack), int(l.Off)+int(l.Len)/2)
			}
		}
	}
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatalf("a reader does not fall back to the good copy either: %v", err)
	}
	blocked := 0
	for i := range 12 {
		c := &gc.Collector{Store: r.Store, Config: r.Config, Opts: r.GC, Host: "m", Memory: int64(i % 2)}
		p, err := c.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		if len(p.Blocked) > 0 {
			blocked++
			if blocked == 1 {
				t.Logf("plan %d blocked: %v", i, p.Blocked)
			}
		}
	}
	if blocked > 0 {
		t.Errorf("%d of 12 plans blocked by a backup whose tree has a good copy of every node", blocked)
	}
}

// TestShardsAttackTreeNodeSizeDispute: a second index file (sorting first)
// records the pack of a backup's tree nodes with a size too small (the end
// of its last chunk). Readers let the store decide such a dispute
// (index.Load); the ledger takes the first file's size, and the mark,
// reading trees through it, must still read the backup rather than block
// the purge; a purge that repacks (the pack then looks full) keeps every
// backup whole.
func TestShardsAttackTreeNodeSizeDispute(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	x := bytes.Repeat([]byte("size dispute x "), 100)
	storeChunk(t, r, index.New(), "x", x)
	name := writeManifest(t, r.Store, nil, "m", time.Now().Add(-time.Minute), x, []chunk.Ref{refOf(x)})
	var treeRecs []index.PackRecord
	r.Store.List(ctx, "index/m/", func(i remote.Info) error {
		recs, err := index.ReadFile(ctx, r.Store, i.Key)
		if err != nil {
			t.Fatal(err)
		}
		treeRecs = append(treeRecs, recs...)
		return nil
	})
	if len(treeRecs) == 0 {
		t.Fatal("no index file of the tree's pack")
	}
	// As small as the file may say (an entry beyond its pack is damage):
	// the end of its last chunk, short of the pack's header.
	for i := range treeRecs {
		treeRecs[i].Size = 0
		for _, e := range treeRecs[i].Entries {
			treeRecs[i].Size = max(treeRecs[i].Size, int64(e.Off)+int64(e.Len))
		}
	}
	putIndex(t, r.Store, "a", treeRecs...)
	if _, err := manifest.Get(ctx, r.Store, name, ChunksOf(r.Store)); err != nil {
		t.Fatalf("a reader does not read the backup either: %v", err)
	}
	for _, memory := range []int64{0, 1} {
		c := &gc.Collector{Store: r.Store, Config: r.Config, Opts: r.GC, Host: "m", Memory: memory}
		p, err := c.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		if len(p.Blocked) > 0 {
			t.Errorf("memory %d: plan blocked: %v", memory, p.Blocked)
		}
	}
	res, err := r.Purge(ctx, PurgeOptions{Host: "nobody", Before: time.Now().Add(time.Hour), Holder: "t", Memory: 1})
	if err != nil || len(res.GC.Blocked) > 0 {
		t.Fatalf("purge: %v, blocked %v", err, res.GC.Blocked)
	}
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatal(err)
	}
}

// TestShardsAttackOrphansOnlyBound: every index file of a store is lost
// (its packs are all orphans, read from their headers). The chunk copies
// the ledger holds are then as many as ever, and a purge at a 1-byte
// memory bound must still spill them to disk rather than hold them all in
// memory: the shards are sized from the index files' bytes alone.
func TestShardsAttackOrphansOnlyBound(t *testing.T) {
	ctx := t.Context()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{smallNode(t, 83)}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	plan := func(what string) {
		spill := t.TempDir()
		c := &gc.Collector{Store: r.Store, Config: r.Config, Opts: r.GC, Host: "a", Memory: 1, SpillDir: spill}
		p, err := c.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if d, _ := os.ReadDir(spill); len(d) == 0 {
			t.Errorf("%s: a plan at a 1-byte bound spilled nothing to disk (%d packs re-indexed from headers)", what, len(p.Reindex))
		}
	}
	plan("with index files")
	var keys []string
	r.Store.List(ctx, "index/", func(i remote.Info) error { keys = append(keys, i.Key); return nil })
	for _, k := range keys {
		r.Store.Delete(ctx, k)
	}
	plan("every index file lost")
}

// sweepStep returns the step and the first point of a sweep over total
// operations that visits about points of them: an eighth as many with
// -short and half as many under the race detector (whose run looks for
// races more than for another crash point; test.sh runs it), from a
// phase chosen at random, so that runs with fewer points cover the others
// over time. CASSBACK_SWEEP_PHASE repeats a phase a run logged;
// CASSBACK_LONG=1 visits every point.
func sweepStep(t *testing.T, total int64, points int64) (step, phase int64) {
	switch {
	case os.Getenv("CASSBACK_LONG") == "1":
		return 1, 0
	case testing.Short():
		points /= 8
	case raceOn:
		points /= 2
	}
	step = max(total/points, 1)
	phase = rand.Int64N(step)
	if v := os.Getenv("CASSBACK_SWEEP_PHASE"); v != "" {
		p, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("CASSBACK_SWEEP_PHASE=%q: %v", v, err)
		}
		phase = p % step
	}
	return step, phase
}
