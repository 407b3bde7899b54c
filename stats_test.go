package cassback

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/watch"
)

func TestHistogram(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		obs     []time.Duration
		count   uint64
		le5ms   uint64 // cumulative at the first bound
		le1s    uint64 // cumulative at 1 s
		sum     time.Duration
		maximum time.Duration
	}{
		{"empty", nil, 0, 0, 0, 0, 0},
		{"on a bound", []time.Duration{5 * ms}, 1, 1, 1, 5 * ms, 5 * ms},
		{"spread", []time.Duration{ms, 6 * ms, 900 * ms, 2 * time.Second}, 4, 1, 3, 2907 * ms, 2 * time.Second},
		{"above every bound", []time.Duration{time.Hour}, 1, 0, 0, time.Hour, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			for _, d := range tc.obs {
				h.Observe(d)
			}
			s := h.Snapshot()
			at := func(b time.Duration) uint64 {
				for i, x := range s.Bounds {
					if x == b {
						return s.Cumulative[i]
					}
				}
				t.Fatalf("no bound %v", b)
				return 0
			}
			if s.Count != tc.count || at(5*ms) != tc.le5ms || at(time.Second) != tc.le1s || s.Sum != tc.sum || s.Max != tc.maximum {
				t.Errorf("got count %d, <=5ms %d, <=1s %d, sum %v, max %v; want %d, %d, %d, %v, %v",
					s.Count, at(5*ms), at(time.Second), s.Sum, s.Max, tc.count, tc.le5ms, tc.le1s, tc.sum, tc.maximum)
			}
			if last := s.Cumulative[len(s.Cumulative)-1]; last > s.Count {
				t.Errorf("last bucket %d > count %d", last, s.Count)
			}
		})
	}
}

func TestStatsRequests(t *testing.T) {
	s := NewStats()
	if ok, err := s.StoreReachable(); !ok || err != nil {
		t.Fatalf("before any request: got %v, %v; want reachable", ok, err)
	}
	down := remote.Transient(errors.New("connection refused"))
	steps := []struct {
		call      remote.Call
		reachable bool
	}{
		{remote.Call{Kind: remote.KindPut, Bytes: 100, Dur: 3 * time.Millisecond}, true},
		{remote.Call{Kind: remote.KindGet, Err: fs.ErrNotExist}, true},
		{remote.Call{Kind: remote.KindPutIf, Err: fmt.Errorf("put-if x: %w", remote.ErrPrecondition)}, true},
		{remote.Call{Kind: remote.KindPut, Err: down}, false},
		{remote.Call{Kind: remote.KindHead, Err: context.Canceled}, false}, // says nothing of the store
		{remote.Call{Kind: remote.KindList}, true},
		{remote.Call{Kind: "NOSUCH"}, true}, // ignored
	}
	for i, st := range steps {
		s.ObserveRequest(st.call)
		ok, err := s.StoreReachable()
		if ok != st.reachable || (err != nil) == ok {
			t.Errorf("step %d (%s %v): reachable %v, %v; want %v", i, st.call.Kind, st.call.Err, ok, err, st.reachable)
		}
		if !ok && !errors.Is(err, down) {
			t.Errorf("step %d: error %v, want the failed request's", i, err)
		}
	}
	want := map[[2]string]int64{
		{remote.KindPut, OutcomeOK}: 1, {remote.KindGet, OutcomeNotFound}: 1, {remote.KindPutIf, OutcomePrecondition}: 1,
		{remote.KindPut, OutcomeError}: 1, {remote.KindHead, OutcomeCanceled}: 1, {remote.KindList, OutcomeOK}: 1,
	}
	for _, rc := range s.Requests() {
		if w := want[[2]string{rc.Kind, rc.Outcome}]; rc.N != w {
			t.Errorf("requests %s %s: got %d, want %d", rc.Kind, rc.Outcome, rc.N, w)
		}
	}
	if n := len(s.Requests()); n != len(requestKinds)*len(outcomes) {
		t.Errorf("Requests lists %d pairs, want every one (%d)", n, len(requestKinds)*len(outcomes))
	}
	if got := s.BytesUploaded.Load(); got != 100 {
		t.Errorf("bytes uploaded: got %d, want 100 (failed requests send nothing)", got)
	}
	if got := s.Errors()[ErrorStore]; got != 1 {
		t.Errorf("store errors: got %d, want 1", got)
	}
	if d := s.RequestDurations()[remote.KindPut]; d.Count != 2 || d.Max != 3*time.Millisecond {
		t.Errorf("PUT durations: count %d max %v, want 2 and 3ms", d.Count, d.Max)
	}
	for _, op := range []string{"put", "put", "stat", "list-dirs", "list", "open s3"} {
		s.ObserveRetry(op, down)
	}
	if r, want := s.Retries(), map[string]int64{"PUT": 2, "HEAD": 1, "LIST": 2, "open s3": 1}; !maps.Equal(r, want) {
		t.Errorf("retries: got %v, want %v", r, want)
	}
}

func TestStatsRPO(t *testing.T) {
	var nilStats *Stats // the engine's updates are no-ops without Stats
	nilStats.pendingSince(time.Now())
	nilStats.setPending(time.Now())
	nilStats.addError(ErrorFile, 1)
	nilStats.committed("ks", time.Now())
	if p := nilStats.begin("restore"); p != nil {
		t.Fatal("begin on nil Stats: got a Progress")
	}

	s := NewStats()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	if got := s.RPO(t0); got != 0 {
		t.Fatalf("nothing pending: RPO %v, want 0", got)
	}
	s.pendingSince(t0.Add(2 * time.Second))
	s.pendingSince(t0) // older: kept
	s.pendingSince(t0.Add(time.Second))
	if got := s.RPO(t0.Add(10 * time.Second)); got != 10*time.Second {
		t.Errorf("RPO: got %v, want 10s (the oldest pending)", got)
	}
	if got := s.RPO(t0.Add(-time.Second)); got != 0 {
		t.Errorf("RPO before the oldest: got %v, want 0", got)
	}
	s.setPending(t0.Add(5 * time.Second)) // a commit: what is left
	if got := s.RPO(t0.Add(10 * time.Second)); got != 5*time.Second {
		t.Errorf("RPO after a commit: got %v, want 5s", got)
	}
	s.setPending(time.Time{})
	if got := s.RPO(t0.Add(time.Hour)); got != 0 || !s.OldestPending().IsZero() {
		t.Errorf("RPO after everything committed: got %v, want 0", got)
	}
	s.committed("ks", t0)
	s.committed("ks", t0.Add(-time.Hour)) // an older one does not go back
	if got := s.LastCommits()["ks"]; !got.Equal(t0) {
		t.Errorf("last commit: got %v, want %v", got, t0)
	}
}

// statsRepo opens a local store whose requests a new Stats counts, as the
// command line wires it.
func statsRepo(t *testing.T) (*Repo, *Stats) {
	t.Helper()
	r := gcRepo(t, filepath.Join(t.TempDir(), "store"), true)
	s := NewStats()
	r.Store = remote.NewObserved(r.Store, s.ObserveRequest)
	r.Stats = s
	return r, s
}

// TestStatsOneShotRestoreValidatePurge: the counters agree with what each
// operation reports, and every progress ends with done equal to total.
func TestStatsOneShotRestoreValidatePurge(t *testing.T) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := nodegen.Generate(data, nodegen.Config{Seed: 7, TotalBytes: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	r, s := statsRepo(t)
	at := time.Now()
	sum, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	checkProgress(t, s, "backup", int64(sum.Files), sum.BytesRead)
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"bytes read", s.BytesRead.Load(), sum.BytesRead},
		{"new chunks", s.ChunksNew.Load(), sum.ChunksNew},
		{"known chunks", s.ChunksKnown.Load(), sum.ChunksDup},
		{"files queued", s.FilesQueued.Load(), int64(sum.Files)},
		{"files done", s.FilesDone.Load(), int64(sum.Files)},
		{"sstables done", s.SSTablesDone.Load(), s.SSTablesQueued.Load()},
		{"errors", sumMap(s.Errors()), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
	if up := s.BytesUploaded.Load(); up < sum.BytesNew {
		t.Errorf("bytes uploaded %d < the new chunk bytes %d", up, sum.BytesNew)
	}
	if s.SSTablesQueued.Load() == 0 || s.CommitDuration.Snapshot().Count != 1 {
		t.Errorf("sstables queued %d, commits %d; want some and 1", s.SSTablesQueued.Load(), s.CommitDuration.Snapshot().Count)
	}
	commits := s.LastCommits()
	if len(commits) != len(sum.Manifests) {
		t.Errorf("last commits name %d keyspaces, want %d: %v", len(commits), len(sum.Manifests), commits)
	}
	for ks, c := range commits {
		if c.Before(at) {
			t.Errorf("keyspace %s: last commit %v, before the backup began", ks, c)
		}
	}

	// A second backup reads nothing and finds every keyspace's last commit.
	s2 := NewStats()
	r.Stats = s2
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{data}, Host: "n1"}); err != nil {
		t.Fatal(err)
	}
	if s2.BytesRead.Load() != 0 || s2.FilesDone.Load() != int64(sum.Files) {
		t.Errorf("unchanged backup: read %d bytes, %d files done; want 0 and %d", s2.BytesRead.Load(), s2.FilesDone.Load(), sum.Files)
	}
	r.Stats = s

	ms, err := Select(ctx, r.Store, "n1", "", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Restore(ctx, ms, RestoreOptions{DataDir: filepath.Join(t.TempDir(), "r"), NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	checkProgress(t, s, "restore", int64(len(res.Restored)), res.Bytes)

	rep, err := r.Validate(ctx, ValidateOptions{Checksum: true})
	if err != nil || !rep.OK() {
		t.Fatalf("validate: %v %v", err, rep.Problems)
	}
	checkProgress(t, s, "validate", int64(rep.Files), rep.BytesRead)

	pr, err := r.Purge(ctx, PurgeOptions{Host: "n1", Before: time.Now().Add(time.Hour), PurgeLatest: true, Holder: "t"})
	if err != nil {
		t.Fatal(err)
	}
	checkProgress(t, s, "purge", int64(len(pr.Manifests)), pr.GC.DeletedBytes)
	if got := s.Requests(); sumRequests(got, remote.KindDelete)+sumRequests(got, remote.KindDeleteMany) == 0 {
		t.Error("purge: no DELETE counted")
	}
}

func checkProgress(t *testing.T, s *Stats, op string, files, bytes int64) {
	t.Helper()
	p := s.Progress()
	if p == nil || p.Operation != op {
		t.Fatalf("progress: got %+v, want %s", p, op)
	}
	if p.FilesDone.Load() != files || p.FilesTotal.Load() != files || p.BytesDone.Load() != bytes || p.BytesTotal.Load() != bytes {
		t.Errorf("%s progress: files %d/%d, bytes %d/%d; want %d/%d, %d/%d", op, p.FilesDone.Load(), p.FilesTotal.Load(),
			p.BytesDone.Load(), p.BytesTotal.Load(), files, files, bytes, bytes)
	}
}

func sumMap(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func sumRequests(rs []RequestCount, kind string) int64 {
	var n int64
	for _, r := range rs {
		if r.Kind == kind {
			n += r.N
		}
	}
	return n
}

// rpoRun is what measureRPO saw.
type rpoRun struct {
	interval     time.Duration // manifest interval
	flushes      int
	max, startup time.Duration // largest RPO sampled under the load, and during the start-up scan
	bound        time.Duration // interval + longest SSTable store + 2 x longest commit + 50 ms
	sst, commit  HistogramSnapshot
	final        time.Duration // the RPO after the final commit
	s            *Stats
	r            *Repo
}

// measureRPO runs a continuous backup of a node of two keyspaces with
// the given manifest interval while flushing 1 MiB SSTables, alternating
// keyspaces, every "every", and samples the RPO every 5 ms. The RPO may
// reach the interval plus the time to store one SSTable plus two commits:
// an SSTable stored while a commit runs waits for it, then for the next
// tick and its commit; 50 ms more is the main loop's own scheduling.
func measureRPO(tb testing.TB, interval time.Duration, flushes int, every time.Duration) rpoRun {
	tb.Helper()
	ctx := tb.Context()
	data := filepath.Join(tb.TempDir(), "data")
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 9, TotalBytes: 4 << 20, Keyspaces: []nodegen.KeyspaceSpec{
		{Name: "ks_a", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}},
		{Name: "ks_b", Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	st, err := local.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	s := NewStats()
	r, err := Open(ctx, remote.NewObserved(st, s.ObserveRequest), Options{CacheRoot: filepath.Join(tb.TempDir(), "cache"), Create: true, Log: quietLog()})
	if err != nil {
		tb.Fatal(err)
	}
	r.GC, r.Stats = noWait, s
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := r.Continuous(ctx, stop, ContinuousOptions{
			BackupOptions: BackupOptions{DataDirs: []string{data}, Host: "n"}, ManifestInterval: interval,
			ReportInterval: -1, Watch: watch.Options{Debounce: 50 * time.Millisecond},
		})
		done <- err
	}()
	var maxRPO atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			maxRPO.Store(max(maxRPO.Load(), int64(s.RPO(time.Now()))))
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	time.Sleep(interval + 500*time.Millisecond) // the start-up scan, committed
	run := rpoRun{interval: interval, flushes: flushes, startup: time.Duration(maxRPO.Swap(0)), s: s, r: r}
	for i := range flushes {
		if _, err := node.Flush([]string{"ks_a", "ks_b"}[i%2], "t", 1<<20); err != nil {
			tb.Fatal(err)
		}
		time.Sleep(every)
	}
	time.Sleep(2 * interval)
	close(stop)
	<-sampled
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	run.max, run.final = time.Duration(maxRPO.Load()), s.RPO(time.Now())
	run.sst, run.commit = s.SSTableDuration.Snapshot(), s.CommitDuration.Snapshot()
	run.bound = interval + run.sst.Max + 2*run.commit.Max + 50*time.Millisecond
	return run
}

func (run rpoRun) String() string {
	return fmt.Sprintf("max RPO %v under %d flushes of 1 MiB (start-up %v); manifest interval %v, longest SSTable store %v, longest commit %v (%d commits, mean %v): bound %v",
		run.max.Round(time.Millisecond), run.flushes, run.startup.Round(time.Millisecond), run.interval, run.sst.Max.Round(time.Millisecond),
		run.commit.Max.Round(time.Millisecond), run.commit.Count, (run.commit.Sum / time.Duration(max(run.commit.Count, 1))).Round(time.Millisecond),
		run.bound.Round(time.Millisecond))
}

// TestContinuousRPO: under 50 flushes of 1 MiB every 100 ms with a 500 ms
// manifest interval, the RPO stays below the interval plus the upload and
// commit time (measureRPO), returns to 0 once everything is committed,
// and each keyspace's last commit is recent.
func TestContinuousRPO(t *testing.T) {
	if testing.Short() {
		t.Skip("a 5 s flush load; skipped with -short")
	}
	const flushes = 50
	run := measureRPO(t, 500*time.Millisecond, flushes, 100*time.Millisecond)
	t.Log(run)
	if run.max == 0 || run.max > run.bound {
		t.Errorf("max RPO %v; want above 0 and at most %v", run.max, run.bound)
	}
	if run.final != 0 {
		t.Errorf("RPO after the final commit: %v, want 0", run.final)
	}
	s := run.s
	if q, d := s.SSTablesQueued.Load(), s.SSTablesDone.Load(); q != d || q < flushes {
		t.Errorf("sstables queued %d, done %d; want equal and at least %d", q, d, flushes)
	}
	for _, ks := range []string{"ks_a", "ks_b"} {
		if c := s.LastCommits()[ks]; time.Since(c) > 3*run.interval+time.Second {
			t.Errorf("keyspace %s: last commit %v ago", ks, time.Since(c))
		}
		if _, err := manifest.Latest(t.Context(), run.r.Store, "n", ks, time.Now()); err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkContinuousRPO reports the largest RPO under a flush load of
// 1 MiB every 250 ms for 30 s (120 SSTables), at the default manifest
// interval (5 s) and at 1 s, with the bound measureRPO derives:
//
//	go test -run '^$' -bench ContinuousRPO -benchtime 1x .
func BenchmarkContinuousRPO(b *testing.B) {
	for _, interval := range []time.Duration{time.Second, 5 * time.Second} {
		b.Run(fmt.Sprint("interval=", interval), func(b *testing.B) {
			for b.Loop() {
				run := measureRPO(b, interval, 120, 250*time.Millisecond)
				b.Log(run)
				if run.max > run.bound {
					b.Errorf("max RPO %v over the bound %v", run.max, run.bound)
				}
				b.ReportMetric(run.max.Seconds(), "max-rpo-s")
				b.ReportMetric(run.bound.Seconds(), "bound-s")
				b.ReportMetric((run.sst.Max + 2*run.commit.Max).Seconds(), "upload+commit-s")
			}
		})
	}
}

// BenchmarkStatsUpdates: what counting costs per chunk (a backup's
// per-chunk update, with progress) and per store request, in parallel as
// the workers do; a chunk is about 3 MiB, a request at least a system call.
func BenchmarkStatsUpdates(b *testing.B) {
	s := NewStats()
	p := s.begin("backup")
	b.Run("chunk", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.chunk(true, 3<<20)
				p.done(0, 3<<20)
			}
		})
	})
	b.Run("request", func(b *testing.B) {
		c := remote.Call{Kind: remote.KindPut, Bytes: 32 << 20, Dur: 40 * time.Millisecond}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.ObserveRequest(c)
			}
		})
	})
}
