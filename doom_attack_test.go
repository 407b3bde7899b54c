package cassback

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/remote/local"
)

// doomInjector writes, just before the first doom list a sweep writes,
// another doom list for the same set naming the sweep's packs and extra
// ones: what a second purge writes when it lost its lease (or was stopped
// past it) between its renewal and its doom write, from a mark of its own.
type doomInjector struct {
	*local.Store
	mu    sync.Mutex
	done  bool
	extra []chunk.ID
}

func (d *doomInjector) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	d.mu.Lock()
	inject := !d.done && ifMatch == "" && strings.HasPrefix(key, "gc/condemned/") && strings.HasSuffix(key, "/doom")
	if inject {
		d.done = true
	}
	d.mu.Unlock()
	if inject {
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			return "", err
		}
		packs, _ := doc["packs"].([]any)
		for _, id := range d.extra {
			packs = append(packs, id.String())
		}
		doc["packs"] = packs
		b, _ := json.Marshal(doc)
		if _, err := d.Store.PutIf(ctx, key, b, ""); err != nil {
			return "", err
		}
	}
	return d.Store.PutIf(ctx, key, data, ifMatch)
}

// The long-mode simulator (seed 46826 of c6b8ee2, seen once under load):
// purge P1 renews its lease, is stopped past it, wakes and writes its
// set's doom list from its old mark before it notices the loss; purge P0
// had listed the sets (and their doom lists) before that write, so it
// chose its keepers without forgetting P1's packs. P0's own doom write
// then fails (create-only) and it adopted P1's list — deleting a pack its
// own mark keeps, whose chunk a committed backup names. A doom list that
// appears after the sweep's listing must stop the sweep before it
// deletes anything.
func TestAttackDoomListOfAnotherPurge(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(dir, 0o755)
	ls, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	inj := &doomInjector{Store: ls}
	r, err := Open(ctx, inj, Options{CacheRoot: filepath.Join(t.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	r.GC = noWait
	storeChunk(t, r, index.New(), "x", []byte(strings.Repeat("nobody needs me ", 3000))) // condemned and swept
	kept := []byte(strings.Repeat("a backup needs me ", 3000))
	name, err := backupOne(t, r, "c", kept)
	if err != nil || !committed(t, r.Store, name) {
		t.Fatalf("backup: %v", err)
	}
	inj.extra = []chunk.ID{packOf(t, r, chunk.Sum(kept))}
	res, err := r.Purge(ctx, PurgeOptions{Host: "x", Before: time.Unix(0, 0), Holder: "p0"})
	t.Logf("purge: %v, deleted %d, blocked %q", err, res.GC.Deleted, res.GC.Blocked)
	mustValidate(t, r, name)
}
