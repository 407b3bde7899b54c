package cassback

// Attacks on the cached latest manifest (nodeCache.latest / setLatest,
// backupRun.cachedPrevious), on the examine goroutines of holdAll, and on
// the index files a writer caches (commit 79aa3b0). Every test is named
// TestLatestAttack…; those whose names end in …Holds document an attack
// that the code withstood when it was written.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/watch"
)

// laRepo opens a repo on st whose cache lives below cacheRoot ("" for
// none), with protocol options o.
func laRepo(t *testing.T, st remote.Store, cacheRoot string, o gc.Options) *Repo {
	t.Helper()
	r, err := Open(t.Context(), st, Options{CacheRoot: cacheRoot, Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	nc := r.GC.NoConditional
	r.GC = o
	r.GC.NoConditional = nc
	return r
}

// laBackup runs a one-shot backup of data as host.
func laBackup(t *testing.T, r *Repo, data, host string, now func() time.Time) BackupSummary {
	t.Helper()
	s, err := r.Backup(t.Context(), BackupOptions{DataDirs: []string{data}, Host: host, Now: now})
	if err != nil {
		t.Fatalf("backup of %s: %v", host, err)
	}
	return s
}

// laCheck validates every committed backup with checksums and restores
// host's latest backups (at at) into an empty folder, comparing it with
// data. It returns what is wrong.
func laCheck(t *testing.T, r *Repo, host, data string, at time.Time) error {
	t.Helper()
	ctx := t.Context()
	var errs []error
	if err := committedWhole(t, r.Store); err != nil {
		errs = append(errs, fmt.Errorf("committedWhole: %w", err))
	}
	rep, err := r.Validate(ctx, ValidateOptions{Checksum: true})
	if err != nil {
		errs = append(errs, fmt.Errorf("validate: %w", err))
	}
	if len(rep.Problems) > 0 {
		errs = append(errs, fmt.Errorf("validate: %d problems, first %+v", len(rep.Problems), rep.Problems[0]))
	}
	ms, err := Select(ctx, r.Store, host, "", nil, at)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("select: %w", err))...)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		errs = append(errs, fmt.Errorf("restore: %w", err))
	} else if d := diffTrees(data, dst); d != "" {
		errs = append(errs, fmt.Errorf("restored tree differs: %s", d))
	}
	return errors.Join(errs...)
}

// diffTrees compares the live SSTable files of src (outside system,
// snapshots and backups, as a backup takes them) with dst, which must hold
// each of them byte for byte; it returns the first difference or "".
func diffTrees(src, dst string) string {
	var out string
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || out != "" {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			out = fmt.Sprintf("%s restored but not in the source: %v", rel, err)
		} else if string(a) != string(b) {
			x := -1
			for i := range a {
				if a[i] != b[i] {
					x = i
					break
				}
			}
			out = fmt.Sprintf("%s: restored %d bytes differ from the source's %d (first at %d: %x vs %x)", rel, len(a), len(b), x, a[x], b[x])
		}
		return nil
	})
	return out
}

// laLatestFiles lists the latest.* files of host's node cache.
func laLatestFiles(t *testing.T, r *Repo, host string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(r.CacheDir, "nodes", host))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), latestPrefix) {
			out = append(out, filepath.Join(r.CacheDir, "nodes", host, e.Name()))
		}
	}
	slices.Sort(out)
	return out
}

// laPacks counts the stored packs.
func laPacks(t *testing.T, st remote.Store) int {
	t.Helper()
	n := 0
	if err := st.List(t.Context(), "packs/", func(remote.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// --- the cached latest manifest was purged (--purge-latest) and swept ---

// TestLatestAttackPurgedLatestSweptHolds: the cache names a backup that
// purge --purge-latest removed and whose packs were swept. The next backup
// reads the cached manifest (its nodes are still in the node cache, or,
// with nodesToo, gone from the cache and from the store) but must store
// every file again: its chunks left the index with the sweep.
func TestLatestAttackPurgedLatestSweptHolds(t *testing.T) {
	for _, nodesToo := range []bool{false, true} {
		t.Run(fmt.Sprintf("nodesGone=%v", nodesToo), func(t *testing.T) {
			st := localStore(t)
			data := smallNode(t, 101)
			r := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)
			laBackup(t, r, data, "n1", nil)
			if len(laLatestFiles(t, r, "n1")) == 0 {
				t.Fatal("no latest.* file cached after a commit")
			}
			if res, err := purgeAll(t, r, "n1"); err != nil || res.GC.Deleted == 0 {
				t.Fatalf("purge --purge-latest: %v, deleted %d packs", err, res.GC.Deleted)
			}
			if nodesToo {
				ents, _ := os.ReadDir(filepath.Join(r.CacheDir, "nodes", "n1"))
				for _, e := range ents {
					if !strings.HasPrefix(e.Name(), latestPrefix) {
						os.Remove(filepath.Join(r.CacheDir, "nodes", "n1", e.Name()))
					}
				}
			}
			s := laBackup(t, r, data, "n1", nil)
			if s.BytesRead == 0 || s.FilesReused != 0 {
				t.Errorf("after the cached latest was purged and swept the backup read %d bytes and reused %d files", s.BytesRead, s.FilesReused)
			}
			if err := laCheck(t, r, "n1", data, time.Now().Add(time.Minute)); err != nil {
				t.Error(err)
			}
		})
	}
}

// --- a late index file of a revoked writer names a swept pack ---

// lateIndexScenario: a writer W (host w) with the same files as n1 uploads
// its packs and is stopped before its index file lands; n1 backs up (its
// node cache remembers the backup as latest) and uploads its own copies;
// a purge --purge-latest of n1 removes that backup, revokes the stale W
// and sweeps every pack, W's included; then W wakes and its index file
// lands, naming W's deleted packs (design §4.2 W1: "an index file written
// late by a revoked writer may name a pack a sweep already deleted"). n1
// backs up again. With dropLatest the latest.* files are removed first,
// as with no cache (what the code did before 79aa3b0).
func lateIndexScenario(t *testing.T, dropLatest bool) error {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 103)
	n1 := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)

	reached, release := make(chan struct{}), make(chan struct{})
	hs := &hooked{Store: st, prefix: "index/", before: func(string) {
		close(reached)
		<-release
	}}
	w := laRepo(t, hs, "", pauseOpts(0))
	wdone := make(chan error, 1)
	go func() {
		_, err := w.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "w"})
		wdone <- err
	}()
	select {
	case <-reached:
	case err := <-wdone:
		t.Fatalf("W ended before its index file: %v", err)
	}
	wPacks := laPacks(t, st)

	s1 := laBackup(t, n1, data, "n1", nil)
	if s1.BytesNew == 0 {
		t.Fatal("n1 deduplicated against W's unindexed packs: the scenario needs its own copies")
	}
	pastLease() // W's session goes stale
	for i := 0; i < 3 && laPacks(t, st) > 0; i++ {
		if _, err := purgeAll(t, n1, "n1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := laPacks(t, st); n != 0 {
		t.Fatalf("%d packs left after the purges (W had %d); want all swept", n, wPacks)
	}
	close(release)
	if err := <-wdone; err == nil {
		t.Fatal("W committed after its revocation")
	} else {
		t.Logf("W after waking: %v", err)
	}
	var late []string
	st.List(ctx, "index/w/", func(i remote.Info) error { late = append(late, i.Key); return nil })
	if len(late) == 0 {
		t.Fatal("W's late index file did not land")
	}
	if dropLatest {
		for _, p := range laLatestFiles(t, n1, "n1") {
			os.Remove(p)
		}
	}
	s2 := laBackup(t, n1, data, "n1", nil)
	t.Logf("n1's second backup: read %d bytes, reused %d files, %d new chunks", s2.BytesRead, s2.FilesReused, s2.ChunksNew)
	return laCheck(t, n1, "n1", data, time.Now().Add(time.Minute))
}

// TestLatestAttackLateIndexFileOfRevokedWriter (BREAK): the cached latest
// manifest names a backup that was purged and swept; a late index file of
// a revoked writer names the swept pack of the same chunks. The backup
// reuses the cached records because allKnown asks only idx.Has, with no
// check that the pack is stored (which the Packer makes before it
// deduplicates): the new manifest names chunks that are not stored.
func TestLatestAttackLateIndexFileOfRevokedWriter(t *testing.T) {
	if err := lateIndexScenario(t, false); err != nil {
		t.Fatalf("a committed backup is not whole: %v", err)
	}
}

// TestLatestAttackLateIndexFileNoCacheHolds: the same scenario with the
// latest.* files removed (the store is asked, it has no backup of n1): the
// files are read and the Packer's pack check uploads them again.
func TestLatestAttackLateIndexFileNoCacheHolds(t *testing.T) {
	if err := lateIndexScenario(t, true); err != nil {
		t.Fatalf("a committed backup is not whole: %v", err)
	}
}

// TestLatestAttackLateIndexFileTwoCaches (BREAK): the same loss without
// --purge-latest. Host n1 backs up with cache A, then with cache B (two
// caches for one host: a reinstalled node, two operators' machines); an
// ordinary purge removes the older backup, the one A still calls latest,
// and sweeps the packs only it used; a revoked writer's late index file
// names a swept copy of them. Back on cache A the stale latest is reused.
func TestLatestAttackLateIndexFileTwoCaches(t *testing.T) {
	if err := lateIndexTwoCaches(t, "oneshot"); err != nil {
		t.Fatalf("a committed backup is not whole: %v", err)
	}
}

// TestLatestAttackLateIndexFileTwoCachesNoCacheHolds: the same with cache
// A's latest.* files removed before backup 3 (the store's latest, backup
// 2, lacks the extra SSTable): its files are read and stored again.
func TestLatestAttackLateIndexFileTwoCachesNoCacheHolds(t *testing.T) {
	if err := lateIndexTwoCaches(t, "nocache"); err != nil {
		t.Fatalf("a committed backup is not whole: %v", err)
	}
}

// TestLatestAttackLateIndexFileTwoCachesContinuous (BREAK): the same loss
// when backup 3 is a continuous backup on cache A: its first manifests
// carry the stale latest's records of the extra SSTable.
func TestLatestAttackLateIndexFileTwoCachesContinuous(t *testing.T) {
	if err := lateIndexTwoCaches(t, "continuous"); err != nil {
		t.Fatalf("a committed backup is not whole: %v", err)
	}
}

// lateIndexTwoCaches runs backup 3 as mode says: "oneshot", "nocache"
// (one-shot without cache A's latest.* files) or "continuous".
func lateIndexTwoCaches(t *testing.T, mode string) error {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 107)
	a := laRepo(t, st, filepath.Join(t.TempDir(), "cacheA"), writerOpts)
	b := laRepo(t, st, filepath.Join(t.TempDir(), "cacheB"), writerOpts)

	// The files only backup 1 holds: an extra SSTable, removed before
	// backup 2.
	extra := laCopySSTable(t, data)

	reached, release := make(chan struct{}), make(chan struct{})
	hs := &hooked{Store: st, prefix: "index/", before: func(string) {
		close(reached)
		<-release
	}}
	w := laRepo(t, hs, "", pauseOpts(0))
	wdone := make(chan error, 1)
	go func() {
		_, err := w.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "w", PackSize: 1})
		wdone <- err
	}()
	select {
	case <-reached:
	case err := <-wdone:
		t.Fatalf("W ended before its index file: %v", err)
	}
	t0 := time.Now().Add(-time.Hour) // backups 1 and 2 before backup 3
	bk := func(r *Repo, now func() time.Time) BackupSummary {
		t.Helper()
		// A chunk a pack: the packs of files only backup 1 names are
		// wholly unreferenced once it is purged.
		s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1", PackSize: 1, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bk(a, func() time.Time { return t0 })
	// Backup 2 (cache B) without the extra SSTable.
	for _, f := range extra {
		if err := os.Rename(f, f+".away"); err != nil {
			t.Fatal(err)
		}
	}
	bk(b, func() time.Time { return t0.Add(time.Second) })
	pastLease()
	for range 3 {
		nc := a.GC.NoConditional
		saved := a.GC
		a.GC = purgeOpts
		a.GC.NoConditional = nc
		_, err := a.Purge(ctx, PurgeOptions{Host: "n1", Before: t0.Add(time.Millisecond), Holder: "purger"})
		a.GC = saved
		if err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := <-wdone; err == nil {
		t.Fatal("W committed after its revocation")
	}
	// The extra SSTable comes back (a snapshot restored, or it was only
	// hidden from backup 2): cache A's latest still records it.
	for _, f := range extra {
		if err := os.Rename(f+".away", f); err != nil {
			t.Fatal(err)
		}
	}
	if mode == "nocache" {
		for _, p := range laLatestFiles(t, a, "n1") {
			os.Remove(p)
		}
	}
	if mode == "continuous" {
		stop := make(chan struct{})
		done := make(chan error, 1)
		var cs ContinuousStats
		go func() {
			var err error
			cs, err = a.Continuous(ctx, stop, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "n1", PackSize: 1},
				ManifestInterval: 50 * time.Millisecond, ReportInterval: -1, Watch: watch.Options{Debounce: 20 * time.Millisecond}})
			done <- err
		}()
		time.Sleep(1500 * time.Millisecond)
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		t.Logf("continuous backup 3 on cache A: read %d bytes, %d manifests", cs.BytesRead, cs.Manifests)
		return laCheck(t, a, "n1", data, time.Now().Add(time.Minute))
	}
	s := bk(a, nil)
	t.Logf("backup 3 on cache A: read %d bytes, reused %d files", s.BytesRead, s.FilesReused)
	return laCheck(t, a, "n1", data, time.Now().Add(time.Minute))
}

// laCopySSTable copies the first SSTable of data found (its Data.db and
// the files of its prefix) under a new generation, its Index.db and
// Summary.db changed so that they are chunks of their own, and returns
// the new files' paths.
func laCopySSTable(t *testing.T, data string) []string {
	t.Helper()
	var dataDB string
	filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
		if err == nil && dataDB == "" && strings.HasSuffix(p, "-big-Data.db") && !strings.Contains(p, "/snapshots/") && !strings.Contains(p, "/backups/") && !strings.Contains(p, "/system") {
			dataDB = p
		}
		return nil
	})
	if dataDB == "" {
		t.Fatal("no Data.db in the generated node")
	}
	dir, base := filepath.Split(dataDB)
	// nb-<gen>-big-Data.db
	parts := strings.SplitN(base, "-", 3)
	prefix := parts[0] + "-" + parts[1] + "-"
	newPrefix := parts[0] + "-9999-"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		np := filepath.Join(dir, newPrefix+strings.TrimPrefix(e.Name(), prefix))
		if strings.HasSuffix(np, "-Index.db") || strings.HasSuffix(np, "-Summary.db") {
			for i := range b { // content of its own: chunks only this copy has
				b[i] ^= 0x55
			}
		}
		if err := os.WriteFile(np, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, np)
	}
	return out
}

// --- stale caches without a late index file ---

// TestLatestAttackTwoCachesStaleHolds: cache A's latest is stale (a newer
// backup was made with cache B, the old one purged and its only packs
// swept); data changed meanwhile. Back on cache A nothing wrong is
// recorded.
func TestLatestAttackTwoCachesStaleHolds(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 109)
	a := laRepo(t, st, filepath.Join(t.TempDir(), "cacheA"), writerOpts)
	b := laRepo(t, st, filepath.Join(t.TempDir(), "cacheB"), writerOpts)
	extra := laCopySSTable(t, data)
	t0 := time.Now().Add(-time.Hour) // backups 1 and 2 before backup 3
	laBackup(t, a, data, "n1", func() time.Time { return t0 })
	for _, f := range extra {
		os.Rename(f, f+".away")
	}
	laMutate(t, data, 1)
	laBackup(t, b, data, "n1", func() time.Time { return t0.Add(time.Second) })
	for range 2 {
		if _, err := a.Purge(ctx, PurgeOptions{Host: "n1", Before: t0.Add(time.Millisecond), Holder: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range extra {
		os.Rename(f+".away", f)
	}
	laMutate(t, data, 2)
	s := laBackup(t, a, data, "n1", nil)

	t.Logf("backup on stale cache A: read %d bytes, reused %d files", s.BytesRead, s.FilesReused)
	if err := laCheck(t, a, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// laMutate rewrites every live Index.db of data with other bytes of the
// same size (round picks them) and a new mtime: a backup must read them.
func laMutate(t *testing.T, data string, round byte) {
	t.Helper()
	n := 0
	filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, "-Index.db") || strings.Contains(p, "/snapshots/") || strings.Contains(p, "/backups/") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i := range b {
			b[i] ^= round
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		mt := time.Now().Add(time.Duration(round) * time.Minute)
		n++
		return os.Chtimes(p, mt, mt)
	})
	if n == 0 {
		t.Fatal("no Index.db to mutate")
	}
}

// --- damaged, planted and copied cache files ---

// TestLatestAttackDamagedLatestHolds: every latest.* file is replaced in
// turn by garbage, a truncated copy, an empty file (since 1093b83: "no
// backup of the keyspace", so every file is read again), a FIFO, a directory, a
// symbolic link to a good copy outside the folder, the latest of another
// keyspace, of another host, and one from a clock a year ahead; data
// changes before each backup. Each backup completes, asks the store, and
// the store stays whole. Symbolic links planted as latest.<ks> and
// latest.<ks>.tmp are never written through.
func TestLatestAttackDamagedLatestHolds(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 113)
	r := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)
	laBackup(t, r, data, "n1", nil)
	// Another host's latest, in the same cache.
	laBackup(t, r, data, "n2", nil)
	future := laRepo(t, st, filepath.Join(t.TempDir(), "cacheF"), writerOpts)
	laBackup(t, future, data, "n1", func() time.Time { return time.Now().Add(365 * 24 * time.Hour) })
	futureFiles := laLatestFiles(t, future, "n1")
	otherHost := laLatestFiles(t, r, "n2")
	outside := t.TempDir()

	modes := []string{"garbage", "truncated", "empty", "fifo", "dir", "symlink", "tmpsymlink", "tmpgarbage", "otherks", "otherhost", "future"}
	for round, mode := range modes {
		files := laLatestFiles(t, r, "n1")
		if len(files) < 2 {
			t.Fatalf("%s: %d latest files, want one per keyspace (2 or more)", mode, len(files))
		}
		var watch []string // files outside that must not change
		goods := make([][]byte, len(files))
		for i, f := range files {
			goods[i] = laRead(t, f)
		}
		for i, f := range files {
			good := goods[i]
			ks := strings.TrimPrefix(filepath.Base(f), latestPrefix)
			os.RemoveAll(f)
			switch mode {
			case "garbage":
				os.WriteFile(f, []byte("not a manifest at all"), 0o644)
			case "truncated":
				os.WriteFile(f, good[:len(good)/2], 0o644)
			case "empty":
				os.WriteFile(f, nil, 0o644)
			case "fifo":
				if err := syscall.Mkfifo(f, 0o644); err != nil {
					t.Fatal(err)
				}
			case "dir":
				os.Mkdir(f, 0o755)
			case "symlink", "tmpsymlink":
				o := filepath.Join(outside, fmt.Sprintf("%d-%s", round, ks))
				os.WriteFile(o, good, 0o644)
				watch = append(watch, o)
				if mode == "symlink" {
					os.Symlink(o, f)
				} else {
					os.WriteFile(f, good, 0o644)
					os.Symlink(o, f+".tmp")
				}
			case "tmpgarbage": // a crash between setLatest's write and rename
				os.WriteFile(f, good, 0o644)
				os.WriteFile(f+".tmp", []byte("half a manifest"), 0o644)
			case "otherks": // (system_traces has no backup: its empty entry, "none", lands on system_schema)
				os.WriteFile(f, goods[(i+1)%len(files)], 0o644)
			case "otherhost":
				for _, o := range otherHost {
					if filepath.Base(o) == filepath.Base(f) {
						os.WriteFile(f, laRead(t, o), 0o644)
					}
				}
			case "future":
				for _, o := range futureFiles {
					if filepath.Base(o) == filepath.Base(f) {
						os.WriteFile(f, laRead(t, o), 0o644)
					}
				}
			}
		}
		before := map[string]string{}
		for _, o := range watch {
			before[o] = string(laRead(t, o))
		}
		laMutate(t, data, byte(round+1))
		s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"})
		if err != nil {
			t.Errorf("%s: backup failed instead of asking the store: %v", mode, err)
			continue
		}
		t.Logf("%s: read %d bytes, reused %d files", mode, s.BytesRead, s.FilesReused)
		for _, o := range watch {
			if string(laRead(t, o)) != before[o] {
				t.Errorf("%s: %s outside the cache folder was written through a symbolic link", mode, o)
			}
		}
		// Leave a clean cache for the next mode.
		for _, f := range laLatestFiles(t, r, "n1") {
			if fi, err := os.Lstat(f); err == nil && !fi.Mode().IsRegular() {
				os.RemoveAll(f)
			}
		}
		laBackup(t, r, data, "n1", nil)
	}
	if err := laCheck(t, r, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

func laRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLatestAttackPlantedLatestForgedRecordHolds (broke 79aa3b0, which
// kept the manifest object in latest.<ks>; needs write access to the cache
// folder): a manifest of this host and keyspace that records file F (its
// true path, size, mtime and inode) with the chunks and BLAKE3 of another
// stored file G of the same size, its nodes planted in the node cache and
// its name in latest.<ks>. The cache now holds only a name, read from the
// store, whose nodes are checked against the IDs the stored object names:
// a manifest the store lacks is passed over, and F is read.
func TestLatestAttackPlantedLatestForgedRecordHolds(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 127)
	r := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)
	laBackup(t, r, data, "n1", nil)
	nc := newNodeCache(r.CacheDir, "n1", chunk.Namer{}, ChunksOf(st))
	defer nc.close()
	forged := ""
	for _, p := range laLatestFiles(t, r, "n1") {
		ks := strings.TrimPrefix(filepath.Base(p), latestPrefix)
		name := string(laRead(t, p))
		if name == "" {
			continue
		}
		m, err := manifest.Get(ctx, st, name, nc)
		if err != nil {
			t.Fatal(err)
		}
		forged = forgeRecord(m)
		if forged == "" {
			continue
		}
		m.Time = m.Time.Add(time.Second)
		m.Name = manifest.BackupName(m.Time, m.Keyspace, m.Host)
		_, nodes, err := manifest.Encode(m, chunk.Namer{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			nc.put(n.ID, n.Data)
		}
		nc.setLatest(ks, m.Name)
		break
	}
	if forged == "" {
		t.Fatal("no two files of one keyspace of the same size")
	}
	s := laBackup(t, r, data, "n1", nil)
	t.Logf("forged the record of %s; the backup read %d bytes, reused %d files", forged, s.BytesRead, s.FilesReused)
	if err := laCheck(t, r, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("a backup recorded a file wrongly: %v", err)
	}
}

// TestLatestAttackTwoProcessesOneCacheHolds: two processes (two Repos on
// one cache root) back up the same host at once, three rounds, with data
// changing between rounds; then a purge of all but the newest. Their
// latest.* and node files race; every backup stays whole and the newest
// restores to the data.
func TestLatestAttackTwoProcessesOneCacheHolds(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 131)
	cache := filepath.Join(t.TempDir(), "cache")
	r1 := laRepo(t, st, cache, writerOpts)
	r2 := laRepo(t, st, cache, writerOpts)
	for round := range 3 {
		if round > 0 {
			laMutate(t, data, byte(round))
		}
		errs := make(chan error, 2)
		for _, r := range []*Repo{r1, r2} {
			go func() {
				_, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1", Threads: 8})
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	if _, err := r1.Purge(ctx, PurgeOptions{Host: "n1", Before: time.Now(), Holder: "p"}); err != nil {
		t.Fatal(err)
	}
	laMutate(t, data, 9)
	for _, r := range []*Repo{r1, r2} {
		laBackup(t, r, data, "n1", nil)
	}
	if err := laCheck(t, r1, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestLatestAttackClockHolds: a backup with a clock a year ahead makes its
// manifest the cached latest; backups with the right clock then with one
// a day behind, data changing before each, must not take it (it is after
// their "now") and must record what is on disk.
func TestLatestAttackClockHolds(t *testing.T) {
	st := localStore(t)
	data := smallNode(t, 137)
	r := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)
	laBackup(t, r, data, "n1", func() time.Time { return time.Now().Add(365 * 24 * time.Hour) })
	laMutate(t, data, 1)
	s := laBackup(t, r, data, "n1", nil)
	t.Logf("right clock: read %d bytes, reused %d", s.BytesRead, s.FilesReused)
	laMutate(t, data, 2)
	s = laBackup(t, r, data, "n1", func() time.Time { return time.Now().Add(-24 * time.Hour) })
	t.Logf("clock a day behind: read %d bytes, reused %d", s.BytesRead, s.FilesReused)
	laMutate(t, data, 3)
	s = laBackup(t, r, data, "n1", nil)
	t.Logf("right clock again: read %d bytes, reused %d", s.BytesRead, s.FilesReused)
	if err := laCheck(t, r, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestLatestAttackStoreRolledBackHolds: the store folder is put back to a
// copy taken before the cached latest backup was written (a bucket
// restored from a replica: same store ID, so the same cache folder). The
// cached latest, its index file in the index cache and its nodes name
// chunks the store no longer has; the next backup must store them again.
func TestLatestAttackStoreRolledBackHolds(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	data := smallNode(t, 139)
	cache := filepath.Join(t.TempDir(), "cache")
	st := laLocal(t, storeDir)
	r := laRepo(t, st, cache, writerOpts)
	laBackup(t, r, data, "n1", nil)
	saved := filepath.Join(t.TempDir(), "saved")
	laCopyDir(t, storeDir, saved)
	extra := laCopySSTable(t, data)
	laMutate(t, data, 1)
	laBackup(t, r, data, "n1", nil)
	if err := os.RemoveAll(storeDir); err != nil {
		t.Fatal(err)
	}
	laCopyDir(t, saved, storeDir)
	r2 := laRepo(t, laLocal(t, storeDir), cache, writerOpts)
	s := laBackup(t, r2, data, "n1", nil)
	t.Logf("after the rollback: read %d bytes, reused %d files (extra SSTable: %d files)", s.BytesRead, s.FilesReused, len(extra))
	if err := laCheck(t, r2, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestLatestAttackCacheFromAnotherStoreHolds: the cache folder of store
// S1 is copied over that of store S2 (another bucket for the same host:
// a migration), so latest.* and the nodes are S1's. Data changes; the
// backup to S2 must record what is on disk, with chunks S2 holds.
func TestLatestAttackCacheFromAnotherStoreHolds(t *testing.T) {
	data := smallNode(t, 149)
	cache := filepath.Join(t.TempDir(), "cache")
	s1 := laRepo(t, localStore(t), cache, writerOpts)
	s2 := laRepo(t, localStore(t), cache, writerOpts)
	if s1.CacheDir == s2.CacheDir {
		t.Fatal("two stores share a cache folder")
	}
	laBackup(t, s2, data, "n1", nil)
	extra := laCopySSTable(t, data)
	laMutate(t, data, 1)
	laBackup(t, s1, data, "n1", nil)
	os.RemoveAll(filepath.Join(s2.CacheDir, "nodes"))
	laCopyDir(t, filepath.Join(s1.CacheDir, "nodes"), filepath.Join(s2.CacheDir, "nodes"))
	laMutate(t, data, 2)
	s := laBackup(t, s2, data, "n1", nil)
	t.Logf("S2 with S1's node cache: read %d bytes, reused %d files (extra %d)", s.BytesRead, s.FilesReused, len(extra))
	if err := laCheck(t, s2, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestLatestAttackPurgeLatestDuringBackupHolds: purge --purge-latest runs
// while a backup that reused the cached latest's records (the manifest
// being purged) is between its hold and its commit; a second purge runs
// after. The backup's session holds the condemned packs; its manifest
// must be whole.
func TestLatestAttackPurgeLatestDuringBackupHolds(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 151)
	r := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)
	p := laRepo(t, st, "", writerOpts)
	laBackup(t, r, data, "n1", nil)
	var res PurgeResult
	var perr error
	s, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1", afterHold: func() {
		res, perr = p.Purge(ctx, PurgeOptions{Host: "n1", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p"})
	}})
	if err != nil || perr != nil {
		t.Fatalf("backup: %v; purge: %v", err, perr)
	}
	t.Logf("backup reused %d files; purge during it removed %v, condemned %d, deleted %d", s.FilesReused, res.Manifests, res.GC.Condemned, res.GC.Deleted)
	res2, err := p.Purge(ctx, PurgeOptions{Host: "nobody", Before: time.Now(), Holder: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second purge: deleted %d, resurrected %d", res2.GC.Deleted, res2.GC.Resurrected)
	if err := laCheck(t, r, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// TestLatestAttackEscapesHolds: a host named ".." (whose node cache
// folder would be the store's cache folder itself) is refused before the
// cache is touched; an index cache folder planted as a symbolic link to a
// folder outside is not written through by the writer's cached index
// files.
func TestLatestAttackEscapesHolds(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 157)
	r := laRepo(t, st, filepath.Join(t.TempDir(), "cache"), writerOpts)
	before := laListDir(t, r.CacheDir)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: ".."}); err == nil {
		t.Error(`a backup with host ".." succeeded`)
	}
	if after := laListDir(t, r.CacheDir); !slices.Equal(before, after) {
		t.Errorf(`a backup with host ".." changed the cache folder: %v -> %v`, before, after)
	}
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(r.CacheDir, "index"), 0o755)
	if err := os.Symlink(outside, filepath.Join(r.CacheDir, "index", "n1")); err != nil {
		t.Fatal(err)
	}
	laBackup(t, r, data, "n1", nil)
	if got := laListDir(t, outside); len(got) != 0 {
		t.Errorf("files written outside the cache folder through a planted symbolic link: %v", got)
	}
	if err := laCheck(t, r, "n1", data, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

func laListDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return out
}

func laLocal(t *testing.T, dir string) remote.Store {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// laCopyDir copies the regular files and folders below src to dst.
func laCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi, _ := d.Info()
			if err := os.WriteFile(to, b, 0o644); err != nil {
				return err
			}
			return os.Chtimes(to, fi.ModTime(), fi.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLatestAttackStaleNoneDroppedKeyspace (BREAK, since 1093b83: an
// empty latest.<ks> means "no backup"): cache A records that keyspace
// newks has no backup (its folder exists, still without SSTables); newks
// then gets data and is backed up through cache B; then it is dropped
// (its folder removed). A continuous backup on cache A, trusting "none",
// does not count newks among the keyspaces with a previous manifest, so it
// never writes newks's empty manifest: the latest backup of newks still
// lists the dropped tables, and restoring the host's latest brings them
// back. Asking the store (no latest.newks) writes the empty manifest.
func TestLatestAttackStaleNoneDroppedKeyspace(t *testing.T) {
	staleNone(t, false)
}

// TestLatestAttackStaleNoneDroppedKeyspaceNoCacheHolds: the same with
// latest.newks removed before the continuous backup: it asks the store,
// finds cache B's backup of newks and writes newks's empty manifest.
func TestLatestAttackStaleNoneDroppedKeyspaceNoCacheHolds(t *testing.T) {
	staleNone(t, true)
}

func staleNone(t *testing.T, dropNone bool) {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 163)
	a := laRepo(t, st, filepath.Join(t.TempDir(), "cacheA"), writerOpts)
	b := laRepo(t, st, filepath.Join(t.TempDir(), "cacheB"), writerOpts)
	newks := filepath.Join(data, "newks")
	if err := os.Mkdir(newks, 0o755); err != nil {
		t.Fatal(err)
	}
	laBackup(t, a, data, "n1", nil)
	none := filepath.Join(a.CacheDir, "nodes", "n1", latestPrefix+"newks")
	if fi, err := os.Stat(none); err != nil || fi.Size() != 0 {
		t.Logf("latest.newks after the first backup: %v (size %v); the scenario needs an empty one", err, fi)
	}
	// newks gets a table: a copy of one of inventory's with SSTables.
	var tbl string
	ents, _ := os.ReadDir(filepath.Join(data, "inventory"))
	for _, e := range ents {
		fs, _ := filepath.Glob(filepath.Join(data, "inventory", e.Name(), "*-Data.db"))
		if e.IsDir() && len(fs) > 0 {
			tbl = e.Name()
			break
		}
	}
	laCopyDir(t, filepath.Join(data, "inventory", tbl), filepath.Join(newks, tbl))
	s := laBackup(t, b, data, "n1", nil)
	if !slices.ContainsFunc(s.Manifests, func(n string) bool { return strings.Contains(n, "-newks-") }) {
		t.Fatalf("cache B's backup wrote no manifest of newks: %v", s.Manifests)
	}
	if err := os.RemoveAll(newks); err != nil { // DROP KEYSPACE newks
		t.Fatal(err)
	}
	if dropNone {
		os.Remove(none)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Continuous(ctx, stop, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "n1"},
			ManifestInterval: 50 * time.Millisecond, ReportInterval: -1, Watch: watch.Options{Debounce: 20 * time.Millisecond}})
		done <- err
	}()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms, err := Select(ctx, st, "n1", "", []string{"newks"}, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, m := range readWhole(t, st, ms) {
		for _, tb := range m.Tables {
			files += len(tb.Files)
		}
		t.Logf("latest backup of newks: %s", m.Name)
	}
	if files != 0 {
		t.Errorf("newks was dropped before the continuous backup, yet its latest backup lists %d files: the continuous backup wrote no empty manifest for it", files)
	}
}

// forgeRecord gives the first file of m that has an earlier file of the
// same size but other content that file's chunks and BLAKE3, and returns
// its path ("" if m has no such pair).
func forgeRecord(m *manifest.Manifest) string {
	bySize := map[int64]manifest.File{}
	for ti := range m.Tables {
		for fi := range m.Tables[ti].Files {
			f := &m.Tables[ti].Files[fi]
			if g, ok := bySize[f.Size]; f.Size > 0 && ok && g.Sum != f.Sum {
				f.Sum, f.Chunks = g.Sum, g.Chunks
				return f.Path
			}
			bySize[f.Size] = *f
		}
	}
	return ""
}
