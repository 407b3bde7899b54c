package gc

// Attacks on the purge's node cache (markcache.go). Tests named
// TestPurgeCacheAttack…Holds document attacks the code withstood.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/cachefile"
)

// mcaClock is a settable clock.
type mcaClock struct{ now time.Time }

func (c *mcaClock) Now() time.Time                                   { return c.now }
func (c *mcaClock) Sleep(ctx context.Context, d time.Duration) error { return nil }

// mcaStore serves nodes from a map, counting what it is asked for.
type mcaStore struct {
	nodes map[chunk.ID][]byte
	asked int
}

func (s *mcaStore) FetchChunks(ctx context.Context, ids []chunk.ID, fn func(chunk.ID, []byte) error) error {
	for _, id := range ids {
		s.asked++
		b, ok := s.nodes[id]
		if !ok {
			return errors.New("no such node")
		}
		if err := fn(id, b); err != nil {
			return err
		}
	}
	return nil
}

// TestPurgeCacheAttackCrashAndClocksHolds tried a purge killed between
// caching a node and stamping it (a node file with the file system's
// time), purges whose clocks jump ten years ahead and back between runs,
// a clock frozen at one instant, a cache opened by a second purge while
// the first still runs (its prune removing the first's nodes), and a
// node prune whose gc/nodes folder is a link to the cache folder's index/
// (inside the folder). Every fetch returns the node's own bytes (a pruned
// or missing node is read from the store again), no file outside the
// cache folder is removed or stamped. It held. (Observed: through the
// planted gc/nodes link the node prune removes the old files it finds
// under index/, inside the folder: a read later, no loss. Observed, not a loss: nodes stamped by a clock
// ten years ahead stay in the folder until a clock reaches that time.)
func TestPurgeCacheAttackCrashAndClocksHolds(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st := &mcaStore{nodes: map[chunk.ID][]byte{}}
	var ids []chunk.ID
	for i := range 20 {
		b := []byte{byte(i), 'n', 'o', 'd', 'e'}
		id := chunk.Sum(b)
		st.nodes[id] = b
		ids = append(ids, id)
	}
	fetch := func(c *Cache, want []chunk.ID) {
		t.Helper()
		got := 0
		if err := c.Nodes(st, chunk.Namer{}).FetchChunks(ctx, want, func(id chunk.ID, b []byte) error {
			if chunk.Sum(b) != id {
				t.Errorf("node %s: other bytes", id)
			}
			got++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got != len(want) {
			t.Errorf("%d of %d nodes", got, len(want))
		}
	}
	base := time.Now()
	clk := &mcaClock{now: base}
	c1 := OpenCache(dir, clk)
	fetch(c1, ids)
	// A crash between the write and the stamp: a node file with the
	// file system's time, unstamped.
	crashed := []byte("crashed node")
	cid := chunk.Sum(crashed)
	st.nodes[cid] = crashed
	if !cachefile.Write(c1.root, nodeName(cid), crashed) {
		t.Fatal("write")
	}
	c1.Close()
	for _, skew := range []time.Duration{10 * 365 * 24 * time.Hour, -10 * 365 * 24 * time.Hour, 0, time.Hour} {
		clk.now = base.Add(skew)
		c := OpenCache(dir, clk)
		fetch(c, append(ids[:10:10], cid))
		if err := c.prune(); err != nil {
			t.Fatal(err)
		}
		fetch(c, ids)
		c.Close()
	}
	// A frozen clock and two purges at once: the second's prune removes
	// what the first used before it opened; the first reads them again.
	clk.now = base.Add(2 * time.Hour)
	a := OpenCache(dir, clk)
	fetch(a, ids)
	clk.now = clk.now.Add(time.Minute)
	b := OpenCache(dir, clk)
	fetch(b, ids[:5])
	if err := b.prune(); err != nil {
		t.Fatal(err)
	}
	asked := st.asked
	fetch(a, ids)
	if st.asked-asked != 15 {
		t.Logf("after the other purge's prune %d nodes were read again", st.asked-asked)
	}
	a.Close()
	b.Close()
	// gc/nodes a link to index/ (inside the folder); files outside
	// untouched.
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644)
	old := time.Unix(1e9, 0)
	os.Chtimes(filepath.Join(outside, "keep"), old, old)
	os.MkdirAll(filepath.Join(dir, "index", "h"), 0o755)
	os.WriteFile(filepath.Join(dir, "index", "h", "f"), []byte("x"), 0o644)
	os.Chtimes(filepath.Join(dir, "index", "h", "f"), old, old)
	os.Symlink(outside, filepath.Join(dir, "index", "out"))
	os.RemoveAll(filepath.Join(dir, "gc", "nodes"))
	os.Symlink(filepath.Join("..", "index"), filepath.Join(dir, "gc", "nodes"))
	clk.now = base.Add(3 * time.Hour)
	c := OpenCache(dir, clk)
	fetch(c, ids)
	if err := c.prune(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if fi, err := os.Stat(filepath.Join(outside, "keep")); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("a file outside the cache folder was removed or stamped: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index", "h", "f")); err != nil {
		t.Logf("the node prune removed index/h/f through the planted link (inside the folder: costs a read): %v", err)
	}
}
