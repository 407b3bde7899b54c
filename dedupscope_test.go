package cassback

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote/local"
)

// With --dedup-scope host a backup deduplicates within its own host's
// chunks only: it lists and reads no other host's index files, and stores
// what another host stored already. With the default scope (store) it
// stores next to nothing of an identical node's data.
func TestDedupScope(t *testing.T) {
	for _, scope := range []string{"", DedupStore, DedupHost} {
		t.Run("scope="+scope, func(t *testing.T) {
			ctx := t.Context()
			root := t.TempDir()
			a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
			for _, d := range []string{a, b} {
				if _, err := nodegen.Generate(d, nodegen.Config{Seed: 8, TotalBytes: 2 << 20}); err != nil {
					t.Fatal(err)
				}
			}
			ls, err := local.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			st := &requestLog{Store: ls}
			r, err := Open(ctx, withCond{st, ls}, Options{CacheRoot: filepath.Join(root, "cache"), Create: true, Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{a}, Host: "a"}); err != nil {
				t.Fatal(err)
			}
			st.take()
			sum, err := r.Backup(ctx, BackupOptions{DataDirs: []string{b}, Host: "b", DedupScope: scope})
			if err != nil {
				t.Fatal(err)
			}
			_, lists := st.take()
			others := slices.ContainsFunc(lists, func(p string) bool { return p == "index/" || strings.HasPrefix(p, "index/a") })
			if scope == DedupHost {
				if others || sum.BytesNew < sum.BytesTotal/2 {
					t.Errorf("scope host: listed %q, stored %d of %d bytes; want no other host's index files listed, the data stored", lists, sum.BytesNew, sum.BytesTotal)
				}
				return
			}
			if !others || sum.BytesNew > sum.BytesTotal/10 {
				t.Errorf("scope %q: listed %q, stored %d of %d bytes; want host a's files listed, its chunks not stored again", scope, lists, sum.BytesNew, sum.BytesTotal)
			}
		})
	}
	if _, err := gcRepo(t, t.TempDir(), true).Backup(t.Context(), BackupOptions{DataDirs: []string{t.TempDir()}, Host: "h", DedupScope: "dc"}); err == nil || !strings.Contains(err.Error(), `dedup scope "dc"`) {
		t.Errorf("scope dc: %v; want an error naming it", err)
	}
}
