package cassback

// Attacks on the sweep generation and the cached manifest objects (design
// §4.2 W1′, commit b7622fa). Every test is named TestGenAttack…; those
// whose names end in …Holds document an attack that the code withstood
// when it was written. The attacks the code did not withstand are in
// generation_attack_break_test.go, behind the build tag genattack.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// gaStore passes every request to a store with conditional writes and
// lets a test step in: afterList(prefix) runs once a List has delivered
// its whole listing, before it returns; afterPut(key) once a Put or PutIf
// has landed, before it returns; failPutIf(key), if it returns an error,
// fails a PutIf before it is sent.
type gaStore struct {
	remote.Store
	afterList func(prefix string)
	afterPut  func(key string)
	failPutIf func(key string) error
}

func (s *gaStore) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	err := s.Store.List(ctx, prefix, fn)
	if err == nil && s.afterList != nil {
		s.afterList(prefix)
	}
	return err
}

func (s *gaStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	err := s.Store.Put(ctx, key, data, size)
	if err == nil && s.afterPut != nil {
		s.afterPut(key)
	}
	return err
}

func (s *gaStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if s.failPutIf != nil {
		if err := s.failPutIf(key); err != nil {
			return "", err
		}
	}
	etag, err := s.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
	if err == nil && s.afterPut != nil {
		s.afterPut(key)
	}
	return etag, err
}

// gaDropObjects removes the cached manifest objects of host's node cache,
// so the next backup reads its previous manifests from the store (W1).
func gaDropObjects(t *testing.T, r *Repo, host string) {
	t.Helper()
	objs, _ := filepath.Glob(filepath.Join(r.CacheDir, "nodes", host, objectPrefix+"*"))
	if len(objs) == 0 {
		t.Fatal("no cached manifest object to drop")
	}
	for _, o := range objs {
		if err := os.Remove(o); err != nil {
			t.Fatal(err)
		}
	}
}

// gaIsSetHeader reports whether key is a condemned set's header.
func gaIsSetHeader(key string) bool {
	return strings.HasPrefix(key, "gc/condemned/") && strings.HasSuffix(key, "/set")
}

// sweptBetweenListingAndRead: h1's backup M is committed and cached with
// the generation g its session listed. A purge of h1 (--purge-latest)
// removes M, condemns M's packs in set C and sweeps C in the same run. The
// sweep lists the sessions; *then* h1 backs up again (the same files): its
// session registers and lists gc/condemned/ — C's header and the
// generation, still g — and is stopped right after the listing (a GC
// pause, a VM frozen, a slow first read). The purge, whose session listing
// did not show the new session, goes on: fresh mark, doom list, generation
// advanced, C's packs deleted, index files rewritten, C deleted. The
// backup wakes and reads C: gone, "swept meanwhile and left out"
// (ListCondemned). So it acknowledged no set at its start
// (trustPrevious), and its stamp is g. With keepObject it finds M in its
// cache under g and reuses M's records without reading the files; without
// (the cached objects dropped) it reads M from the store as W1 does, finds
// it gone and stores the files again. It returns what laCheck finds wrong.
func sweptBetweenListingAndRead(t *testing.T, keepObject bool) error {
	ctx := t.Context()
	ls := localStore(t)
	data := smallNode(t, 301)

	var stopBackup atomic.Bool
	listed, resume := make(chan struct{}), make(chan struct{})
	bs := &gaStore{Store: ls, afterList: func(prefix string) {
		if prefix == "gc/condemned/" && stopBackup.CompareAndSwap(true, false) {
			close(listed)
			<-resume
		}
	}}
	r := laRepo(t, bs, filepath.Join(t.TempDir(), "cache"), writerOpts)
	first := laBackup(t, r, data, "h1", nil)
	if !keepObject {
		gaDropObjects(t, r, "h1")
	}

	var condemned, fired atomic.Bool
	done := make(chan struct{})
	var sum BackupSummary
	var berr error
	ps := &gaStore{Store: ls,
		afterPut: func(key string) {
			if gaIsSetHeader(key) {
				condemned.Store(true)
			}
		},
		afterList: func(prefix string) {
			// The sweep's session listing (the first after C's header).
			if prefix != "sessions/" || !condemned.Load() || !fired.CompareAndSwap(false, true) {
				return
			}
			stopBackup.Store(true)
			go func() {
				defer close(done)
				sum, berr = r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "h1"})
			}()
			select {
			case <-listed:
			case <-done:
			}
		}}
	res := taPurge(t, ps, "h1")
	close(resume)
	if !fired.Load() {
		t.Fatalf("the purge never listed the sessions after condemning: %+v", res.GC)
	}
	<-done
	if berr != nil {
		t.Fatalf("second backup: %v", berr)
	}
	if res.GC.Deleted == 0 || len(res.Manifests) != len(first.Manifests) {
		t.Fatalf("the purge removed %v and deleted %d packs; want all %d backups removed and packs deleted", res.Manifests, res.GC.Deleted, len(first.Manifests))
	}
	t.Logf("purge removed %d backups, deleted %d packs; the backup meanwhile read %d bytes, reused %d files, stored %d new chunks",
		len(res.Manifests), res.GC.Deleted, sum.BytesRead, sum.FilesReused, sum.ChunksNew)
	return laCheck(t, r, "h1", data, time.Now().Add(time.Hour))
}

// TestGenAttackSetSweptBetweenListingAndRead (BREAK at b7622fa, fixed by
// 0162d8b: a listing that shows a condemned set's header gives no stamp):
// a backup session lists gc/condemned/ — an open set C and the
// generation g — after the sweep of C listed the sessions, and is stopped
// before it reads C. The sweep advances the generation, deletes C's packs
// and C itself; the session then finds C gone ("swept meanwhile", left
// out), so the backup acknowledged no set (trustPrevious) while its stamp
// was still g, the stamp its cache recorded the host's manifest M under.
// M was removed before the sweep's fresh mark, which deleted M's packs;
// the backup reused M's records from the cache and committed a backup
// naming deleted chunks (sweptBetweenListingAndRead has the schedule).
func TestGenAttackSetSweptBetweenListingAndRead(t *testing.T) {
	if err := sweptBetweenListingAndRead(t, true); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// TestGenAttackSetSweptBetweenListingAndReadNoObjectHolds is the control
// of TestGenAttackSetSweptBetweenListingAndRead (a BREAK): the same
// schedule without the cached manifest objects. The backup reads its
// previous manifests from the store after its session began (W1), finds
// them gone, and stores the files again. With the cached objects kept,
// the same schedule commits a backup naming swept chunks.
func TestGenAttackSetSweptBetweenListingAndReadNoObjectHolds(t *testing.T) {
	if err := sweptBetweenListingAndRead(t, false); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// gaRollBack puts the store folder dir back to the copy saved, as
// `rsync -a --delete saved/ dir/` would: a file whose size and
// modification time match the copy's is left in place (the same inode,
// hence the same ETag on remote/local), any other is replaced, and files
// the copy lacks are removed. A bucket rolled back by object versions
// keeps the old objects' bytes, hence on S3 their ETags, the same way.
func gaRollBack(t *testing.T, dir, saved string) (kept, replaced, removed int) {
	t.Helper()
	same := func(rel string, fi os.FileInfo) bool {
		sfi, err := os.Lstat(filepath.Join(saved, rel))
		return err == nil && sfi.Mode().IsRegular() && sfi.Size() == fi.Size() && sfi.ModTime().Equal(fi.ModTime())
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if same(rel, fi) {
			kept++
			return nil
		}
		removed++
		return os.Remove(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(saved, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(saved, p)
		to := filepath.Join(dir, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		if _, err := os.Lstat(to); err == nil {
			return nil // left in place
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			return err
		}
		replaced++
		return os.Chtimes(to, fi.ModTime(), fi.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
	return kept, replaced, removed
}

// gaContentETags gives a local store the ETags of S3 (a single-part
// PUT's ETag is the MD5 of its bytes): the same bytes written again, or
// copied to another bucket, have the same ETag. Its compare-and-swap is
// the local store's, on the object it read the content of.
type gaContentETags struct {
	remote.Store
}

func (s gaContentETags) tag(ctx context.Context, key string) (string, error) {
	rc, err := s.Store.Get(ctx, key, 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := md5.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s gaContentETags) Stat(ctx context.Context, key string) (remote.Info, error) {
	info, err := s.Store.Stat(ctx, key)
	if err != nil {
		return info, err
	}
	info.ETag, err = s.tag(ctx, key)
	return info, err
}

func (s gaContentETags) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	var infos []remote.Info
	if err := s.Store.List(ctx, prefix, func(i remote.Info) error { infos = append(infos, i); return nil }); err != nil {
		return err
	}
	for _, i := range infos {
		tag, err := s.tag(ctx, i.Key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		i.ETag = tag
		if err := fn(i); err != nil {
			if errors.Is(err, remote.ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func (s gaContentETags) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	cs := s.Store.(remote.Conditional)
	sum := md5.Sum(data)
	want := ""
	if ifMatch != "" {
		info, err := s.Store.Stat(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: no object to match %s", remote.ErrPrecondition, ifMatch)
		}
		if err != nil {
			return "", err
		}
		if tag, err := s.tag(ctx, key); err != nil || tag != ifMatch {
			return "", fmt.Errorf("%w: etag is %s, not %s (%v)", remote.ErrPrecondition, tag, ifMatch, err)
		}
		want = info.ETag
	}
	if _, err := cs.PutIf(ctx, key, data, want); err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), nil
}

// rolledBack: n1 backs up (B1); the store folder is saved; a new SSTable
// appears and n1 backs up again (B2, cached under the same generation: no
// sweep in between); the store is rolled back to the saved copy. With
// contentETags the store has S3's ETags and is put back as
// TestLatestAttackStoreRolledBackHolds does (a bucket restored from a
// replica: every object copied); otherwise it is a local store rolled back
// in place (gaRollBack, as rsync --delete or a file-system snapshot
// would). Either way the generation object has the same stamp as before.
// The next backup of the same files lists that stamp; with keepObject it
// takes B2 from its cache and reuses the new SSTable's records, whose
// chunks the rolled-back store never had; without, it reads B2 from the
// store (W1), finds it gone, and falls back to B1. It returns what laCheck
// finds wrong.
func rolledBack(t *testing.T, contentETags, keepObject bool) error {
	storeDir := filepath.Join(t.TempDir(), "store")
	data := smallNode(t, 303)
	cache := filepath.Join(t.TempDir(), "cache")
	open := func() remote.Store {
		st := laLocal(t, storeDir)
		if contentETags {
			return gaContentETags{st}
		}
		return st
	}
	r := laRepo(t, open(), cache, writerOpts)
	laBackup(t, r, data, "n1", nil)
	saved := filepath.Join(t.TempDir(), "saved")
	laCopyDir(t, storeDir, saved)
	extra := laCopySSTable(t, data)
	laBackup(t, r, data, "n1", nil)
	if contentETags {
		if err := os.RemoveAll(storeDir); err != nil {
			t.Fatal(err)
		}
		laCopyDir(t, saved, storeDir)
	} else {
		kept, replaced, removed := gaRollBack(t, storeDir, saved)
		t.Logf("rollback: %d files kept in place, %d put back, %d removed", kept, replaced, removed)
	}
	r2 := laRepo(t, open(), cache, writerOpts)
	if !keepObject {
		gaDropObjects(t, r2, "n1")
	}
	s := laBackup(t, r2, data, "n1", nil)
	t.Logf("after the rollback: read %d bytes, reused %d files (extra SSTable: %d files)", s.BytesRead, s.FilesReused, len(extra))
	return laCheck(t, r2, "n1", data, time.Now().Add(time.Minute))
}

// TestGenAttackRolledBackNoObjectHolds is the control of
// TestGenAttackRolledBackInPlace and TestGenAttackRolledBackContentETags
// (BREAKs): without the cached manifest objects the backup reads B2 from
// the store, finds it gone and reads the new SSTable again.
func TestGenAttackRolledBackNoObjectHolds(t *testing.T) {
	for _, content := range []bool{false, true} {
		t.Run(map[bool]string{false: "in-place", true: "content-etags"}[content], func(t *testing.T) {
			if err := rolledBack(t, content, false); err != nil {
				t.Fatalf("INVARIANT BROKEN: %v", err)
			}
		})
	}
}

// TestGenAttackTwoCachesStaleObjectHolds: two processes of host n1 with
// two cache folders back up two data folders holding keyspaces of the
// same names: A the first (B1), then B the second (B2, a second later,
// other data). Retention without --purge-latest removes B1 (B2 is the
// newest of each keyspace) and sweeps the packs only B1 named. A's cache still names B1, with the stamp
// its session listed. A backs up its folder again: the sweep advanced the
// generation, so A reads B1 from the store, finds it gone, and reads its
// files again. With hole 9 (no advance) A trusts its cached B1 and names
// swept chunks; variants purge with repacking and with --exclusive.
func TestGenAttackTwoCachesStaleObjectHolds(t *testing.T) {
	for _, v := range []struct {
		name      string
		open      bool
		repack    bool
		exclusive bool
	}{
		{"fixed", false, false, false},
		{"repack", false, true, false},
		{"exclusive", false, false, true},
		{"hole9", true, false, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			defer hole.Set(hole.StaleGeneration, v.open)()
			ctx := t.Context()
			st := localStore(t)
			d1 := smallNode(t, 307)
			d2 := smallNode(t, 308)
			a := laRepo(t, st, filepath.Join(t.TempDir(), "cacheA"), writerOpts)
			b := laRepo(t, st, filepath.Join(t.TempDir(), "cacheB"), writerOpts)
			t0 := time.Now().Add(-time.Hour)
			laBackup(t, a, d1, "n1", func() time.Time { return t0 })
			laBackup(t, b, d2, "n1", func() time.Time { return t0.Add(time.Second) })
			o := writerOpts
			if v.repack {
				o.RepackThreshold = 0.01
			}
			p := laRepo(t, st, "", o)
			markers := markersOf(t, st, "n1")
			res, err := p.Purge(ctx, PurgeOptions{Host: "n1", Before: t0.Add(time.Millisecond), Holder: "p", Exclusive: v.exclusive})
			if err != nil {
				t.Fatal(err)
			}
			replayMarkers(t, st, markers) // late copies of B1's marker writes
			if res.GC.Deleted == 0 {
				t.Fatalf("the purge deleted no pack: removed %v, %+v", res.Manifests, res.GC)
			}
			t.Logf("purge removed %d backups, repacked %d, deleted %d packs", len(res.Manifests), res.GC.Repacked, res.GC.Deleted)
			s := laBackup(t, a, d1, "n1", nil)
			t.Logf("A's backup: read %d bytes, reused %d files", s.BytesRead, s.FilesReused)
			taPurge(t, st, "nobody") // removes the lone markers
			err = laCheck(t, a, "n1", d1, time.Now().Add(time.Minute))
			switch {
			case !v.open && err != nil:
				t.Errorf("INVARIANT BROKEN: %v", err)
			case v.open && err == nil:
				t.Errorf("hole 9 is open and the backup is whole: the test cannot fail")
			}
		})
	}
}

// TestGenAttackAdvanceFailsHolds: the sweep's compare-and-swap of the
// generation fails (a network error; nothing lands) after its doom list
// is written. The purge stops there: no pack is deleted, so the cached
// manifest the next backup trusts under the unchanged stamp is whole. The
// next purge finishes the doomed set, advancing the generation first, and
// the backup after it reads its manifests from the store again. Were the
// error ignored (the sweep deleting without the advance), the first
// backup after the purge would trust swept chunks.
func TestGenAttackAdvanceFailsHolds(t *testing.T) {
	data := smallNode(t, 311)
	ls := localStore(t)
	r := laRepo(t, ls, filepath.Join(t.TempDir(), "cache"), writerOpts)
	laBackup(t, r, data, "h1", nil)
	var failed atomic.Bool
	ps := &gaStore{Store: ls, failPutIf: func(key string) error {
		if key == "gc/condemned/generation" && failed.CompareAndSwap(false, true) {
			return errors.New("connection reset by peer")
		}
		return nil
	}}
	p := laRepo(t, ps, "", writerOpts)
	res, err := p.Purge(t.Context(), PurgeOptions{Host: "h1", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p1"})
	if !failed.Load() {
		t.Fatalf("the purge never advanced the generation: %+v, %v", res.GC, err)
	}
	t.Logf("purge with the advance failing: %v; deleted %d", err, res.GC.Deleted)
	laBackup(t, r, data, "h1", nil)
	if err := laCheck(t, r, "h1", data, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("INVARIANT BROKEN after the failed sweep: %v", err)
	}
	res2 := taPurge(t, ls, "h1")
	t.Logf("second purge: removed %d, deleted %d", len(res2.Manifests), res2.GC.Deleted)
	laBackup(t, r, data, "h1", nil)
	if err := laCheck(t, r, "h1", data, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("INVARIANT BROKEN after the second purge: %v", err)
	}
}

// TestGenAttackPurgerCrashedAfterDoomHolds: purge A removes h1's backup M
// (cached by h1 under stamp g), condemns its packs, writes its doom list
// and then dies (every later conditional write of A fails: a crash before
// its advance of the generation). Once A's lease has lapsed, purge B (of
// another host: it removes nothing) finishes the doomed set: it deletes
// the packs A's fresh mark doomed, and advances the generation before. h1
// backs up the same files: it lists the new stamp, reads M from the
// store, finds it gone and stores the files again. With hole 9 (no sweep
// advances) it trusts its cached M, whose packs B deleted.
func TestGenAttackPurgerCrashedAfterDoomHolds(t *testing.T) {
	for _, open := range []bool{false, true} {
		t.Run(map[bool]string{false: "fixed", true: "hole9"}[open], func(t *testing.T) {
			defer hole.Set(hole.StaleGeneration, open)()
			data := smallNode(t, 313)
			ls := localStore(t)
			r := laRepo(t, ls, filepath.Join(t.TempDir(), "cache"), writerOpts)
			laBackup(t, r, data, "h1", nil)
			var dead atomic.Bool
			crash := errors.New("purge A crashed")
			ps := &gaStore{Store: ls,
				afterPut: func(key string) {
					if strings.HasPrefix(key, "gc/condemned/") && strings.HasSuffix(key, "/doom") {
						dead.Store(true)
					}
				},
				failPutIf: func(string) error {
					if dead.Load() {
						return crash
					}
					return nil
				}}
			a := laRepo(t, ps, "", writerOpts)
			markers := markersOf(t, ls, "h1")
			resA, err := a.Purge(t.Context(), PurgeOptions{Host: "h1", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "a"})
			if !errors.Is(err, crash) || resA.GC.Deleted != 0 {
				t.Fatalf("purge A: %v, deleted %d; want it to crash after its doom list, before deleting", err, resA.GC.Deleted)
			}
			res := gaTakeOver(t, ls, "nobody")
			if res.GC.Deleted == 0 {
				t.Fatalf("purge B deleted nothing: %+v", res.GC)
			}
			replayMarkers(t, ls, markers) // late copies of M's marker writes
			s := laBackup(t, r, data, "h1", nil)
			taPurge(t, ls, "nobody") // removes the lone markers
			t.Logf("purge B deleted %d packs; h1's backup read %d bytes, reused %d files", res.GC.Deleted, s.BytesRead, s.FilesReused)
			err = laCheck(t, r, "h1", data, time.Now().Add(time.Hour))
			switch {
			case !open && err != nil:
				t.Errorf("INVARIANT BROKEN: %v", err)
			case open && err == nil:
				t.Errorf("hole 9 is open and the backup is whole: the test cannot fail")
			}
		})
	}
}

// gaTakeOver runs a purge of host (everything) after the lease of a dead
// purge lapsed: the lease object is removed first (as if expired).
func gaTakeOver(t *testing.T, st remote.Store, host string) PurgeResult {
	t.Helper()
	if err := st.Delete(t.Context(), "gc/lease"); err != nil {
		t.Fatal(err)
	}
	return taPurge(t, st, host)
}

// gaCachedStamp returns the generation stamp recorded in host's cached
// object of keyspace ks (its second line).
func gaCachedStamp(t *testing.T, r *Repo, host, ks string) string {
	t.Helper()
	b := laRead(t, filepath.Join(r.CacheDir, "nodes", host, objectPrefix+ks))
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 3 {
		t.Fatalf("cached object of %s: %d lines", ks, len(lines))
	}
	return lines[1]
}

// plantedForgedObject plants, in n1's node cache, the manifest object of
// a backup of keyspace ks that records file F (its true path, size, mtime
// and inode) with the chunks and BLAKE3 of another stored file G of the
// same size, a second before n1's latest (a name at or before the next
// backup's "now"): its name in latest.<ks>, its
// nodes in the node cache and, withObject, the object itself in
// object.<ks> under the stamp the cache already records there (anyone
// who can write the cache folder can read it there, or list it). It
// returns what laCheck finds wrong after the next backup of the data.
// This is TestLatestAttackPlantedLatestForgedRecordHolds, which broke
// 79aa3b0 (a cache that kept the manifest object), with the object file
// that b7622fa brings back.
func plantedForgedObject(t *testing.T, withObject bool) error {
	ctx := t.Context()
	st := localStore(t)
	data := smallNode(t, 317)
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
		m.Time = m.Time.Add(-time.Second)
		m.Name = manifest.BackupName(m.Time, m.Keyspace, m.Host)
		obj, nodes, err := manifest.Encode(m, chunk.Namer{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			nc.put(n.ID, n.Data)
		}
		if withObject {
			nc.setObject(ks, m.Name, gaCachedStamp(t, r, "n1", ks), obj)
		}
		nc.setLatest(ks, m.Name)
		break
	}
	if forged == "" {
		t.Fatal("no two files of one keyspace of the same size")
	}
	s := laBackup(t, r, data, "n1", nil)
	t.Logf("forged the record of %s; the backup read %d bytes, reused %d files", forged, s.BytesRead, s.FilesReused)
	return laCheck(t, r, "n1", data, time.Now().Add(time.Minute))
}

// TestGenAttackPlantedForgedNameOnlyHolds is the control of
// TestGenAttackPlantedForgedObject (a BREAK): the forged backup's name
// and nodes planted, but no object.<ks>: the backup reads the manifest
// from the store, finds none, and takes the store's latest.
func TestGenAttackPlantedForgedNameOnlyHolds(t *testing.T) {
	if err := plantedForgedObject(t, false); err != nil {
		t.Fatalf("a backup recorded a file wrongly: %v", err)
	}
}

// TestGenAttackRolledBackInPlace (a break at b7622fa, fixed by checking a cached object against its commit's marker listed by the backup: markerNames): the store is rolled back in
// place (rsync --delete from a copy, a file-system snapshot) to a moment
// after which no sweep ran: the generation object is the same file, so
// its stamp is too. The host's cache holds B2, committed after that moment
// under that stamp; the next backup takes B2 from its cache and reuses
// records whose chunks the rolled-back store never had. Reading B2 from
// the store (W1) found it gone (TestGenAttackRolledBackNoObjectHolds).
func TestGenAttackRolledBackInPlace(t *testing.T) {
	if err := rolledBack(t, false, true); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// TestGenAttackRolledBackContentETags (a break at b7622fa, fixed by checking a cached object against its commit's marker listed by the backup: markerNames): the schedule of
// TestLatestAttackStoreRolledBackHolds (a bucket restored from a replica:
// every object copied back) on a store whose ETags hash the content, as
// S3's do: the copied generation object has the stamp of the original, so
// the cached B2 is trusted as in TestGenAttackRolledBackInPlace.
func TestGenAttackRolledBackContentETags(t *testing.T) {
	if err := rolledBack(t, true, true); err != nil {
		t.Fatalf("INVARIANT BROKEN: %v", err)
	}
}

// TestGenAttackPlantedForgedObject (a break at b7622fa, fixed as the two above; needs write access to the
// cache folder, as TestLatestAttackPlantedLatestForgedRecordHolds): a
// forged manifest object planted as object.<ks>, under the stamp the
// cache records (readable there, or listable in the store) and with its
// BLAKE3 (anyone can compute it), is taken as the host's previous backup:
// a file is recorded with another file's chunks and restores wrong. The
// BLAKE3 in the file checks against rot, not against a writer. 79aa3b0
// broke the same way and was fixed by keeping only the name
// (plantedForgedObject has the schedule).
func TestGenAttackPlantedForgedObject(t *testing.T) {
	if err := plantedForgedObject(t, true); err != nil {
		t.Fatalf("a backup recorded a file wrongly: %v", err)
	}
}
