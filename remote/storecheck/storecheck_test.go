package storecheck_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/s3test"
	"github.com/cassback/cassback/remote/storecheck"
)

var (
	conditionalChecks = []string{storecheck.CheckCreate, storecheck.CheckReplace, storecheck.CheckCreateRace, storecheck.CheckMatchRace}
	allChecks         = append(conditionalChecks[:4:4], storecheck.CheckReadAfterWrite, storecheck.CheckListAfterWrite,
		storecheck.CheckDelete, storecheck.CheckRange, storecheck.CheckClock)
)

// statuses returns want for every check in checks, and Pass for the others.
func statuses(want storecheck.Status, checks ...string) map[string]storecheck.Status {
	m := map[string]storecheck.Status{}
	for _, c := range allChecks {
		m[c] = storecheck.Pass
	}
	for _, c := range checks {
		m[c] = want
	}
	return m
}

func TestRun(t *testing.T) {
	for _, tt := range []struct {
		name     string
		newStore func(t *testing.T) remote.Store
		want     map[string]storecheck.Status
		verdict  string
	}{
		{"memory", func(*testing.T) remote.Store { return remotetest.NewMemory() },
			statuses(storecheck.Pass), storecheck.VerdictLockFree},
		{"local", newLocal,
			statuses(storecheck.Pass), storecheck.VerdictLockFree},
		{"no-conditional", func(*testing.T) remote.Store { return struct{ remote.Store }{remotetest.NewMemory()} },
			statuses(storecheck.NotSupported, conditionalChecks...), storecheck.VerdictExclusive},
		{"conditional-unsupported", func(*testing.T) remote.Store { return unsupportedStore{remotetest.NewMemory()} },
			statuses(storecheck.NotSupported, conditionalChecks...), storecheck.VerdictExclusive},
		{"counting-no-conditional", func(*testing.T) remote.Store {
			// What the CLI opens: Counting always has PutIf and reports
			// ErrUnsupported when the store below has none.
			return remote.WithRetry(remote.NewCounting(struct{ remote.Store }{remotetest.NewMemory()}), remote.RetryOptions{})
		}, statuses(storecheck.NotSupported, conditionalChecks...), storecheck.VerdictExclusive},
		{"racy-conditional", func(*testing.T) remote.Store { return racyStore{remotetest.NewMemory()} },
			statuses(storecheck.Fail, storecheck.CheckCreateRace, storecheck.CheckMatchRace), storecheck.VerdictExclusive},
		{"stale-reads", func(*testing.T) remote.Store { return newStaleStore() },
			statuses(storecheck.Fail, storecheck.CheckReadAfterWrite), storecheck.VerdictUnsafe},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := tt.newStore(t)
			rep := run(t, st, storecheck.Options{})
			checkReport(t, rep, tt.want, tt.verdict)
			wantEmpty(t, st)
		})
	}
}

// run runs the checks and logs the report as the CLI would print it.
func run(t *testing.T, st remote.Store, opts storecheck.Options) storecheck.Report {
	t.Helper()
	rep, err := storecheck.Run(t.Context(), st, opts)
	for _, r := range rep.Results {
		t.Logf("%-20s %-13s %s", r.Check, r.Status, r.Detail)
	}
	t.Logf("verdict: %s", rep.Verdict())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.HasPrefix(rep.Prefix, "check-store/") || remote.ValidPrefix(rep.Prefix) != nil {
		t.Errorf("Prefix: got %q, want a valid prefix under check-store/", rep.Prefix)
	}
	return rep
}

func checkReport(t *testing.T, rep storecheck.Report, want map[string]storecheck.Status, verdict string) {
	t.Helper()
	var got []string
	for _, r := range rep.Results {
		got = append(got, r.Check)
		if r.Status != want[r.Check] {
			t.Errorf("%s: got %s (%s), want %s", r.Check, r.Status, r.Detail, want[r.Check])
		}
		if r.Detail == "" || strings.Contains(r.Detail, "\n") {
			t.Errorf("%s: detail %q, want one non-empty line", r.Check, r.Detail)
		}
	}
	if strings.Join(got, ",") != strings.Join(allChecks, ",") {
		t.Errorf("checks: got %q, want %q", got, allChecks)
	}
	if v := rep.Verdict(); v != verdict {
		t.Errorf("Verdict: got %q, want %q", v, verdict)
	}
	if got, want := rep.LockFree(), verdict == storecheck.VerdictLockFree; got != want {
		t.Errorf("LockFree: got %v, want %v", got, want)
	}
	failed := false
	for _, s := range want {
		failed = failed || s == storecheck.Fail
	}
	if rep.Failed() != failed {
		t.Errorf("Failed: got %v, want %v", rep.Failed(), failed)
	}
	if len(rep.Leftover) > 0 {
		t.Errorf("Leftover: got %q, want none", rep.Leftover)
	}
}

// wantEmpty checks that nothing is left in a store that was empty before.
func wantEmpty(t *testing.T, st remote.Store) {
	t.Helper()
	err := st.List(context.Background(), "", func(info remote.Info) error {
		t.Errorf("left behind: %s", info.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := st.ListDirs(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) > 0 {
		t.Errorf("left behind directories %q", dirs)
	}
}

func newLocal(t *testing.T) remote.Store {
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only the store's own dot-files (lock files) may remain.
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left behind in the store's folder: %s", e.Name())
			}
		}
	})
	return st
}

// TestVersitygw runs the checks against the S3 test server (versitygw with
// its posix backend), opened as the CLI opens a bucket: counted and retried.
func TestVersitygw(t *testing.T) {
	server := s3test.Start(t)
	for _, tt := range []struct {
		prefix string
		rounds int
	}{
		{"", 0},           // the defaults, as the CLI runs
		{"stores/one", 3}, // under a key prefix: what matters is what is left
	} {
		t.Run("prefix="+tt.prefix, func(t *testing.T) {
			cfg := server.Config(t)
			cfg.Prefix = tt.prefix
			st, err := s3.Open(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			wrapped := remote.WithRetry(remote.NewCounting(st), remote.RetryOptions{})
			rep := run(t, wrapped, storecheck.Options{Rounds: tt.rounds})
			// versitygw v1.8.0 includes versity/versitygw#2288, which made
			// the posix backend's conditional PUT atomic per key.
			checkReport(t, rep, statuses(storecheck.Pass), storecheck.VerdictLockFree)
			// Nothing left in the bucket, under the prefix or beside it
			// (the S3 store's own conditional-write probe included).
			whole := cfg
			whole.Prefix = ""
			all, err := s3.Open(t.Context(), whole)
			if err != nil {
				t.Fatal(err)
			}
			wantEmpty(t, all)
			if n := countFiles(t, server.Dir+"/"+cfg.Bucket); n > 0 {
				t.Errorf("%d files left in the bucket's folder", n)
			}
		})
	}
}

// countFiles counts the regular files under dir, dot-files included (a
// probe object would be one).
func countFiles(t *testing.T, dir string) int {
	n := 0
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			t.Logf("file left: %s", p)
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunCanceled: a cancelled Run stops, says so, and still cleans up.
func TestRunCanceled(t *testing.T) {
	st := &cancelAfter{Memory: remotetest.NewMemory(), n: 20}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st.cancel = cancel
	rep, err := storecheck.Run(ctx, st, storecheck.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: got %v, want context.Canceled", err)
	}
	if len(rep.Results) == len(allChecks) {
		t.Errorf("got all %d results, want fewer", len(rep.Results))
	}
	if v := rep.Verdict(); v != storecheck.VerdictIncomplete {
		t.Errorf("Verdict: got %q, want %q", v, storecheck.VerdictIncomplete)
	}
	if rep.LockFree() {
		t.Error("LockFree: got true for an incomplete report")
	}
	wantEmpty(t, st.Memory)
}

// TestRunCannotWrite: a store that refuses writes is an error, not a report
// of failed checks.
func TestRunCannotWrite(t *testing.T) {
	st := remotetest.NewFaulty(remotetest.NewMemory())
	st.FailMatching(remotetest.OpPut, "", nil)
	_, err := storecheck.Run(t.Context(), st, storecheck.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "cannot write under check-store/") || !errors.Is(err, remotetest.ErrInjected) {
		t.Errorf("Run: got %v, want cannot write under check-store/…: …injected fault", err)
	}
}

// TestRunCleanupFails: objects that cleanup cannot delete are named in
// Leftover and in a one-line error, after a complete report.
func TestRunCleanupFails(t *testing.T) {
	st := remotetest.NewFaulty(remotetest.NewMemory())
	st.FailMatching(remotetest.OpDelete, "check-store/", nil)
	rep, err := storecheck.Run(t.Context(), st, storecheck.Options{Rounds: 1})
	if err == nil || !strings.HasPrefix(err.Error(), "cleanup of check-store/") || strings.Contains(err.Error(), "\n") ||
		!errors.Is(err, remotetest.ErrInjected) {
		t.Errorf("Run: got %q, want one line starting cleanup of check-store/ and wrapping the injected fault", err)
	}
	if len(rep.Results) != len(allChecks) {
		t.Errorf("got %d results, want all %d", len(rep.Results), len(allChecks))
	}
	if r, _ := rep.Result(storecheck.CheckDelete); r.Status != storecheck.Fail {
		t.Errorf("%s: got %s (%s), want %s", storecheck.CheckDelete, r.Status, r.Detail, storecheck.Fail)
	}
	var left []string
	err = st.List(context.Background(), "", func(info remote.Info) error {
		left = append(left, info.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) == 0 || strings.Join(left, ",") != strings.Join(rep.Leftover, ",") {
		t.Errorf("Leftover: got %q, want what is left in the store, %q", rep.Leftover, left)
	}
}

func TestOptions(t *testing.T) {
	for _, tt := range []struct {
		opts storecheck.Options
		want string // "" for no error
	}{
		{storecheck.Options{}, ""},
		{storecheck.Options{Rounds: 1, Racers: 2}, ""},
		{storecheck.Options{Rounds: -1}, "rounds -1: want at least 1"},
		{storecheck.Options{Racers: 1}, "racers 1: want at least 2"},
	} {
		t.Run(fmt.Sprint(tt.opts), func(t *testing.T) {
			_, err := storecheck.Run(t.Context(), remotetest.NewMemory(), tt.opts)
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
				t.Errorf("Run: got error %v, want %q", err, tt.want)
			}
		})
	}
}

// unsupportedStore has PutIf, which finds at run time that the server
// ignores conditional headers, as the S3 store's probe does.
type unsupportedStore struct{ remote.Store }

func (unsupportedStore) PutIf(_ context.Context, key string, _ []byte, _ string) (string, error) {
	return "", fmt.Errorf("put-if %s: the server ignores conditional writes (If-None-Match, If-Match): %w", key, errors.ErrUnsupported)
}

// racyWindow is how long racyStore waits between checking a condition and
// writing.
const racyWindow = 10 * time.Millisecond

// racyStore's PutIf is a server that evaluates If-None-Match or If-Match
// and then stores the object as a separate step, with no lock across both:
// correct one request at a time, wrong under a race (versitygw's posix
// backend before #2288, SeaweedFS before #8801).
//
// The test is reliable because Run releases all 32 racers of a round at
// once from a closed channel, and each racer's check (a Stat of the memory
// store) takes microseconds while the window before its write lasts 10 ms.
// Only one racer would win a round if every other one were kept off the CPU
// for the whole window; with 20 rounds per race that would have to happen
// twenty times over. Sleeping is the point here: the window is the bug.
type racyStore struct{ *remotetest.Memory }

func (s racyStore) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	info, err := s.Stat(ctx, key)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if (ifMatch == "" && exists) || (ifMatch != "" && (!exists || info.ETag != ifMatch)) {
		return "", fmt.Errorf("put-if %s: %w", key, remote.ErrPrecondition)
	}
	time.Sleep(racyWindow)
	if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		return "", err
	}
	info, err = s.Stat(ctx, key)
	return info.ETag, err
}

// staleStore serves the previous version of an object after it was
// overwritten by Put, as an eventually consistent store or a caching proxy
// in front of one may.
type staleStore struct {
	*remotetest.Memory
	mu  sync.Mutex
	old map[string][]byte
}

func newStaleStore() *staleStore {
	return &staleStore{Memory: remotetest.NewMemory(), old: map[string][]byte{}}
}

func (s *staleStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if rc, err := s.Memory.Get(ctx, key, 0, -1); err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		s.mu.Lock()
		s.old[key] = b
		s.mu.Unlock()
	}
	return s.Memory.Put(ctx, key, data, size)
}

func (s *staleStore) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	s.mu.Lock()
	b, ok := s.old[key]
	s.mu.Unlock()
	if ok && offset == 0 && length < 0 {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return s.Memory.Get(ctx, key, offset, length)
}

func (s *staleStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	delete(s.old, key)
	s.mu.Unlock()
	return s.Memory.Delete(ctx, key)
}

// cancelAfter cancels the context after n calls of Put or PutIf.
type cancelAfter struct {
	*remotetest.Memory
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (s *cancelAfter) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n--; s.n == 0 {
		s.cancel()
	}
}

func (s *cancelAfter) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	s.tick()
	return s.Memory.Put(ctx, key, data, size)
}

func (s *cancelAfter) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	s.tick()
	return s.Memory.PutIf(ctx, key, data, ifMatch)
}
