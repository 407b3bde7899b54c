package cassback

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
)

// Attacks on manifest format 3 (docs/design.md §1.5): a table's files as a
// content-defined tree of chunks, whose nodes a backup stores in packs of
// their own, each named by an index file, before the manifest object.

// recStore records the keys put and lets a test fail (crash) one Put.
type recStore struct {
	remote.Store
	mu   sync.Mutex
	puts []string
	// fail, when set, is asked before every Put and PutIf; a non-nil
	// error is returned without the request landing.
	fail func(key string) error
}

func (s *recStore) check(key string) error {
	s.mu.Lock()
	f := s.fail
	s.mu.Unlock()
	if f != nil {
		if err := f(key); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.puts = append(s.puts, key)
	s.mu.Unlock()
	return nil
}

func (s *recStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if err := s.check(key); err != nil {
		return err
	}
	return s.Store.Put(ctx, key, data, size)
}

func (s *recStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if err := s.check(key); err != nil {
		return "", err
	}
	return s.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
}

func (s *recStore) setFail(f func(string) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func (s *recStore) putKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.puts...)
}

func treeRepo(t *testing.T) (*Repo, *recStore) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(dir, 0o755)
	ls, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rs := &recStore{Store: ls}
	r, err := Open(t.Context(), rs, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	return r, rs
}

// treeData writes an SSTable's worth of files once, so that every backup
// of it records the same path, mtime and inode: the same leaf.
func treeData(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, comp := range []string{"Data.db", "Index.db", "Statistics.db", "TOC.txt"} {
		p := filepath.Join(dir, "nb-1-big-"+comp)
		if err := os.WriteFile(p, bytes.Repeat([]byte(fmt.Sprintf("tree attack %d %s ", i, comp)), 2000+i), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// storeAndCommit stores the files of paths in b and commits one manifest.
func storeAndCommit(ctx context.Context, t *testing.T, b *backupRun, paths []string) ([]string, error) {
	t.Helper()
	p := b.w.NewPacker()
	var recs []manifest.File
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		rel := "ks/t-" + tbl + "/" + filepath.Base(path)
		rec, _, err := b.storeFile(ctx, p, "/data", rel, f, storeOptions{})
		f.Close()
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	m := b.newManifest("ks", time.Now(), map[tableKey][]manifest.File{{"t", tbl}: recs})
	return b.commit(ctx, []*manifest.Manifest{m}, nil)
}

func treeBackup(t *testing.T, r *Repo, host string, paths []string) (string, *backupRun) {
	t.Helper()
	ctx := t.Context()
	b, err := r.beginBackup(ctx, BackupOptions{Host: host, Threads: 1}, []string{"ks"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.end(ctx)
	names, err := storeAndCommit(ctx, t, b, paths)
	if err != nil || len(names) != 1 || !committed(t, r.Store, names[0]) {
		t.Fatalf("backup of %s: %v %v", host, names, err)
	}
	return names[0], b
}

// treePackOf returns the pack holding the first node of a committed
// backup's tree, and the index files naming that pack.
func treePackOf(t *testing.T, st remote.Store, name string) (chunk.ID, []string) {
	t.Helper()
	ctx := t.Context()
	m, err := manifest.Get(ctx, st, name, ChunksOf(st))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Nodes) == 0 {
		t.Fatalf("%s has no tree nodes", name)
	}
	idx := index.New()
	if _, err := idx.Load(ctx, st, ""); err != nil {
		t.Fatal(err)
	}
	loc, ok := idx.Lookup(m.Nodes[0].ID)
	if !ok {
		t.Fatalf("node %s not indexed", m.Nodes[0].ID)
	}
	if !isTreePack(t, st, loc.Pack) {
		t.Fatalf("pack %s holding node %s is not marked as a tree pack", loc.Pack, m.Nodes[0].ID)
	}
	var files []string
	st.List(ctx, "index/", func(i remote.Info) error {
		rc, err := st.Get(ctx, i.Key, 0, -1)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		recs, err := index.DecodeFile(b)
		if err != nil {
			return nil
		}
		for _, p := range recs {
			if p.ID == loc.Pack {
				files = append(files, i.Key)
			}
		}
		return nil
	})
	return loc.Pack, files
}

func isTreePack(t *testing.T, st remote.Store, id chunk.ID) bool {
	t.Helper()
	info, err := st.Stat(t.Context(), pack.Key(id))
	if err != nil {
		t.Fatalf("stat tree pack: %v", err)
	}
	rc, err := st.Get(t.Context(), pack.Key(id), info.Size-pack.TrailerSize, pack.TrailerSize)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return pack.IsTreePack(b)
}

// treeWhole checks every committed backup with an empty cache, then
// validates name with checksums.
func treeWhole(t *testing.T, r *Repo, name, when string) {
	t.Helper()
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatalf("%s: INVARIANT BROKEN: %v", when, err)
	}
	rep, err := r.Validate(t.Context(), ValidateOptions{Name: name, Checksum: true})
	if err != nil || !rep.OK() {
		t.Fatalf("%s: INVARIANT BROKEN: %s does not validate: err=%v problems=%+v", when, name, err, rep.Problems)
	}
}

func quietPurge(t *testing.T, r *Repo, when string) {
	t.Helper()
	res, err := r.Purge(t.Context(), PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "t"})
	if err != nil {
		t.Fatalf("%s: purge: %v", when, err)
	}
	t.Logf("%s: %+v", when, res.GC)
}

var errKilled = errors.New("killed (kill -9)")

// A backup is killed at its commit: after its node pack PUT, before the
// index file naming it; or after that index file, before its manifest
// PUT. Purges run (with a committed backup of another host around), then
// the host backs up again — also with a writer started before the purges,
// which deduplicates against the crashed writer's nodes. Every committed
// backup stays whole and the next manifest reads back.
func TestTreeAttackCrashInCommit(t *testing.T) {
	for _, at := range []string{"index/", "manifests/"} {
		for _, early := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/early=%v", strings.TrimSuffix(at, "/"), early), func(t *testing.T) {
				r, rs := treeRepo(t)
				paths := treeData(t)
				other, _ := treeBackup(t, r, "o", paths) // a committed backup the purges must keep
				ctx, cancel := context.WithCancel(t.Context())
				b, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
				if err != nil {
					t.Fatal(err)
				}
				var lastPack string
				rs.setFail(func(key string) error {
					if strings.HasPrefix(key, "packs/") {
						lastPack = key
					}
					if strings.HasPrefix(key, at) {
						cancel()
						return errKilled
					}
					return nil
				})
				_, err = storeAndCommit(ctx, t, b, paths)
				rs.setFail(nil)
				if !errors.Is(err, errKilled) {
					t.Fatalf("commit: %v, want the crash", err)
				}
				if lastPack == "" {
					t.Fatalf("no pack PUT before the crash")
				}
				id, err := chunk.ParseID(filepath.Base(lastPack))
				if err != nil {
					t.Fatal(err)
				}
				if !isTreePack(t, r.Store, id) {
					t.Fatalf("the last pack before the crash (%s) holds no tree nodes: the attack misses", lastPack)
				}
				b.end(context.Background()) // the session goes as a dead one's would be revoked
				var w *backupRun
				if early {
					// A writer that dedups against the crashed writer's nodes
					// (indexed when at is manifests/), live across the purges.
					w, err = r.beginBackup(t.Context(), BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
					if err != nil {
						t.Fatal(err)
					}
				}
				quietPurge(t, r, "purge 1")
				quietPurge(t, r, "purge 2")
				treeWhole(t, r, other, "after purges")
				var name string
				if early {
					names, err := storeAndCommit(t.Context(), t, w, paths)
					if err != nil || len(names) != 1 {
						t.Fatalf("early writer: %v %v", names, err)
					}
					name = names[0]
					t.Logf("early writer: %d nodes new, %d found stored", w.w.Stats().Nodes.Load(), w.metaDup.Load())
					if at == "manifests/" && w.metaDup.Load() == 0 {
						t.Errorf("the early writer stored its nodes again: the attack misses")
					}
					quietPurge(t, r, "purge while the early writer is live")
					treeWhole(t, r, name, "early writer committed, before it ends")
					w.end(t.Context())
				} else {
					name, _ = treeBackup(t, r, "a", paths)
				}
				for i := range 2 {
					quietPurge(t, r, fmt.Sprintf("purge %d after", i))
					treeWhole(t, r, name, "after the next backup and purges")
					treeWhole(t, r, other, "other host after the next backup and purges")
				}
			})
		}
	}
}

// A backup is killed after its commit's index file (naming its node pack),
// before its manifest; a purge sweeps the packs; then the index file is PUT
// again (a revoked writer's late request). The next backup dedups against a pack that an
// index file names and a purge swept: it must store its nodes again.
func TestTreeAttackLateIndexOfSweptNodePack(t *testing.T) {
	ctx := t.Context()
	r, rs := treeRepo(t)
	paths := treeData(t)
	cctx, cancel := context.WithCancel(ctx)
	b, err := r.beginBackup(cctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var nodeIndex string
	rs.setFail(func(key string) error {
		if strings.HasPrefix(key, "index/") && nodeIndex == "" {
			nodeIndex = key
		}
		if strings.HasPrefix(key, "manifests/") {
			cancel()
			return errKilled
		}
		return nil
	})
	_, err = storeAndCommit(cctx, t, b, paths)
	rs.setFail(nil)
	if !errors.Is(err, errKilled) || nodeIndex == "" {
		t.Fatalf("commit: %v, node index %q", err, nodeIndex)
	}
	b.end(context.Background())
	rc, err := r.Store.Get(ctx, nodeIndex, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	saved, _ := io.ReadAll(rc)
	rc.Close()
	recs, err := index.DecodeFile(saved)
	if err != nil || !indexesTrees(t, r.Store, nodeIndex) {
		t.Fatalf("node index: %v, or it names no pack of trees", err)
	}
	quietPurge(t, r, "purge 1")
	quietPurge(t, r, "purge 2")
	for _, rec := range recs { // the commit's packs of data and of trees
		if _, err := r.Store.Stat(ctx, pack.Key(rec.ID)); err == nil {
			t.Fatalf("pack %s not swept: the attack misses", rec.ID)
		}
	}
	if err := r.Store.Put(ctx, nodeIndex, bytes.NewReader(saved), int64(len(saved))); err != nil {
		t.Fatal(err)
	}
	name, w := treeBackup(t, r, "a", paths)
	t.Logf("next backup: %d nodes new, %d found stored", w.w.Stats().Nodes.Load(), w.metaDup.Load())
	if w.w.Stats().Nodes.Load() == 0 {
		t.Fatalf("BREAK: the next backup stored no node: it dedups against a swept pack of %s", nodeIndex)
	}
	treeWhole(t, r, name, "next backup")
	quietPurge(t, r, "purge 3")
	treeWhole(t, r, name, "after purge 3")
}

// A writer deduplicates the unchanged leaf of an earlier backup whose
// pack is condemned (purge --purge-latest removed that backup): either it
// started before the set (it has not acknowledged it and deduplicates
// against the condemned pack), or after (it acknowledged it at once and
// must store the node again). The sweep then runs, while the writer is
// live and after it ends; the committed manifest stays whole.
func TestTreeAttackDedupCondemnedNode(t *testing.T) {
	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprintf("acked=%v", acked), func(t *testing.T) {
			ctx := t.Context()
			r, _ := treeRepo(t)
			paths := treeData(t)
			b0, _ := treeBackup(t, r, "a", paths)
			t0, _ := treePackOf(t, r.Store, b0)
			condemn := func() {
				r.GC.Grace = time.Hour
				res, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "p1"})
				r.GC.Grace = -1
				if err != nil || res.GC.Condemned == 0 {
					t.Fatalf("purge --purge-latest: %v %+v", err, res.GC)
				}
			}
			var w *backupRun
			var err error
			if acked {
				condemn()
			}
			w, err = r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !acked {
				condemn()
			}
			if committed(t, r.Store, b0) {
				t.Fatalf("b0 still committed")
			}
			names, err := storeAndCommit(ctx, t, w, paths)
			if err != nil || len(names) != 1 {
				t.Fatalf("commit: %v %v", names, err)
			}
			name := names[0]
			t.Logf("writer: %d nodes new, %d found stored", w.w.Stats().Nodes.Load(), w.metaDup.Load())
			if !acked && w.metaDup.Load() == 0 {
				t.Fatalf("the writer did not dedup the condemned leaf: the attack misses")
			}
			if acked && w.metaDup.Load() != 0 {
				t.Fatalf("a writer that knew of the set deduplicated a node against it")
			}
			// A second writer starts while the set is open: it excludes
			// the condemned packs, and reads name (its previous backup,
			// whose leaf may be only in a condemned pack) to reuse records.
			w2, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("second writer: %d previous records loaded", len(w2.known))
			quietPurge(t, r, "sweep with the writers live")
			treeWhole(t, r, name, "writer live")
			n2, err := storeAndCommit(ctx, t, w2, paths)
			w2.end(ctx)
			if err != nil || len(n2) != 1 {
				t.Fatalf("second writer: %v %v", n2, err)
			}
			t.Logf("second writer: %d nodes new, %d found stored", w2.w.Stats().Nodes.Load(), w2.metaDup.Load())
			treeWhole(t, r, n2[0], "second writer")
			w.end(ctx)
			quietPurge(t, r, "sweep after the writer ended")
			quietPurge(t, r, "one more")
			treeWhole(t, r, name, "writer ended")
			if _, err := r.Store.Stat(ctx, pack.Key(t0)); err == nil {
				t.Logf("condemned tree pack %s resurrected", t0)
			}
			m, err := manifest.Get(ctx, r.Store, name, ChunksOf(r.Store))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "r")
			if _, err := r.Restore(ctx, []*manifest.Manifest{m}, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
				t.Fatalf("restore: %v", err)
			}
		})
	}
}

// A purge's mark meets a committed manifest whose node pack is missing, or
// damaged (same size, a flipped byte in a node): it deletes nothing — a
// dead pack of another backup stays — and says why, naming the manifest.
func TestTreeAttackMarkMeetsBadNodePack(t *testing.T) {
	for _, how := range []string{"missing", "damaged"} {
		t.Run(how, func(t *testing.T) {
			ctx := t.Context()
			r, _ := treeRepo(t)
			paths := treeData(t)
			// Garbage for the purge to want: host g's backup, removed.
			g, _ := treeBackup(t, r, "g", [](string){paths[0]})
			name, _ := treeBackup(t, r, "a", paths[1:])
			if err := manifest.Delete(ctx, r.Store, g); err != nil {
				t.Fatal(err)
			}
			tp, _ := treePackOf(t, r.Store, name)
			key := pack.Key(tp)
			switch how {
			case "missing":
				if err := r.Store.Delete(ctx, key); err != nil {
					t.Fatal(err)
				}
			case "damaged":
				rc, err := r.Store.Get(ctx, key, 0, -1)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				b[len(b)/3] ^= 0x55 // inside a node (the header is at the end)
				if err := r.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
					t.Fatal(err)
				}
			}
			before := countKeys(t, r.Store, "packs/")
			res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "t"})
			t.Logf("purge: err=%v report=%+v", err, res.GC)
			if after := countKeys(t, r.Store, "packs/"); after != before || res.GC.Deleted != 0 || res.GC.Condemned != 0 {
				t.Fatalf("BREAK: purge deleted or condemned with a manifest unreadable: packs %d -> %d, %+v", before, after, res.GC)
			}
			why := fmt.Sprint(err, res.GC.Blocked)
			if !strings.Contains(why, name) {
				t.Fatalf("purge does not say which manifest stops it: %s", why)
			}
			rep, err := r.Validate(ctx, ValidateOptions{Name: name})
			if err == nil && rep.OK() {
				t.Fatalf("validate finds nothing wrong with %s", name)
			}
			t.Logf("validate: err=%v problems=%+v", err, rep.Problems)
		})
	}
}

// lostNodeIndex commits a backup of host a and deletes the one index
// file naming its node pack; it returns the backup and the pack.
func lostNodeIndex(t *testing.T) (*Repo, []string, string, chunk.ID) {
	t.Helper()
	r, _ := treeRepo(t)
	paths := treeData(t)
	name, _ := treeBackup(t, r, "a", paths)
	tp, files := treePackOf(t, r.Store, name)
	if len(files) != 1 {
		t.Fatalf("tree pack %s named by %d index files, want 1", tp, len(files))
	}
	if err := r.Store.Delete(t.Context(), files[0]); err != nil {
		t.Fatal(err)
	}
	r.CacheDir = "" // readers without the cache
	return r, paths, name, tp
}

// The index file naming a node pack is lost. Restore and a purge's mark
// find the nodes from pack headers; purges keep the pack; the next backup
// of the host writes a readable manifest.
func TestTreeAttackLostNodeIndexFile(t *testing.T) {
	ctx := t.Context()
	r, paths, name, tp := lostNodeIndex(t)
	m, err := manifest.Get(ctx, r.Store, name, ChunksOf(r.Store))
	if err != nil {
		t.Fatalf("read with the node index lost: %v", err)
	}
	if _, err := r.Restore(ctx, []*manifest.Manifest{m}, RestoreOptions{DataDir: filepath.Join(t.TempDir(), "r"), NoChown: true}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for i := range 2 {
		quietPurge(t, r, fmt.Sprintf("purge %d", i))
		if _, err := r.Store.Stat(ctx, pack.Key(tp)); err != nil {
			t.Fatalf("BREAK: purge %d deleted the unindexed node pack: %v", i, err)
		}
		if err := committedWhole(t, r.Store); err != nil {
			t.Fatal(err)
		}
	}
	n2, _ := treeBackup(t, r, "a", paths)
	treeWhole(t, r, n2, "next backup")
	if err := committedWhole(t, r.Store); err != nil {
		t.Fatal(err)
	}
}

// A break this attack found, now fixed (validate's locate checks each
// manifest's tree nodes as a file of them): validate passed a backup whose
// tree is stored only in a pack no index file names. Output before the fix:
//
//	validate: err=<nil> ok=true problems=[] orphans=[c8b9f49f…]
//	validate does not name the lost index file of node pack c8b9f49f…
//
// validate.go's locate checks only the files' chunks (f.rec.Chunks), never
// the manifest's nodes (m.Nodes, part of Manifest.Refs): a node found only
// from a pack header is neither reported unindexed nor checked against a
// pack of the indexed size, so validate exits 0 where the same loss for a
// data chunk is an "unindexed" problem and exit 1 (design §4.8). The pack
// shows up only among Orphans, which OK() ignores and which the CLI
// describes as "purge removes them when old enough".
func TestTreeAttackBreakValidatePassesUnindexedTree(t *testing.T) {
	r, _, name, tp := lostNodeIndex(t)
	rep, err := r.Validate(t.Context(), ValidateOptions{Name: name, Checksum: true})
	t.Logf("validate: err=%v ok=%v problems=%+v orphans=%v", err, rep.OK(), rep.Problems, rep.Orphans)
	if rep.OK() && err == nil {
		t.Fatalf("validate does not name the lost index file of node pack %s", tp)
	}
	for _, p := range rep.Problems {
		if p.Backup == name && (p.Kind == Unindexed || strings.Contains(p.What, tp.String())) {
			return
		}
	}
	t.Fatalf("validate fails but does not point at the unindexed node pack: %+v", rep.Problems)
}

// One commit of two keyspaces puts both leaves in one node pack; the
// second keyspace's backup is removed, so the pack is mostly dead and a
// purge repacks it: the live leaf is copied into a new pack, the old one
// condemned and swept. The surviving backup stays whole, and the next
// backup dedups against the copy.
func TestTreeAttackRepackedNodePack(t *testing.T) {
	ctx := t.Context()
	r, _ := treeRepo(t)
	paths := treeData(t)
	b, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks", "ks2"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := b.w.NewPacker()
	tables := map[string][]manifest.File{}
	for _, ks := range []string{"ks", "ks2"} {
		for i, path := range paths {
			if ks == "ks" && i > 0 {
				break // a small leaf for ks, a large one for ks2
			}
			for g := range 8 {
				if ks == "ks" && g > 0 {
					break
				}
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				rel := fmt.Sprintf("%s/t-%s/nb-%d-big-%s", ks, tbl, g+1, strings.TrimPrefix(filepath.Base(path), "nb-1-big-"))
				rec, _, err := b.storeFile(ctx, p, "/data", rel, f, storeOptions{})
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				tables[ks] = append(tables[ks], rec)
			}
		}
	}
	var ms []*manifest.Manifest
	for _, ks := range []string{"ks", "ks2"} {
		ms = append(ms, b.newManifest(ks, time.Now(), map[tableKey][]manifest.File{{"t", tbl}: tables[ks]}))
	}
	names, err := b.commit(ctx, ms, nil)
	b.end(ctx)
	if err != nil || len(names) != 2 {
		t.Fatalf("commit: %v %v", names, err)
	}
	keep, gone := names[0], names[1]
	if !strings.Contains(keep, "-ks-") {
		keep, gone = gone, keep
	}
	tp, _ := treePackOf(t, r.Store, keep)
	if tp2, _ := treePackOf(t, r.Store, gone); tp2 != tp {
		t.Fatalf("the two trees are in different packs: the attack misses")
	}
	if err := manifest.Delete(ctx, r.Store, gone); err != nil {
		t.Fatal(err)
	}
	res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "t"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("purge: %+v", res.GC)
	quietPurge(t, r, "purge 2")
	if _, err := r.Store.Stat(ctx, pack.Key(tp)); err == nil {
		t.Fatalf("the sparse node pack was not repacked and swept: the attack misses")
	}
	treeWhole(t, r, keep, "after the repack")
	np, _ := treePackOf2(t, r.Store, keep)
	t.Logf("node now in pack %s, marked as a tree pack: %v", np, isTreePack(t, r.Store, np))
	w, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.end(ctx)
	f, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec, _, err := w.storeFile(ctx, w.w.NewPacker(), "/data", fmt.Sprintf("ks/t-%s/nb-1-big-Data.db", tbl), f, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := w.commit(ctx, []*manifest.Manifest{w.newManifest("ks", time.Now(), map[tableKey][]manifest.File{{"t", tbl}: {rec}})}, nil)
	if err != nil || len(ns) != 1 {
		t.Fatalf("next backup: %v %v", ns, err)
	}
	t.Logf("next backup: %d nodes new, %d found stored", w.w.Stats().Nodes.Load(), w.metaDup.Load())
	treeWhole(t, r, ns[0], "next backup")
}

// treePackOf2 is treePackOf without requiring the tree mark.
func treePackOf2(t *testing.T, st remote.Store, name string) (chunk.ID, bool) {
	t.Helper()
	m, err := manifest.Get(t.Context(), st, name, ChunksOf(st))
	if err != nil {
		t.Fatal(err)
	}
	idx := index.New()
	if _, err := idx.Load(t.Context(), st, ""); err != nil {
		t.Fatal(err)
	}
	loc, ok := idx.Lookup(m.Nodes[0].ID)
	return loc.Pack, ok
}

// Two backups of one host commit at once, sharing every leaf; then purges.
func TestTreeAttackConcurrentSameHost(t *testing.T) {
	ctx := t.Context()
	r, _ := treeRepo(t)
	paths := treeData(t)
	first, _ := treeBackup(t, r, "a", paths)
	var ws [2]*backupRun
	for i := range ws {
		w, err := r.beginBackup(ctx, BackupOptions{Host: "a", Threads: 1}, []string{"ks"}, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	var names [2]string
	var errs [2]error
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns, err := storeAndCommit(ctx, t, w, paths)
			if err == nil && len(ns) == 1 {
				names[i] = ns[0]
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, w := range ws {
		w.end(ctx)
		if errs[i] != nil || names[i] == "" {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
	}
	// Remove the first backup so its nodes' only users are the two.
	if _, err := r.Purge(ctx, PurgeOptions{Host: "a", Before: time.Now().Add(-time.Hour), Holder: "t"}); err != nil {
		t.Fatal(err)
	}
	manifest.Delete(ctx, r.Store, first)
	for i := range 2 {
		quietPurge(t, r, fmt.Sprintf("purge %d", i))
		for _, n := range names {
			treeWhole(t, r, n, "after purge")
		}
	}
}

// --- forged trees ---

type forgedRoot struct {
	Format           int           `json:"format"`
	Name             string        `json:"name"`
	Host             string        `json:"host"`
	Keyspace         string        `json:"keyspace"`
	Time             time.Time     `json:"time"`
	CassandraVersion string        `json:"cassandra_version,omitempty"`
	Session          string        `json:"session"`
	Tables           []forgedTable `json:"tables"`
}

type forgedTable struct {
	Name   string    `json:"name"`
	ID     string    `json:"id,omitempty"`
	Files  int       `json:"files"`
	Bytes  int64     `json:"bytes"`
	Height int       `json:"height"`
	Root   chunk.Ref `json:"root"`
}

type forgedInner struct {
	Format   int         `json:"format"`
	Children []chunk.Ref `json:"children"`
}

func gz(t *testing.T, v any) []byte {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(js)
	zw.Close()
	return buf.Bytes()
}

func refOf(b []byte) chunk.Ref { return chunk.Ref{ID: chunk.Sum(b), Len: uint32(len(b))} }

func forgedFile(path string, mode uint32, n int) manifest.File {
	return forgedFileIn("t", path, mode, n)
}

func forgedFileIn(table, path string, mode uint32, n int) manifest.File {
	data := bytes.Repeat([]byte("f"), n)
	return manifest.File{Path: "ks/" + table + "-" + tbl + "/" + path, Root: "/data", Size: int64(n), Mode: mode,
		MTime: time.Unix(1700000000, 0).UTC(), Sum: chunk.Sum(data), Chunks: []chunk.Ref{refOf(data)}}
}

// leaf returns the single leaf Encode makes for one table of files.
func leaf(t *testing.T, host, table string, files []manifest.File) []byte {
	t.Helper()
	at := time.Unix(1700000000, 0).UTC()
	m := &manifest.Manifest{Format: manifest.FormatVersion, Name: manifest.BackupName(at, "ks", host), Host: host,
		Keyspace: "ks", Time: at, Tables: []manifest.Table{{Name: table, ID: tbl, Files: files}}}
	_, nodes, err := manifest.Encode(m, chunk.Namer{})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("leaf: %d nodes, %v", len(nodes), err)
	}
	return nodes[0].Data
}

// forge stores nodes in an indexed pack and a committed manifest object
// of host a, keyspace ks, with one table t; it returns the backup name.
func forge(t *testing.T, r *Repo, tab forgedTable, nodes ...[]byte) string {
	t.Helper()
	ctx := t.Context()
	w, err := index.NewWriter(ctx, r.Store, index.New(), r.Config, index.WriterOptions{Host: "forger"})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	for _, n := range nodes {
		if _, err := p.Add(ctx, chunk.Sum(n), n); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	tab.Name, tab.ID = "t", tbl
	ro := forgedRoot{Format: manifest.FormatVersion, Name: manifest.BackupName(at, "ks", "a"), Host: "a", Keyspace: "ks",
		Time: at, Session: forgedSession, Tables: []forgedTable{tab}}
	if err := manifest.Put(ctx, r.Store, ro.Name, gz(t, ro)); err != nil {
		t.Fatal(err)
	}
	commitStored(t, r.Store, ro.Name, forgedSession)
	return ro.Name
}

// countingChunks counts the node IDs a reader asks for and refuses past
// a cap, so that a reader that would read without bound is stopped.
type countingChunks struct {
	manifest.Chunks
	n, cap int64
}

var errCap = errors.New("reader asked for more nodes than the cap")

func (c *countingChunks) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	if atomic.AddInt64(&c.n, int64(len(ids))) > c.cap {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return fmt.Errorf("%w (heap in use %d MiB)", errCap, ms.HeapInuse>>20)
	}
	return c.Chunks.FetchChunks(ctx, ids, fn)
}

// everyReaderRefuses reads a forged manifest through manifest.Get,
// validate and a purge's mark, each within a time bound: each must fail
// with a one-line error naming the manifest, and the purge must delete
// nothing.
func everyReaderRefuses(t *testing.T, r *Repo, name, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, err := manifest.Get(ctx, r.Store, name, ChunksOf(r.Store))
	if err == nil {
		t.Fatalf("manifest.Get accepts the forged manifest")
	}
	msg := err.Error()
	if !strings.Contains(msg, name) || strings.Contains(msg, "\n") || (want != "" && !strings.Contains(msg, want)) {
		t.Errorf("manifest.Get: %q: want one line naming %s and saying %q", msg, name, want)
	}
	t.Logf("get: %v", err)
	rep, err := r.Validate(ctx, ValidateOptions{Name: name})
	if err == nil && rep.OK() {
		t.Errorf("validate accepts the forged manifest")
	}
	t.Logf("validate: err=%v problems=%+v", err, rep.Problems)
	// Something for a purge to want to delete.
	storeChunk(t, r, index.New(), "dead", []byte("a dead chunk for the purge to want"))
	before := countKeys(t, r.Store, "packs/")
	res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "t"})
	if ctx.Err() != nil {
		t.Fatalf("readers did not finish within the bound")
	}
	if after := countKeys(t, r.Store, "packs/"); after != before || res.GC.Condemned != 0 {
		t.Errorf("purge condemned or deleted with a forged manifest: %d -> %d packs, %+v", before, after, res.GC)
	}
	why := fmt.Sprint(err, res.GC.Blocked)
	if !strings.Contains(why, name) {
		t.Errorf("purge does not name the manifest that stops it: %s", why)
	}
}

// Forged trees: each reader fails with a one-line error naming the
// manifest, within a bound, and the purge deletes nothing. A cycle cannot
// be forged (a node would have to name its own BLAKE3); the nearest thing,
// a child repeated, is TestTreeAttackSharedChildAmplification.
func TestTreeAttackForgedTrees(t *testing.T) {
	f1 := forgedFile("nb-1-big-Data.db", 0o644, 10)
	f1b := f1
	f1b.Mode = 0o600
	cases := []struct {
		name string
		want string
		make func(t *testing.T) (forgedTable, [][]byte)
	}{
		{"leaf of another host", "not a leaf of this table", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "b", "t", []manifest.File{f1})
			return forgedTable{Files: 1, Bytes: 10, Root: refOf(l)}, [][]byte{l}
		}},
		{"leaf of another table", "not a leaf of this table", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "u", []manifest.File{forgedFileIn("u", "nb-1-big-Data.db", 0o644, 10)})
			return forgedTable{Files: 1, Bytes: 10, Root: refOf(l)}, [][]byte{l}
		}},
		{"file parts with other metadata", "repeated", func(t *testing.T) (forgedTable, [][]byte) {
			l1, l2 := leaf(t, "a", "t", []manifest.File{f1}), leaf(t, "a", "t", []manifest.File{f1b})
			in := gz(t, forgedInner{Format: manifest.FormatVersion, Children: []chunk.Ref{refOf(l1), refOf(l2)}})
			return forgedTable{Files: 1, Bytes: 20, Height: 1, Root: refOf(in)}, [][]byte{l1, l2, in}
		}},
		{"count above the header", "in its header", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			return forgedTable{Files: 2, Bytes: 10, Root: refOf(l)}, [][]byte{l}
		}},
		{"bytes above the header", "in its header", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			return forgedTable{Files: 1, Bytes: 11, Root: refOf(l)}, [][]byte{l}
		}},
		{"reference length wrong", "its reference says", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			ref := refOf(l)
			ref.Len++
			return forgedTable{Files: 1, Bytes: 10, Root: ref}, [][]byte{l}
		}},
		{"height above the tree", "", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			in := gz(t, forgedInner{Format: manifest.FormatVersion, Children: []chunk.Ref{refOf(l)}})
			return forgedTable{Files: 1, Bytes: 10, Height: 2, Root: refOf(in)}, [][]byte{l, in}
		}},
		{"height below the tree", "", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			in := gz(t, forgedInner{Format: manifest.FormatVersion, Children: []chunk.Ref{refOf(l)}})
			return forgedTable{Files: 1, Bytes: 10, Height: 0, Root: refOf(in)}, [][]byte{l, in}
		}},
		{"height 17", "bad counts", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			return forgedTable{Files: 1, Bytes: 10, Height: 17, Root: refOf(l)}, [][]byte{l}
		}},
		{"node of 2000 children", "2000 children", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			kids := make([]chunk.Ref, 2000)
			for i := range kids {
				kids[i] = refOf(l)
			}
			in := gz(t, forgedInner{Format: manifest.FormatVersion, Children: kids})
			return forgedTable{Files: 2000, Bytes: 20000, Height: 1, Root: refOf(in)}, [][]byte{l, in}
		}},
		{"gzip bomb leaf", "", func(t *testing.T) (forgedTable, [][]byte) {
			js := append(fmt.Appendf(nil, `{"format":%d,"name":"`, manifest.FormatVersion), bytes.Repeat([]byte("a"), 64<<20)...)
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(js)
			zw.Close()
			return forgedTable{Files: 1, Bytes: 10, Root: refOf(buf.Bytes())}, [][]byte{buf.Bytes()}
		}},
		{"gzip bomb inner node", "more than", func(t *testing.T) (forgedTable, [][]byte) {
			l := leaf(t, "a", "t", []manifest.File{f1})
			js := append(fmt.Appendf(nil, `{"format":%d,"children":[`, manifest.FormatVersion), bytes.Repeat([]byte(`{"id":"`+chunk.Sum(l).String()+`","len":1},`), 1<<17)...)
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(js)
			zw.Close()
			return forgedTable{Files: 1, Bytes: 10, Height: 1, Root: refOf(buf.Bytes())}, [][]byte{l, buf.Bytes()}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := treeRepo(t)
			tab, nodes := c.make(t)
			name := forge(t, r, tab, nodes...)
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("BREAK: panic: %v", p)
					}
				}()
				everyReaderRefuses(t, r, name, c.want)
			}()
		})
	}
}

// A tree whose nodes repeat one child: a manifest object of a few hundred
// bytes, 3 distinct nodes (a few KB stored), a table header of 0 files and
// 0 bytes at height 2, whose root lists one inner node 1,024 times, which
// lists the empty leaf 1,024 times. A reader must refuse it without
// fetching and decoding a million leaves.
//
// A break this attack found, now fixed (readTree refuses a node named twice
// in a level, and a level larger than the table's files can need):
// manifest.Read followed repeated references without bound.
// readTree builds each level by appending every child of every reference
// (1,048,576 leaf references here, also appended to m.Nodes), and
// readLeaves fetches and decodes the empty leaf once per reference: the
// empty leaf costs no budget (MaxDecodedMemory is charged per file), inner
// levels are not charged at all, and the header's count and bytes are
// compared only after the last leaf. Nothing bounds the references of a
// level by the header's file count, nor refuses a child repeated. At
// height 3 (one more node of 1,024 repeats) the leaf level alone is 2^30
// references × 36 B = 36 GiB, allocated before the first leaf is fetched:
// manifest.Get, restore, validate and purge's mark (index/gc/mark.go via
// freshSource) run out of memory on one such object; at height 2 each
// takes about 20 minutes (1.2 ms a leaf here). One hostile object stops
// every purge. A repeated non-empty leaf is stopped by the budget, but
// only after some 150,000 decodes (40 MiB at a few hundred bytes a file).
// Output before the fix (the counting source stops the reader past 10,000
// node IDs):
//
//	get: 10049 node IDs asked for in 10.904141498s: manifest 2026_12_06T08_53_42_176677-ks-a: manifest 2026_12_06T08_53_42_176677-ks-a: table t: reader asked for more nodes than the cap (heap in use 95 MiB)
//	purge: manifest 2026_12_06T08_53_42_176677-ks-a: manifest 2026_12_06T08_53_42_176677-ks-a: table t: context deadline exceeded after 20.054s (deadline hit: true)
//	validate problems: [{… Kind:corrupt What:manifest unreadable: … table t: context deadline exceeded}]
//	validate: list index files: list index/: context deadline exceeded after 20.01s (deadline hit: true)
//	the reader follows a forged tree of 3 nodes past 10000 node fetches
//	--- FAIL: TestTreeAttackSharedChildAmplification (51.16s)
func TestTreeAttackSharedChildAmplification(t *testing.T) {
	testSharedChildAmplification(t)
}

func testSharedChildAmplification(t *testing.T) {
	r, _ := treeRepo(t)
	e := leaf(t, "a", "t", []manifest.File{})
	kids := make([]chunk.Ref, 1024)
	for i := range kids {
		kids[i] = refOf(e)
	}
	x := gz(t, forgedInner{Format: manifest.FormatVersion, Children: kids})
	for i := range kids {
		kids[i] = refOf(x)
	}
	root := gz(t, forgedInner{Format: manifest.FormatVersion, Children: kids})
	name := forge(t, r, forgedTable{Files: 0, Bytes: 0, Height: 2, Root: refOf(root)}, e, x, root)
	src := &countingChunks{Chunks: ChunksOf(r.Store), cap: 10000}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	_, err := manifest.Get(ctx, r.Store, name, src)
	t.Logf("get: %d node IDs asked for in %v: %v", atomic.LoadInt64(&src.n), time.Since(t0), err)
	for _, c := range []struct {
		what string
		run  func(ctx context.Context) error
	}{
		{"purge", func(ctx context.Context) error {
			res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "t"})
			t.Logf("purge report: %+v", res.GC)
			return err
		}},
		{"validate", func(ctx context.Context) error {
			rep, err := r.Validate(ctx, ValidateOptions{Name: name})
			t.Logf("validate problems: %+v", rep.Problems)
			return err
		}},
	} {
		cctx, ccancel := context.WithTimeout(t.Context(), 20*time.Second)
		t1 := time.Now()
		err := c.run(cctx)
		ccancel()
		t.Logf("%s: %v after %v (deadline hit: %v)", c.what, err, time.Since(t1).Round(time.Millisecond), cctx.Err() != nil)
	}
	if err == nil || errors.Is(err, errCap) || atomic.LoadInt64(&src.n) > src.cap {
		t.Fatalf("the reader follows a forged tree of 3 nodes past %d node fetches (err=%v)", src.cap, err)
	}
}

const forgedSession = "0123456789abcdef01234567"
