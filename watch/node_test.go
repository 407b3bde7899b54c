package watch

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest/sstable"
)

// scanKeys is what a one-shot scan finds: the set the watcher must report.
func scanKeys(t *testing.T, root string, opt sstable.ScanOptions) []string {
	t.Helper()
	opt.MaxSkipped = -1
	res, err := sstable.Scan(root, opt)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range res.SSTables {
		out = append(out, s.Dir+"/"+s.Prefix)
	}
	slices.Sort(out)
	return out
}

func gens(n *nodegen.Node, ks, table string) []string {
	var out []string
	for _, s := range n.Keyspace(ks) {
		if s.Table == table && s.Index == "" {
			out = append(out, s.Gen)
		}
	}
	return out
}

// Realistic nodes of several versions, driven through flush, compaction,
// Statistics rewrite, snapshot and incremental backups.
func TestNodeOperations(t *testing.T) {
	for _, v := range []string{"nb", "la", "ka", "da"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			n, err := nodegen.Generate(root, nodegen.Config{Seed: 3, TotalBytes: 2 << 20, Version: v, Snapshots: true, Backups: true, InFlight: true})
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, root, harnessOpt{})
			evs := h.sync()
			if got, want := keys(kinds(evs, Ready)), scanKeys(t, root, sstable.ScanOptions{}); !slices.Equal(got, want) {
				t.Fatalf("ready at start-up:\n got %v\nwant %v", got, want)
			}
			if evs[len(evs)-1].Kind != Synced {
				t.Errorf("last start-up event %v, want synced", evs[len(evs)-1].Kind)
			}
			var idx bool
			for _, ev := range evs {
				if ev.SSTable.Keyspace == "system" {
					t.Errorf("system sstable reported: %s", ev.SSTable.Dir)
				}
				idx = idx || ev.SSTable.Index != ""
			}
			if !idx {
				t.Errorf("no secondary-index sstable reported")
			}
			for _, d := range h.src.watchedDirs() {
				if b := path.Base(d); b == "snapshots" || b == "backups" || strings.Contains(d, "/snapshots/") || strings.Contains(d, "/backups/") {
					t.Errorf("watching %s", d)
				}
			}

			// Flush: the table's SSTable and its index's, and no event for
			// the incremental-backup links.
			fl, err := n.Flush("ks_app", "users", 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			evs = h.step()
			if len(evs) != 2 || len(kinds(evs, Ready)) != 2 || !slices.Contains(keys(evs), fl.Prefix) {
				t.Fatalf("flush %s: events %v, want ready for it and its index", fl.Prefix, describe(evs))
			}

			// Compaction: Ready for the output before Gone for the inputs.
			ks, table, in := compactable(t, n)
			var inKeys []string
			for _, s := range n.Keyspace(ks) {
				if s.Table == table && s.Index == "" && slices.Contains(in, s.Gen) {
					inKeys = append(inKeys, s.Prefix)
				}
			}
			out, err := n.Compact(ks, table, in)
			if err != nil {
				t.Fatal(err)
			}
			evs = h.step()
			want := append([]string{"ready " + out.Prefix}, func() []string {
				var g []string
				for _, k := range inKeys {
					g = append(g, "gone "+k)
				}
				return g
			}()...)
			got := describe(evs)
			if len(got) != len(want) || got[0] != want[0] || !sameSet(got[1:], want[1:]) {
				t.Fatalf("compaction: events %v, want %v", got, want)
			}

			// Statistics rewritten via .tmp and rename.
			target := out
			if err := n.RewriteStatistics(ks, table, out.Gen); err != nil {
				t.Fatal(err)
			}
			evs = h.step()
			if d := describe(evs); !slices.Equal(d, []string{"rewritten " + target.Prefix}) {
				t.Fatalf("statistics rewrite: events %v", d)
			}
			if c := evs[0].Changed; len(c) != 1 || !strings.HasSuffix(c[0], "-Statistics.db") {
				t.Errorf("changed = %v, want Statistics.db", c)
			}

			// Snapshots are invisible.
			if err := n.Snapshot("later"); err != nil {
				t.Fatal(err)
			}
			if evs := h.step(); len(evs) != 0 {
				t.Errorf("snapshot: events %v", describe(evs))
			}

			// A rescan agrees with everything reported.
			h.clk.Advance(h.w.opts.RescanInterval)
			if d := describe(h.sync()); !slices.Equal(d, []string{"synced"}) {
				t.Errorf("rescan: events %v, want only synced", d)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
