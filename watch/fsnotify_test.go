package watch

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest/sstable"
)

// The real thing: fsnotify on a generated node, with short timeouts.
func TestFSNotify(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	n, err := nodegen.Generate(root, nodegen.Config{Seed: 5, TotalBytes: 2 << 20, Backups: true})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	w, err := New(Options{Roots: []string{root}, Debounce: 20 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan Event, 1024)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", logs.String())
		}
	})

	// next collects events until until says stop, or fails after a bound.
	var all []Event
	next := func(what string, until func([]Event) bool) []Event {
		t.Helper()
		var got []Event
		deadline := time.After(10 * time.Second)
		for !until(got) {
			select {
			case ev := <-out:
				got = append(got, ev)
				all = append(all, ev)
			case <-deadline:
				t.Fatalf("%s: gave up after 10s with %v", what, describe(got))
			}
		}
		return got
	}
	has := func(k Kind, key string) func([]Event) bool {
		return func(evs []Event) bool {
			return slices.ContainsFunc(evs, func(ev Event) bool { return ev.Kind == k && ev.SSTable.Dir+"/"+ev.SSTable.Prefix == key })
		}
	}

	evs := next("start-up", func(evs []Event) bool { return len(evs) > 0 && evs[len(evs)-1].Kind == Synced })
	if got, want := keys(kinds(evs, Ready)), scanKeys(t, root, sstable.ScanOptions{}); !slices.Equal(got, want) {
		t.Fatalf("ready at start-up:\n got %v\nwant %v", got, want)
	}

	fl, err := n.Flush("ks_app", "users", 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	next("flush", has(Ready, fl.Prefix))

	ks, table, in := compactable(t, n)
	var gone []string
	for _, s := range n.Keyspace(ks) {
		if s.Table == table && s.Index == "" && slices.Contains(in, s.Gen) {
			gone = append(gone, s.Prefix)
		}
	}
	c, err := n.Compact(ks, table, in)
	if err != nil {
		t.Fatal(err)
	}
	next("compaction", func(evs []Event) bool {
		return has(Ready, c.Prefix)(evs) && has(Gone, gone[0])(evs) && has(Gone, gone[1])(evs)
	})

	if err := n.RewriteStatistics(ks, table, c.Gen); err != nil {
		t.Fatal(err)
	}
	target := c.Prefix
	next("statistics rewrite", has(Rewritten, target))

	// A keyspace created with mkdir -p and filled at once.
	tdir := filepath.Join(root, "newks", "t-"+tableID)
	writeSSTable(t, tdir, "nb-1-big")
	next("new keyspace", has(Ready, "newks/t-"+tableID+"/nb-1-big"))
	if err := os.RemoveAll(filepath.Join(root, "newks")); err != nil {
		t.Fatal(err)
	}
	next("dropped keyspace", has(Gone, "newks/t-"+tableID+"/nb-1-big"))

	if err := n.Snapshot("snap"); err != nil {
		t.Fatal(err)
	}
	// Nothing about the snapshot; a marker SSTable written afterwards
	// proves the events in between were seen.
	writeSSTable(t, filepath.Join(root, "ks_app", filepath.Base(filepath.Dir(filepath.Join(root, fl.Prefix)))), "nb-999-big")
	evs = next("after snapshot", func(evs []Event) bool { return len(evs) > 0 })
	if d := describe(evs); len(d) != 1 || d[0] != "ready "+filepath.Dir(fl.Prefix)+"/nb-999-big" {
		t.Errorf("after snapshot: events %v, want only the marker", d)
	}

	for _, ev := range all {
		if err := w.Release(ev); err != nil {
			t.Error(err)
		}
	}
	if got := heldFiles(t, w.roots[0].hold); len(got) > 8 { // at most a prepared head
		t.Errorf("holds after releasing all: %v", got)
	}
}

// compactable picks a user table with at least two SSTables and returns two
// of their generations.
func compactable(t *testing.T, n *nodegen.Node) (ks, table string, in []string) {
	t.Helper()
	for _, ti := range n.Tables {
		if ti.System {
			continue
		}
		if g := gens(n, ti.Keyspace, ti.Name); len(g) >= 2 {
			return ti.Keyspace, ti.Name, g[:2]
		}
	}
	t.Fatal("no table with two sstables")
	return "", "", nil
}
