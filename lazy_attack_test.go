package cassback

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/watch"
)

// Attacks on lazy loading of other hosts' index files (index/lazy.go,
// write.go beginBackup).

// lazyRepo opens a repo on st whose log is captured.
func lazyRepo(t *testing.T, st remote.Store) (*Repo, *logBuffer) {
	t.Helper()
	r := repoOn(t, st, writerOpts)
	logs := &logBuffer{}
	r.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return r, logs
}

// A cloned node (host b backs up the same files as host a) deduplicates
// its manifest tree's nodes against a's tree packs, through a lookup that
// reads a's index file. Its next backup must read its previous manifest
// (trees in a's packs) and reuse every file: the previous manifest is read
// through index.Source, i.e. Fetch → Copies, which must fault lazily
// loaded files in (it did not at first).
func TestLazyAttackPreviousTreeInOtherHostsPack(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	d := smallNode(t, 91)
	ra, _ := lazyRepo(t, st)
	if _, err := ra.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	rb, _ := lazyRepo(t, st)
	s1, err := rb.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("b's first backup: files %d, read %d, new chunk bytes %d, meta bytes %d", s1.Files, s1.BytesRead, s1.BytesNew, s1.MetaBytes)
	rb2, logs2 := lazyRepo(t, st)
	s2, err := rb2.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if w := logs2.warns("previous manifest unreadable"); len(w) > 0 || s2.FilesReused != s2.Files || s2.BytesRead != 0 {
		t.Errorf("b's second backup of unchanged files: reused %d of %d files, read %d bytes; warnings %q; want every file reused", s2.FilesReused, s2.Files, s2.BytesRead, w)
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
}

// Host a's index file of its manifest trees is damaged; repair-index
// re-indexes the tree pack under index/repair/ and removes the damaged
// file (what docs/design.md tells the operator to run). Host a's next
// backup must read its previous manifest and reuse its unchanged files:
// before lazy loading every index file was read whole, so it did. With
// it, index/repair/ is "another host", loaded by filter only, and the
// previous manifest is read through index.Source (Fetch → Copies), which
// at first never faulted a file in.
func TestLazyAttackPreviousTreeAfterRepairIndex(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	d := smallNode(t, 92)
	ra, _ := lazyRepo(t, st)
	if _, err := ra.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	flip(t, st, treeIndexFile(t, st, "a"), 40)
	rep, err := ra.RepairIndex(ctx, "repair", false)
	if err != nil || rep.IndexFile == "" || len(rep.Removed) != 1 {
		t.Fatalf("repair-index: %+v, %v", rep, err)
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
	rb, logs := lazyRepo(t, st)
	s2, err := rb.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if w := logs.warns("previous manifest unreadable"); len(w) > 0 || s2.FilesReused != s2.Files || s2.BytesRead != 0 {
		t.Errorf("a's backup of unchanged files after repair-index: reused %d of %d files, read %d bytes; warnings %q; want every file reused", s2.FilesReused, s2.Files, s2.BytesRead, w)
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
}

// The same without repair-index: host a's own index file of its trees is
// damaged. Before lazy loading, Load indexed the orphaned tree pack from
// its header (RebuildOrphans) and the previous manifest was read; lazy
// mode at first skipped RebuildOrphans (index.go Load), so every file was
// read again.
func TestLazyAttackPreviousTreeIndexFileDamaged(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	d := smallNode(t, 93)
	ra, _ := lazyRepo(t, st)
	if _, err := ra.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	flip(t, st, treeIndexFile(t, st, "a"), 40)
	rb, logs := lazyRepo(t, st)
	s2, err := rb.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if w := logs.warns("previous manifest unreadable"); len(w) > 0 || s2.FilesReused != s2.Files || s2.BytesRead != 0 {
		t.Errorf("a's backup of unchanged files, its tree index file damaged: reused %d of %d files, read %d bytes; %d warnings %.300q; want every file reused", s2.FilesReused, s2.Files, s2.BytesRead, len(w), w)
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
}

// Continuous backup with --ignore-existing records the files present at
// start without storing them "unless a previous manifest of this host
// already has them stored". After repair-index moved host a's tree pack
// into index/repair/, the previous manifest cannot be read (lazy), so
// files that a's last backup stored are recorded Unstored in the new
// latest backup: restoring it skips them, and once retention purges the
// older backup their data is in no backup.
func TestLazyAttackIgnoreExistingDropsStoredFiles(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 34, TotalBytes: 2 << 20,
		Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	st := localStore(t)
	r, _ := lazyRepo(t, st)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	flip(t, st, treeIndexFile(t, st, "a"), 40)
	if rep, err := r.RepairIndex(ctx, "repair", false); err != nil || rep.IndexFile == "" {
		t.Fatalf("repair-index: %+v, %v", rep, err)
	}

	rc, logs := lazyRepo(t, st)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := rc.Continuous(ctx, stop, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "a"},
			IgnoreExisting: true, ManifestInterval: 50 * time.Millisecond, ReportInterval: -1, Watch: watch.Options{Debounce: 20 * time.Millisecond}})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := node.Flush("ks", "t", 64<<10); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms, err := Select(ctx, st, "a", "", []string{"ks"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var unstored []string
	for _, tb := range readWhole(t, st, ms)[0].Tables {
		for _, f := range tb.Files {
			if f.Unstored {
				unstored = append(unstored, f.Path)
			}
		}
	}
	if len(unstored) > 0 {
		t.Errorf("latest backup %s records %d files Unstored that a's previous backup stored, e.g. %s (warnings: %d)", ms[0].Name, len(unstored), unstored[0], len(logs.warns("previous manifest unreadable")))
	}
}

// The same through routine purges, no damage: a purge run as host b (its
// repack writes index files under index/b/, Collector.Host) repacks host
// a's sparse tree pack and sweeps the old one. a's next backup must read
// its previous manifest although its trees are now named only by b's
// index file, which a backup loads by filter (Source at first never
// faulted it in).
func TestLazyAttackPreviousTreeRepackedByOtherHostsPurge(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 35, TotalBytes: 3 << 20})
	if err != nil {
		t.Fatal(err)
	}
	st := localStore(t)
	r, _ := lazyRepo(t, st)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Flush("ks_app", "events", 64<<10); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	r.GC = purgeOpts
	if res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), Holder: "pa"}); err != nil || len(res.Manifests) == 0 {
		t.Fatalf("purge of a's older backups: %v, removed %v", err, res.Manifests)
	}
	r.GC.RepackThreshold = 0.01
	res, err := r.Purge(ctx, PurgeOptions{Host: "b", Before: time.Now().Add(time.Hour), Holder: "pb"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("purge as b: repacked %d packs, deleted %d", len(res.Plan.Repack), res.GC.Deleted)
	if countKeys(t, st, "index/b/") == 0 {
		t.Skip("nothing repacked under index/b/")
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
	r2, logs := lazyRepo(t, st)
	s, err := r2.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if w := logs.warns("previous manifest unreadable"); len(w) > 0 || s.FilesReused != s.Files || s.BytesRead != 0 {
		t.Errorf("a's backup of unchanged files after b's purge repacked a's trees: reused %d of %d files, read %d bytes; %d warnings %.300q; want every file reused", s.FilesReused, s.Files, s.BytesRead, len(w), w)
	}
}

// stallStore blocks, once armed, every whole read of an index file under
// prefix whose first bytes (its filter) were read before, until the
// read's context ends: a stalled request of a lookup that faults the file
// in. (Without lazy loading no such read happens after Load.)
type stallStore struct {
	remote.Store
	prefix  string
	armed   atomic.Bool
	stalled atomic.Int32
	mu      sync.Mutex
	ranged  map[string]bool
}

func (s *stallStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if s.armed.Load() && strings.HasPrefix(key, s.prefix) {
		s.mu.Lock()
		filtered := s.ranged[key]
		if n >= 0 {
			s.ranged[key] = true
		}
		s.mu.Unlock()
		if n < 0 && filtered {
			s.stalled.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}
	return s.Store.Get(ctx, key, off, n)
}

func (s *stallStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	return s.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
}

// A continuous backup's graceful stop is bounded by DrainTimeout: after it
// the uploads are cancelled (their context, uctx) and abandoned. A lookup
// that faults another host's index file in reads it under the context
// Load was given (beginBackup's, the command's: lazy.go fault uses l.ctx),
// not the worker's, so a stalled read of it is not cancelled and the stop
// waits for the command's context.
func TestLazyAttackDrainTimeoutStuckInFault(t *testing.T) {
	d := smallNode(t, 94)
	st := &stallStore{Store: localStore(t), prefix: "index/b/", ranged: map[string]bool{}}
	rb, _ := lazyRepo(t, st)
	if _, err := rb.Backup(t.Context(), BackupOptions{DataDirs: []string{d}, Host: "b"}); err != nil {
		t.Fatal(err)
	}
	st.armed.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Second)
	defer cancel()
	ra, _ := lazyRepo(t, st)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := ra.Continuous(ctx, stop, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{d}, Host: "a"},
			ManifestInterval: 50 * time.Millisecond, ReportInterval: -1, DrainTimeout: 200 * time.Millisecond,
			Watch: watch.Options{Debounce: 20 * time.Millisecond}})
		done <- err
	}()
	wait := time.After(2 * time.Second)
	for st.stalled.Load() == 0 {
		select {
		case err := <-done:
			t.Fatalf("continuous backup ended before it was stopped: %v", err)
		case <-wait:
			t.Log("no lookup read an index file whole: nothing to stall")
			wait = nil
		case <-time.After(10 * time.Millisecond):
			continue
		}
		if wait == nil {
			break
		}
	}
	t0 := time.Now()
	close(stop)
	err := <-done
	if el := time.Since(t0); el > 3*time.Second {
		t.Errorf("stop with DrainTimeout 200ms took %v (ended by the command's context: %v); a lookup's index read is not cancelled with the uploads", el.Round(time.Millisecond), err)
	}
}

// Host a backs up the same files as host b; between a's Load (b's filter
// read) and its lookups (which read b's file whole), a purge removes every
// backup of b and condemns b's packs (a's live session holds the sweep),
// then repacks nothing. a deduplicates against b's condemned packs it has
// not heard of yet; after a ends, a second purge sweeps (and resurrects
// what a now references): every committed backup must restore, and so
// must a third host's backup of the same files after that. Regression.
func TestLazyAttackPurgeBetweenFilterAndFault(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	d := smallNode(t, 95)
	rb, _ := lazyRepo(t, st)
	if _, err := rb.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "b"}); err != nil {
		t.Fatal(err)
	}
	rp := repoOn(t, st, gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 1})
	var first PurgeResult
	ra, _ := lazyRepo(t, st)
	s, err := ra.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a", afterScan: func() {
		var err error
		first, err = rp.Purge(ctx, PurgeOptions{Host: "b", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p1"})
		if err != nil {
			t.Errorf("purge during a's backup: %v", err)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("purge during a's backup: removed %d backups, condemned %d packs, deleted %d; a: %d chunks new, %d dup", len(first.Manifests), len(first.Plan.Condemn), first.GC.Deleted, s.ChunksNew, s.ChunksDup)
	second, err := rp.Purge(ctx, PurgeOptions{Host: "b", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("purge after: deleted %d packs", second.GC.Deleted)
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
	rc, _ := lazyRepo(t, st)
	if _, err := rc.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rp.Purge(ctx, PurgeOptions{Host: "b", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p3"}); err != nil {
		t.Fatal(err)
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
}

// A set condemned before a's session began (a acknowledges and excludes
// it at once) is swept between a's Load, which read the filter of b's
// index file naming the set's packs, and a's lookups, which read that file
// whole — or find it gone. a must not deduplicate against a swept pack.
// Regression.
func TestLazyAttackSweepBetweenFilterAndFault(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	d := smallNode(t, 96)
	rb, _ := lazyRepo(t, st)
	if _, err := rb.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "b"}); err != nil {
		t.Fatal(err)
	}
	o := gc.Options{Grace: -1, NewPackMargin: -1, RepackThreshold: 1}
	holder, _, err := gc.StartSession(ctx, st, "x", gc.KindBackup, o)
	if err != nil {
		t.Fatal(err)
	}
	rp := repoOn(t, st, o)
	first, err := rp.Purge(ctx, PurgeOptions{Host: "b", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p1"})
	if err != nil || len(first.Plan.Condemn) == 0 || first.GC.Deleted != 0 {
		t.Fatalf("first purge: %v; condemned %d, deleted %d; want condemned and held", err, len(first.Plan.Condemn), first.GC.Deleted)
	}
	ra, _ := lazyRepo(t, st)
	var swept int
	s, err := ra.Backup(ctx, BackupOptions{DataDirs: []string{d}, Host: "a", afterScan: func() {
		if err := holder.End(ctx); err != nil {
			t.Error(err)
		}
		res, err := rp.Purge(ctx, PurgeOptions{Host: "b", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p2"})
		if err != nil {
			t.Errorf("sweep during a's backup: %v", err)
		}
		swept = res.GC.Deleted
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep during a's backup deleted %d packs; a: %d chunks new, %d dup", swept, s.ChunksNew, s.ChunksDup)
	if swept == 0 {
		t.Fatal("nothing swept during a's backup")
	}
	if err := committedWhole(t, st); err != nil {
		t.Fatal(err)
	}
}
