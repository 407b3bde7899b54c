package cassback

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/manifest/sstable"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/watch"
)

// snapshotLive records the live files of the user keyspaces and a hash of
// each file's content.
func snapshotLive(t *testing.T, n *nodegen.Node, kss []string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	for _, f := range n.LiveFiles {
		ks := strings.SplitN(f, "/", 2)[0]
		if !slices.Contains(kss, ks) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.Dir, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = sha256.Sum256(b)
	}
	return out
}

func treeHashes(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = sha256.Sum256(b)
		return nil
	})
	return out
}

// TestContinuousSimulator runs continuous backup beside a simulated
// Cassandra node that flushes (transaction log ADD/COMMIT), compacts,
// rewrites Statistics.db in place, snapshots, and drops a table. After each
// change it waits past the coalescing interval and records the live set.
// Afterwards a restore at each recorded moment must equal that live set,
// and no manifest may name an incomplete SSTable.
func TestContinuousSimulator(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	kss := []string{"ks_app", "metrics"}
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 31, TotalBytes: 6 << 20, Backups: true, InFlight: true,
		Keyspaces: []nodegen.KeyspaceSpec{
			{Name: "ks_app", Tables: []nodegen.TableSpec{{Name: "events", Weight: 2}, {Name: "users", Weight: 1, Indexes: []string{"users_email_idx"}}}},
			{Name: "metrics", Tables: []nodegen.TableSpec{{Name: "samples", Weight: 2}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	interval := 100 * time.Millisecond
	stop := make(chan struct{})
	type result struct {
		st  ContinuousStats
		err error
	}
	res := make(chan result, 1)
	go func() {
		st, err := r.Continuous(ctx, stop, ContinuousOptions{
			BackupOptions:    BackupOptions{DataDirs: []string{data}, Host: "sim", Threads: 2},
			ManifestInterval: interval, ReportInterval: -1,
			Watch: watch.Options{Debounce: 20 * time.Millisecond},
		})
		res <- result{st, err}
	}()
	type moment struct {
		at   time.Time
		live map[string][32]byte
		what string
	}
	var moments []moment
	// record waits past the coalescing interval until the backup has caught
	// up with the node (the latest manifests name exactly the live files),
	// then records the moment and the live set.
	record := func(what string) {
		time.Sleep(2 * interval)
		live := snapshotLive(t, node, kss)
		sums := map[string]chunk.ID{} // what the manifests must name
		for f := range live {
			b, err := os.ReadFile(filepath.Join(node.Dir, filepath.FromSlash(f)))
			if err != nil {
				t.Fatal(err)
			}
			sums[f] = chunk.Sum(b)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ms, err := Select(ctx, r.Store, "sim", "", kss, time.Now())
			if err == nil {
				ms = readWhole(t, r.Store, ms)
				n := 0
				ok := true
				for _, m := range ms {
					for _, tb := range m.Tables {
						for _, f := range tb.Files {
							n++
							ok = ok && sums[f.Path] == f.Sum
						}
					}
				}
				if ok && n == len(live) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the backup did not catch up within 30 s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		moments = append(moments, moment{time.Now(), live, what})
	}
	record("start")
	ops := []struct {
		what string
		do   func() error
	}{
		{"flush events", func() error { _, err := node.Flush("ks_app", "events", 256<<10); return err }},
		{"flush samples", func() error { _, err := node.Flush("metrics", "samples", 256<<10); return err }},
		{"rewrite statistics", func() error {
			s := node.Keyspace("ks_app")[0]
			return node.RewriteStatistics("ks_app", s.Table, s.Gen)
		}},
		{"snapshot", func() error { return node.Snapshot("snap1") }},
		{"compact events", func() error {
			var gens []string
			for _, s := range node.Keyspace("ks_app") {
				if s.Table == "events" && s.Index == "" {
					gens = append(gens, s.Gen)
				}
			}
			_, err := node.Compact("ks_app", "events", gens)
			return err
		}},
		{"flush users", func() error { _, err := node.Flush("ks_app", "users", 128<<10); return err }},
		{"flush events again", func() error { _, err := node.Flush("ks_app", "events", 128<<10); return err }},
	}
	for _, op := range ops {
		if err := op.do(); err != nil {
			t.Fatalf("%s: %v", op.what, err)
		}
		record(op.what)
	}
	close(stop)
	out := <-res
	if out.err != nil {
		t.Fatal(out.err)
	}
	t.Logf("continuous: %d SSTables, %d manifests, latency median %v p99 %v over %d SSTables",
		out.st.SSTables, out.st.Manifests, out.st.LatencyPercentile(50), out.st.LatencyPercentile(99), len(out.st.Latency))

	for i, m := range moments {
		ms, err := Select(ctx, r.Store, "sim", "", kss, m.at)
		if err != nil {
			t.Fatalf("moment %d (%s): %v", i, m.what, err)
		}
		for _, man := range readWhole(t, r.Store, ms) {
			checkComplete(t, man)
		}
		dst := filepath.Join(t.TempDir(), fmt.Sprint("m", i))
		if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
			t.Fatalf("moment %d (%s): restore: %v", i, m.what, err)
		}
		got := treeHashes(t, dst)
		if !maps.Equal(got, m.live) {
			t.Errorf("moment %d (%s): restore has %d files, live set had %d (first difference %s)", i, m.what, len(got), len(m.live), firstDiff(got, m.live))
		}
	}
}

func firstDiff(a, b map[string][32]byte) string {
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if w, ok := b[k]; !ok {
			return "extra " + k
		} else if w != a[k] {
			return "content of " + k
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			return "missing " + k
		}
	}
	return ""
}

// checkComplete fails if a manifest names a file of an SSTable whose
// TOC.txt (when the version has one) is not in the manifest too, or a
// temporary file.
func checkComplete(t *testing.T, m *manifest.Manifest) {
	t.Helper()
	prefixes := map[string]map[string]bool{}
	for _, tb := range m.Tables {
		for _, f := range tb.Files {
			p, err := sstable.ParsePath(f.Path)
			if err != nil || p.Temporary || p.Kind != sstable.KindComponent {
				t.Errorf("manifest %s names %s, not a final SSTable component", m.Name, f.Path)
				continue
			}
			key := filepath.Dir(f.Path) + "/" + p.Prefix
			if prefixes[key] == nil {
				prefixes[key] = map[string]bool{}
			}
			prefixes[key][p.Component] = true
		}
	}
	for k, comps := range prefixes {
		if !comps["TOC.txt"] || !comps["Data.db"] {
			t.Errorf("manifest %s names an incomplete SSTable %s: %v", m.Name, k, comps)
		}
	}
}

// TestContinuousIgnoreExisting: SSTables present at start-up are recorded
// but not read or uploaded; SSTables flushed later are backed up.
func TestContinuousIgnoreExisting(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 33, TotalBytes: 4 << 20,
		Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	existing := ksFiles(node.LiveFiles, "ks")
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	end := startContinuous(t, r, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "n"},
		IgnoreExisting: true, ManifestInterval: 50 * time.Millisecond, ReportInterval: -1, Watch: watch.Options{Debounce: 20 * time.Millisecond}})
	time.Sleep(500 * time.Millisecond)
	s, err := node.Flush("ks", "t", 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	st := end()
	if st.BytesRead > 2*s.Bytes {
		t.Errorf("read %d bytes; want only the new SSTable's %d", st.BytesRead, s.Bytes)
	}
	ms, err := Select(ctx, r.Store, "n", "", []string{"ks"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	unstored, stored := 0, 0
	for _, tb := range readWhole(t, r.Store, ms)[0].Tables {
		for _, f := range tb.Files {
			if f.Unstored {
				unstored++
				if !slices.Contains(existing, f.Path) {
					t.Errorf("%s unstored but not pre-existing", f.Path)
				}
			} else {
				stored++
			}
		}
	}
	if unstored != len(existing) || stored != len(s.Components) {
		t.Errorf("latest manifest: %d unstored, %d stored; want %d and %d", unstored, stored, len(existing), len(s.Components))
	}
	dst := filepath.Join(t.TempDir(), "r")
	res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Restored) != stored || len(res.Skipped) != unstored {
		t.Errorf("restore: %d restored, %d skipped; want %d and %d", len(res.Restored), len(res.Skipped), stored, unstored)
	}
	if rep, err := r.Validate(ctx, ValidateOptions{Checksum: true}); err != nil || !rep.OK() {
		t.Errorf("validate: %v %+v", err, rep.Problems)
	}
}

// A continuous backup writes an index file a commit; its writer compacts
// them, so after 40 flushes committed one by one the host has at most
// CompactAt (16) index files, not 40, and the latest backup still
// restores the live files byte for byte and validates.
func TestContinuousCompactsIndexFiles(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 34, TotalBytes: 1 << 20,
		Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	end := startContinuous(t, r, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "n"},
		ManifestInterval: 20 * time.Millisecond, ReportInterval: -1, Watch: watch.Options{Debounce: 10 * time.Millisecond}})
	// Each flush waits for a commit that names it, so each makes an
	// index file of its own.
	for i := range 40 {
		s, err := node.Flush("ks", "t", int64(8<<10+i))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, func() bool { return latestNames(t, r, "n", "ks", s.Prefix+"-Data.db") })
	}
	st := end()
	files := 0
	if err := r.Store.List(ctx, "index/n/", func(remote.Info) error { files++; return nil }); err != nil {
		t.Fatal(err)
	}
	if st.Manifests < 40 {
		t.Fatalf("%d manifests written; the test needs one a flush", st.Manifests)
	}
	if files > 16 {
		t.Errorf("%d index files after %d commits; the writer should keep at most 16", files, st.Manifests)
	}
	ms, err := Select(ctx, r.Store, "n", "", []string{"ks"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "r")
	if _, err := r.Restore(ctx, ms, RestoreOptions{DataDir: dst, NoChown: true}); err != nil {
		t.Fatal(err)
	}
	want := snapshotLive(t, node, []string{"ks"})
	if got := treeHashes(t, dst); !maps.Equal(got, want) {
		t.Errorf("restored %d files, want the %d live ones byte for byte", len(got), len(want))
	}
	if rep, err := r.Validate(ctx, ValidateOptions{Checksum: true}); err != nil || !rep.OK() {
		t.Errorf("validate: %v %+v %v", err, rep.Problems, rep.BadIndex)
	}
	t.Logf("%d manifests, %d index files left", st.Manifests, files)
}

// waitFor polls cond until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", limit)
		}
	}
}

// latestNames reports whether the latest committed backup of the
// keyspace names the file.
func latestNames(t *testing.T, r *Repo, host, ks, path string) bool {
	t.Helper()
	ms, err := Select(t.Context(), r.Store, host, "", []string{ks}, time.Now())
	if err != nil || len(ms) == 0 {
		return false
	}
	for _, tb := range readWhole(t, r.Store, ms)[0].Tables {
		for _, f := range tb.Files {
			if f.Path == path {
				return true
			}
		}
	}
	return false
}

// A continuous backup lists the index files again (its own once a
// heartbeat, every host's once an OthersRefresh), so it deduplicates
// against chunks another host stored after it started (and against the
// files that replace ones a writer compacted away): host b flushes an
// SSTable that host a, an identical node, backed up after b started, and
// uploads next to nothing of it. With the default OthersRefresh (an hour)
// it lists other hosts' files no more during the test.
func TestContinuousLearnsOtherHostsNewIndexFiles(t *testing.T) {
	for _, hourly := range []bool{false, true} {
		t.Run(fmt.Sprint("hourly=", hourly), func(t *testing.T) { learnOtherHostsNewIndexFiles(t, hourly) })
	}
}

func learnOtherHostsNewIndexFiles(t *testing.T, hourly bool) {
	ctx := t.Context()
	cfg := nodegen.Config{Seed: 35, TotalBytes: 1 << 20, Keyspaces: []nodegen.KeyspaceSpec{{Name: "ks",
		Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}, {Name: "u", Weight: 1}}}}}
	dataA, dataB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	nodeA, err := nodegen.Generate(dataA, cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodeB, err := nodegen.Generate(dataB, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	rb := gcRepo(t, dir, true)
	rb.GC.Heartbeat, rb.GC.Lease = 100*time.Millisecond, time.Minute
	lists := &listLog{Store: rb.Store}
	rb.Store = withCond{lists, rb.Store.(remote.Conditional)}
	others := 100 * time.Millisecond
	if hourly {
		others = 0 // the default
	}
	end := startContinuous(t, rb, ContinuousOptions{BackupOptions: BackupOptions{DataDirs: []string{dataB}, Host: "b"},
		IgnoreExisting: true, ManifestInterval: 20 * time.Millisecond, ReportInterval: -1, OthersRefresh: others,
		Watch: watch.Options{Debounce: 10 * time.Millisecond}})
	time.Sleep(300 * time.Millisecond) // b's start-up: its index is read now
	// a stores an SSTable b will have too.
	sa, err := nodeA.Flush("ks", "t", 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	ra := gcRepo(t, dir, false)
	poll := gcRepo(t, dir, false) // reads b's manifests; not counted
	if _, err := ra.Backup(ctx, BackupOptions{DataDirs: []string{dataA}, Host: "a"}); err != nil {
		t.Fatal(err)
	}
	// A commit of b's, a heartbeat later, lists the index files again.
	time.Sleep(200 * time.Millisecond)
	su, err := nodeB.Flush("ks", "u", 8<<10)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool { return latestNames(t, poll, "b", "ks", su.Prefix+"-Data.db") })
	sb, err := nodeB.Flush("ks", "t", 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Prefix != sa.Prefix || sb.Bytes != sa.Bytes {
		t.Fatalf("the nodes' SSTables differ: %s (%d bytes) and %s (%d)", sa.Prefix, sa.Bytes, sb.Prefix, sb.Bytes)
	}
	waitFor(t, 20*time.Second, func() bool { return latestNames(t, poll, "b", "ks", sb.Prefix+"-Data.db") })
	st := end()
	all, own := lists.count("index/"), lists.count("index/b/")
	if hourly {
		if all > 1 || own < 2 {
			t.Errorf("b listed every host's index files %d times and its own %d: want at most once (when a lookup first missed) and at each heartbeat's commit", all, own)
		}
		return
	}
	if all < 2 {
		t.Errorf("b listed every host's index files %d times; want again after its start", all)
	}
	if st.BytesNew > sb.Bytes/4 {
		t.Errorf("b uploaded %d bytes for an SSTable of %d that a had stored", st.BytesNew, sb.Bytes)
	}
	t.Logf("b uploaded %d bytes; the SSTable has %d", st.BytesNew, sb.Bytes)
}

// listLog records the prefixes its store lists.
type listLog struct {
	remote.Store
	mu    sync.Mutex
	lists []string
}

func (l *listLog) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	l.mu.Lock()
	l.lists = append(l.lists, prefix)
	l.mu.Unlock()
	return l.Store.List(ctx, prefix, fn)
}

// count returns how many times prefix was listed.
func (l *listLog) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.lists {
		if p == prefix {
			n++
		}
	}
	return n
}

// startContinuous starts a continuous backup by r; end stops it and
// returns its stats, failing the test on its error.
func startContinuous(t *testing.T, r *Repo, opts ContinuousOptions) (end func() ContinuousStats) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan error, 1)
	var st ContinuousStats
	go func() {
		var err error
		st, err = r.Continuous(t.Context(), stop, opts)
		done <- err
	}()
	return func() ContinuousStats {
		t.Helper()
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return st
	}
}
