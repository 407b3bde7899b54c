package cassback

// Attacks on the commit in five requests (ff59fae): a pack's PUT counted
// as stored when the store verified it (remote.PutDurable, no HEAD), and
// a continuous commit's tree nodes put after the file chunks of an open
// pack (index.Writer.AddTree; packs marked with the offset of their first
// node, format CBPACK02). Each test ends by checking what a reader relies
// on: every committed backup whole, restorable and validating.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/internal/sim"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/survey"
)

// readAll returns the whole object under key.
func readAll(t *testing.T, st remote.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asFormat1 rewrites every pack of the store as the writer before ff59fae
// wrote it: magic "CBPACK01", and a pack of tree nodes marked by "tree"
// followed by random bytes (no offset), its header sum made again. Pack
// IDs change with the bytes, so the index files are written again naming
// the new IDs (manifests name chunks, not packs: they stay).
func asFormat1(t *testing.T, st remote.Store) {
	t.Helper()
	ctx := t.Context()
	var keys []string
	if err := st.List(ctx, "packs/", func(i remote.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	renamed := map[chunk.ID]chunk.ID{}
	for _, k := range keys {
		b := readAll(t, st, k)
		tr := b[len(b)-pack.TrailerSize:]
		nonce := tr[32 : 32+pack.NonceSize]
		n := int(binary.LittleEndian.Uint32(tr[32+pack.NonceSize:]))
		if string(nonce[:4]) == string(pack.TreeMark[:]) {
			copy(nonce[4:8], []byte{0x9c, 0x41, 0xe7, 0x03}) // random in format 1
			hdr := b[len(b)-pack.TrailerSize-n*pack.EntrySize : len(b)-pack.TrailerSize]
			sum := chunk.Sum(append(slices.Clone(hdr), nonce...))
			copy(tr[:32], sum[:])
		}
		copy(tr[pack.TrailerSize-8:], "CBPACK01")
		id := chunk.Sum(b)
		old, err := chunk.ParseID(filepath.Base(k))
		if err != nil {
			t.Fatal(err)
		}
		renamed[old] = id
		if err := st.Put(ctx, pack.Key(id), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	var files []string
	if err := st.List(ctx, "index/", func(i remote.Info) error { files = append(files, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range files {
		recs, err := index.ReadFile(ctx, st, k)
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			recs[i].ID = renamed[recs[i].ID]
		}
		b, sum := index.EncodeFile(recs)
		host := strings.Split(k, "/")[1]
		if err := st.Put(ctx, index.Key(host, sum), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
}

// A store written before ff59fae holds packs of format 1 ("CBPACK01").
// The attack found that the bump left the config's format at 2, so the
// new binary opened such a store as its own, and validate called every
// file of every backup corrupt ("pack trailer: bad magic"). There are no
// users' stores to carry (docs/design.md §1: a reader refuses a version
// it does not know), so the store format is 3 now: such a store is
// refused at open, in one line naming both formats. A pack of format 1
// in a store of format 3 (planted, or left by a binary of the day) is
// reported unreadable by validate, by its key, and nothing else is.
func TestCommitAttackFormat1PacksAfterUpgrade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	r := gcRepo(t, dir, true)
	name, err := backupOne(t, r, "a", bytes.Repeat([]byte("written before the bump "), 5000))
	if err != nil {
		t.Fatal(err)
	}
	asFormat1(t, r.Store)

	// Validate with a fresh cache: the format-1 packs are reported.
	r2 := gcRepo(t, dir, false)
	rep, err := r2.Validate(t.Context(), ValidateOptions{Name: name, Checksum: true})
	if err == nil && rep.OK() {
		t.Fatal("a backup whose packs are of format 1 validates in a store of format 3")
	}
	for _, p := range rep.Problems {
		if !strings.Contains(p.What, "packs/") || !strings.Contains(p.What, "bad magic") {
			t.Errorf("problem %+v does not name a pack of another format", p)
		}
	}

	// The whole store of the previous format is refused at open.
	ctx := t.Context()
	rc, err := r.Store.Get(ctx, index.ConfigKey, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	err = json.NewDecoder(rc).Decode(&cfg)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg["format"] = index.StoreFormat - 1
	b, _ := json.Marshal(cfg)
	if err := r.Store.Put(ctx, index.ConfigKey, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, r.Store, Options{CacheRoot: t.TempDir(), Log: quietLog()})
	want := fmt.Sprintf("store format %d not supported (this cassback reads format %d)", index.StoreFormat-1, index.StoreFormat)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("opening a store of the previous format: got %v, want one line saying %q", err, want)
	}
}

// The GC simulator's store (simStore, sim_test.go) makes a stop of a
// process likelier while its PUT of a pack or a manifest is pending
// (putWeight): the windows where a stopped process does harm. It wraps
// *sim.Store by embedding, and overrides Put; since ff59fae *sim.Store has
// PutVerified too, promoted to simStore, and the index writer's pack
// upload (remote.PutDurable) calls that, past the override: the
// simulator no longer weighs a stop during a pack's PUT, and no test says
// so. The control, a manifest's PUT by Put, shows the weight is seen.
func TestCommitAttackSimulatorWeighsPackPuts(t *testing.T) {
	w := sim.New(sim.Options{Seed: 1})
	s := &simRun{w: w, st: w.Store(), uploading: map[*sim.Actor]int{}}
	st := &simStore{w.Store(), s}
	data := bytes.Repeat([]byte("p"), 1000)
	packKey := pack.Key(chunk.Sum(data))
	for _, tt := range []struct {
		name, key string
		put       func(ctx context.Context, key string) error
	}{
		{"manifest by Put", "manifests/a/ks/x", func(ctx context.Context, key string) error {
			return st.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
		}},
		{"pack by PutDurable", packKey, func(ctx context.Context, key string) error {
			return remote.PutDurable(ctx, st, key, bytes.NewReader(data), int64(len(data)))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := w.Spawn(tt.name, 0, func(ctx context.Context) error { return tt.put(ctx, tt.key) })
			// The chaos reads the weight between steps, as here: the
			// actor ran until its request parked.
			seen := 0
			look := func() error {
				s.mu.Lock()
				seen = max(seen, s.uploading[a])
				s.mu.Unlock()
				return nil
			}
			look()
			err := w.RunUntilIdle(100, look)
			if err != nil || a.Err() != nil {
				t.Fatalf("run: %v, %v", err, a.Err())
			}
			if want := putWeight(tt.key); seen != want {
				t.Errorf("stop weight while %s was pending: got %d, want %d (putWeight)", tt.key, seen, want)
			}
		})
	}
}

// killStore is one process's view of a local store: it logs the
// requests made once armed and, after the allowed number of them, is a
// process killed (kill -9): every later request fails without landing.
// It forwards remote.Verifying, as the wrappers of a real process do.
type killStore struct {
	inner *local.Store
	mu    sync.Mutex
	armed bool
	allow int // requests let through once armed; -1: all
	log   []string
}

var _ interface {
	remote.Store
	remote.Conditional
	remote.Verifying
} = (*killStore)(nil)

func (c *killStore) arm(allow int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.allow, c.log = true, allow, nil
}

func (c *killStore) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// req logs a request and reports whether it may land.
func (c *killStore) req(op, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return nil
	}
	if c.allow >= 0 && len(c.log) >= c.allow {
		return fmt.Errorf("%s %s: %w", op, key, errKilled)
	}
	// The key's kind: its first segment, a host's session by name.
	c.log = append(c.log, op+" "+strings.SplitN(key, "/", 2)[0])
	return nil
}

func (c *killStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if err := c.req("put", key); err != nil {
		return err
	}
	return c.inner.Put(ctx, key, data, size)
}

func (c *killStore) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	if err := c.req("put", key); err != nil {
		return false, err
	}
	return c.inner.PutVerified(ctx, key, data, size)
}

func (c *killStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if err := c.req("put-if", key); err != nil {
		return "", err
	}
	return c.inner.PutIf(ctx, key, data, ifMatch)
}

func (c *killStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := c.req("get", key); err != nil {
		return nil, err
	}
	return c.inner.Get(ctx, key, off, n)
}

func (c *killStore) Stat(ctx context.Context, key string) (remote.Info, error) {
	if err := c.req("stat", key); err != nil {
		return remote.Info{}, err
	}
	return c.inner.Stat(ctx, key)
}

func (c *killStore) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if err := c.req("list", prefix); err != nil {
		return err
	}
	return c.inner.List(ctx, prefix, fn)
}

func (c *killStore) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := c.req("list-dirs", prefix); err != nil {
		return nil, err
	}
	return c.inner.ListDirs(ctx, prefix)
}

func (c *killStore) Delete(ctx context.Context, key string) error {
	if err := c.req("delete", key); err != nil {
		return err
	}
	return c.inner.Delete(ctx, key)
}

// A continuous commit of one small flush takes five requests on the
// local store: the pack holding the flush's chunks and the commit's tree
// nodes, the index file, the manifest, the session's compare-and-swap
// and the commit marker, no HEAD. The process is killed (kill -9) after
// each number of them, 0 to 4; after a purge revokes its session, the
// host's next process recovers its journal and backs up again; a second
// purge sweeps what nothing references. Every committed backup stays
// whole, no index file names a pack the store lacks, and the latest
// backup validates and restores the data directory.
func TestCommitAttackKilledBetweenTheFiveRequests(t *testing.T) {
	// The manifest is written create-only (PutIf).
	want := []string{"put packs", "put index", "put-if manifests", "put-if sessions", "put commits"}
	for allow := 0; allow <= len(want); allow++ {
		t.Run(fmt.Sprintf("after %d", allow), func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "store")
			os.MkdirAll(dir, 0o755)
			ls, err := local.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			cache := filepath.Join(t.TempDir(), "cache")
			open := func(st remote.Store, create bool) *Repo {
				r, err := Open(ctx, st, Options{CacheRoot: cache, Create: create, Log: quietLog()})
				if err != nil {
					t.Fatal(err)
				}
				r.GC = noWait
				return r
			}
			cs := &killStore{inner: ls}
			r := open(cs, true)
			data := filepath.Join(t.TempDir(), "data")
			a := caStart(t, r, data)
			// As continuousRun: nodes beside the file chunks, no listing of
			// the index files at the first commit.
			a.c.b.treeBeside, a.c.refreshed = true, time.Now()
			first := a.sst(1, "the first flush ")
			a.add(first)
			a.commit()
			second := a.sst(2, "the second flush ")
			a.add(second) // into the Packer's open pack: no request yet

			cs.arm(allow)
			err = a.c.commit(ctx)
			got := cs.requests()
			if allow == len(want) {
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("requests of a commit of one flush:\n got %q\nwant %q", got, want)
				}
			} else {
				// Killed after the compare-and-swap the backup is
				// committed: a failed marker is left to a purge (W5).
				if !errors.Is(err, errKilled) && !(allow == 4 && err == nil) {
					t.Fatalf("commit killed after %d requests: got %v", allow, err)
				}
				if !slices.Equal(got, want[:allow]) {
					t.Errorf("requests before the kill: got %q, want %q", got, want[:allow])
				}
			}
			// The process is gone: its session is revoked by a purge once
			// its lease has passed.
			r2 := open(ls, false)
			r2.GC = gc.Options{Heartbeat: time.Hour, Lease: 50 * time.Millisecond, Grace: -1, NewPackMargin: -1}
			time.Sleep(80 * time.Millisecond)
			quietPurge(t, r2, "purge revoking the killed process")
			if err := committedWhole(t, ls); err != nil {
				t.Fatalf("after the kill and a purge: INVARIANT BROKEN: %v", err)
			}

			// The host's next process: its journal, then both flushes.
			r3 := open(ls, false)
			b := caStart(t, r3, data)
			b.c.b.treeBeside = true
			b.add(first)
			b.add(second)
			b.commit()
			b.end()
			for i := range 2 {
				quietPurge(t, r3, fmt.Sprintf("purge %d after the restart", i))
			}
			if err := committedWhole(t, ls); err != nil {
				t.Fatalf("INVARIANT BROKEN: %v", err)
			}
			if ph := phantomPacks(t, ls); len(ph) > 0 {
				t.Fatalf("INVARIANT BROKEN: index files name packs the store lacks: %v", ph)
			}
			var latest string
			manifest.Commits(ctx, ls, func(o manifest.Object) error { latest = max(latest, o.Name); return nil })
			mustValidate(t, r3, latest)
			restoreAndCompare(t, r3, latest, data, []string{first, second})
		})
	}
}

// A continuous backup on a survey (remote/survey: no pack data): each
// commit's nodes go after the flush's file chunks in one pack, marked
// with their offset, and the survey keeps the nodes and drops the chunks.
// A mark that pointed past the first node, a node cut or a file chunk
// after the nodes would leave manifests unreadable on the survey (list,
// show, validate and the next backup read them there); a mixed pack kept
// whole would store the data a survey must not.
func TestCommitAttackSurveyKeepsCommitNodes(t *testing.T) {
	ctx := t.Context()
	tmp := t.TempDir()
	meta := filepath.Join(tmp, "meta")
	st, err := survey.Open(filepath.Join(tmp, "survey.log"), meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := Open(ctx, st, Options{CacheRoot: filepath.Join(tmp, "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	data := filepath.Join(tmp, "data")
	a := caStart(t, r, data)
	a.c.b.treeBeside, a.c.refreshed = true, time.Now()
	var fileBytes int64
	for gen := range 3 {
		rel := a.sst(gen+1, fmt.Sprintf("flush %d of the survey ", gen))
		fileBytes += a.add(rel).Size
		a.commit()
	}
	a.end()
	var names []string
	manifest.Commits(ctx, st, func(o manifest.Object) error { names = append(names, o.Name); return nil })
	if len(names) != 3 {
		t.Fatalf("committed: %v, want 3", names)
	}
	for _, n := range names {
		m, err := manifest.Get(ctx, st, n, ChunksOf(st))
		if err != nil {
			t.Fatalf("manifest %s on the survey: %v", n, err)
		}
		if got := len(slices.Collect(m.Refs())); got == 0 {
			t.Errorf("manifest %s on the survey lists no chunk", n)
		}
		if rep, err := r.Validate(ctx, ValidateOptions{Name: n}); err != nil || !rep.OK() {
			t.Errorf("validate %s on the survey: %v %+v", n, err, rep.Problems)
		}
	}
	// What the survey keeps of the packs: headers, trailers and nodes.
	var kept int64
	packs := 0
	filepath.WalkDir(filepath.Join(meta, "packs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				kept += fi.Size()
				packs++
			}
		}
		return nil
	})
	if packs != len(names) {
		t.Errorf("%d packs for %d commits of one flush each, want one each (nodes beside the chunks)", packs, len(names))
	}
	if kept == 0 || kept > fileBytes/4 {
		t.Errorf("the survey keeps %d bytes of packs for %d bytes of files: want the nodes, not the files", kept, fileBytes)
	}
	t.Logf("survey keeps %d bytes of packs for %d bytes of files", kept, fileBytes)
}
