package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// fast retries quickly, so tests that retry take milliseconds.
var fast = remote.RetryOptions{Attempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

var errFlaky = errors.New("flaky")

func flaky() error { return remote.Transient(errFlaky) }

func TestRetryConformance(t *testing.T) {
	t.Run("Memory", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store { return remote.WithRetry(remotetest.NewMemory(), fast) })
	})
	// The first call of each operation on each key fails transiently;
	// writes that fail are applied and their answers lost, so retries meet
	// their own effects.
	t.Run("LostReplies", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store {
			f := remotetest.NewFaulty(remotetest.NewMemory())
			f.SetHook(failFirst(nil))
			f.SetMode(remotetest.LostReply)
			return remote.WithRetry(f, fast)
		})
	})
	// The first Put of each key reads half its data and fails.
	t.Run("Partial", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store {
			f := remotetest.NewFaulty(remotetest.NewMemory())
			f.SetHook(failFirst([]remotetest.Op{remotetest.OpPut}))
			f.SetMode(remotetest.Partial)
			return remote.WithRetry(f, fast)
		})
	})
}

// failFirst returns a Faulty hook that fails the first call of each of ops
// (all when nil) on each key with a transient error.
func failFirst(ops []remotetest.Op) func(remotetest.Op, string) error {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(op remotetest.Op, key string) error {
		if ops != nil && !slices.Contains(ops, op) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		k := op.String() + " " + key
		if seen[k] {
			return nil
		}
		seen[k] = true
		return flaky()
	}
}

func TestIsTransient(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errFlaky, false},
		{flaky(), true},
		{fmt.Errorf("put k: %w", flaky()), true},
		{remote.Transient(fmt.Errorf("stat k: %w", fs.ErrNotExist)), false},
		{remote.Transient(remote.ErrPrecondition), false},
		{remote.Transient(remote.ErrInvalidKey), false},
		{remote.Transient(remote.ErrInvalidRange), false},
		{remote.Transient(errors.ErrUnsupported), false},
		{remote.Transient(context.Canceled), false},
		{remote.Transient(context.DeadlineExceeded), false},
	} {
		if got := remote.IsTransient(tt.err); got != tt.want {
			t.Errorf("IsTransient(%v): got %v, want %v", tt.err, got, tt.want)
		}
	}
	if remote.Transient(nil) != nil {
		t.Errorf("Transient(nil): got non-nil, want nil")
	}
}

func TestRetryTransient(t *testing.T) {
	mem := remotetest.NewMemory()
	f := remotetest.NewFaulty(mem)
	s := remote.WithRetry(f, fast)
	for _, op := range []remotetest.Op{remotetest.OpPut, remotetest.OpGet, remotetest.OpStat, remotetest.OpList,
		remotetest.OpListDirs, remotetest.OpDelete, remotetest.OpPutIf} {
		t.Run(op.String(), func(t *testing.T) {
			ctx := t.Context()
			if err := mem.Put(ctx, "d/k", strings.NewReader("v"), 1); err != nil {
				t.Fatal(err)
			}
			f.FailNext(op, 2, flaky())
			before := f.Calls(op)
			var err error
			switch op {
			case remotetest.OpPut:
				err = s.Put(ctx, "d/k", strings.NewReader("w"), 1)
			case remotetest.OpGet:
				var b []byte
				b, err = readAll(s.Get(ctx, "d/k", 0, -1))
				if err == nil && string(b) != "v" {
					t.Errorf("Get: got %q, want %q", b, "v")
				}
			case remotetest.OpStat:
				_, err = s.Stat(ctx, "d/k")
			case remotetest.OpList:
				err = s.List(ctx, "", func(remote.Info) error { return nil })
			case remotetest.OpListDirs:
				_, err = s.ListDirs(ctx, "")
			case remotetest.OpDelete:
				err = s.Delete(ctx, "d/k")
			case remotetest.OpPutIf:
				_, err = s.(remote.Conditional).PutIf(ctx, "d/new", []byte("x"), "")
			}
			if err != nil {
				t.Fatalf("%v after 2 transient failures: %v", op, err)
			}
			if got := f.Calls(op) - before; got != 3 {
				t.Errorf("%v: got %d calls, want 3", op, got)
			}
		})
	}
}

func readAll(rc io.ReadCloser, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestRetryPermanent checks that permanent errors are returned at once.
func TestRetryPermanent(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"unmarked", errFlaky},
		{"not-found", fs.ErrNotExist},
		{"precondition", remote.ErrPrecondition},
		{"invalid-key", remote.ErrInvalidKey},
		{"invalid-range", remote.ErrInvalidRange},
		{"transient-but-canceled", remote.Transient(context.Canceled)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := remotetest.NewFaulty(remotetest.NewMemory())
			s := remote.WithRetry(f, fast)
			f.FailNext(remotetest.OpStat, 1, tt.err)
			_, err := s.Stat(t.Context(), "k")
			if !errors.Is(err, tt.err) {
				t.Errorf("Stat: got %v, want %v", err, tt.err)
			}
			if n := f.Calls(remotetest.OpStat); n != 1 {
				t.Errorf("Stat: got %d calls, want 1", n)
			}
		})
	}
	// A missing key is not retried either.
	f := remotetest.NewFaulty(remotetest.NewMemory())
	s := remote.WithRetry(f, fast)
	if _, err := s.Get(t.Context(), "missing", 0, -1); !errors.Is(err, fs.ErrNotExist) || f.Calls(remotetest.OpGet) != 1 {
		t.Errorf("Get of a missing key: got %v after %d calls, want fs.ErrNotExist after 1", err, f.Calls(remotetest.OpGet))
	}
}

func TestRetryGivesUp(t *testing.T) {
	var log bytes.Buffer
	f := remotetest.NewFaulty(remotetest.NewMemory())
	opts := fast
	opts.Attempts = 3
	opts.Log = slog.New(slog.NewTextHandler(&log, nil))
	s := remote.WithRetry(f, opts)
	f.FailAfter(remotetest.OpPut, 0, flaky())
	err := s.Put(t.Context(), "k", strings.NewReader("v"), 1)
	if !errors.Is(err, errFlaky) || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("Put failing every time: got %v, want errFlaky and %q", err, "gave up after 3 attempts")
	}
	if n := f.Calls(remotetest.OpPut); n != 3 {
		t.Errorf("Put: got %d calls, want 3", n)
	}
	if got := strings.Count(log.String(), "level=WARN msg=\"store request failed; retrying\" op=put key=k attempt="); got != 2 {
		t.Errorf("log: got %d retry records, want 2:\n%s", got, log.String())
	}
}

// TestRetryCanceledDuringBackoff checks that a long backoff ends with the
// context.
func TestRetryCanceledDuringBackoff(t *testing.T) {
	f := remotetest.NewFaulty(remotetest.NewMemory())
	s := remote.WithRetry(f, remote.RetryOptions{Attempts: 5, BaseDelay: time.Hour, MaxDelay: time.Hour})
	f.FailAfter(remotetest.OpStat, 0, flaky())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stat: got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stat returned after %v, want soon after the deadline", d)
	}
}

func TestRetryBackoffBounds(t *testing.T) {
	f := remotetest.NewFaulty(remotetest.NewMemory())
	// Six attempts: five sleeps of at most 2+4+8+8+8 ms.
	s := remote.WithRetry(f, remote.RetryOptions{Attempts: 6, BaseDelay: 2 * time.Millisecond, MaxDelay: 8 * time.Millisecond})
	f.FailAfter(remotetest.OpStat, 0, flaky())
	start := time.Now()
	if _, err := s.Stat(t.Context(), "k"); !errors.Is(err, errFlaky) {
		t.Fatalf("Stat: got %v, want errFlaky", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("6 attempts with delays capped at 8ms took %v", d)
	}
}

// unseekable hides every method but Read.
type unseekable struct{ r io.Reader }

func (u unseekable) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestRetryPutReplaysData(t *testing.T) {
	data := remotetest.Data(1, 100<<10)
	for _, tt := range []struct {
		name string
		data func() io.Reader
	}{
		{"seeker", func() io.Reader { return bytes.NewReader(data) }},
		{"seeker-not-at-start", func() io.Reader {
			r := bytes.NewReader(append([]byte("skip"), data...))
			r.Seek(4, io.SeekStart)
			return r
		}},
		{"buffered", func() io.Reader { return unseekable{bytes.NewReader(data)} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := remotetest.NewMemory()
			f := remotetest.NewFaulty(mem)
			f.SetMode(remotetest.Partial) // a failed Put reads half the data
			f.FailNext(remotetest.OpPut, 2, flaky())
			if err := remote.WithRetry(f, fast).Put(t.Context(), "k", tt.data(), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(mem.Get(t.Context(), "k", 0, -1))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("after 2 partial Puts and a retry: got %d bytes (%v), want the %d bytes sent", len(got), err, len(data))
			}
		})
	}
	t.Run("bad-data", func(t *testing.T) {
		f := remotetest.NewFaulty(remotetest.NewMemory())
		s := remote.WithRetry(f, fast)
		for _, r := range []io.Reader{unseekable{strings.NewReader("short")}, unseekable{strings.NewReader("much too long")}} {
			if err := s.Put(t.Context(), "k", r, 8); err == nil {
				t.Errorf("Put of a reader with the wrong size: got nil error")
			}
		}
		if n := f.Calls(remotetest.OpPut); n != 0 {
			t.Errorf("Put of bad data: the inner store got %d calls, want 0", n)
		}
	})
	t.Run("too-big-to-buffer", func(t *testing.T) {
		f := remotetest.NewFaulty(remotetest.NewMemory())
		f.FailNext(remotetest.OpPut, 1, flaky())
		const size = 65 << 20
		err := remote.WithRetry(f, fast).Put(t.Context(), "k", unseekable{io.LimitReader(zeros{}, size)}, size)
		if !errors.Is(err, errFlaky) || f.Calls(remotetest.OpPut) != 1 {
			t.Errorf("Put of 65 MiB that cannot seek: got %v after %d calls, want the first error after 1 call", err, f.Calls(remotetest.OpPut))
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// breaking is a store whose Get bodies fail transiently after every 'after'
// bytes for the first 'times' bodies, and whose List fails transiently
// after delivering two keys the first time.
type breaking struct {
	remote.Store
	after int64
	etag  string   // of every body; "" for none (not resumable)
	etags []string // of each body in turn, if set
	mu    sync.Mutex
	times int
	gets  [][2]int64 // offset, length of each Get
	lists int
}

func (b *breaking) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := b.Store.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gets = append(b.gets, [2]int64{offset, length})
	etag := b.etag
	if b.etags != nil {
		etag = b.etags[len(b.gets)-1]
	}
	if b.times == 0 {
		return etagBody{rc, rc, etag}, nil
	}
	b.times--
	return etagBody{io.MultiReader(io.LimitReader(rc, b.after), errorReader{flaky()}), rc, etag}, nil
}

// etagBody is a Get body that reports an ETag.
type etagBody struct {
	io.Reader
	io.Closer
	etag string
}

func (e etagBody) ETag() string { return e.etag }

type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }

func (b *breaking) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	b.mu.Lock()
	b.lists++
	first := b.lists == 1
	b.mu.Unlock()
	n := 0
	return b.Store.List(ctx, prefix, func(info remote.Info) error {
		if first && n == 2 {
			return flaky()
		}
		n++
		return fn(info)
	})
}

func TestRetryGetResumes(t *testing.T) {
	data := remotetest.Data(2, 10000)
	for _, tt := range []struct {
		offset, length int64
		wantGets       [][2]int64
	}{
		{0, -1, [][2]int64{{0, -1}, {3000, -1}, {6000, -1}}},
		{100, 8000, [][2]int64{{100, 8000}, {3100, 5000}, {6100, 2000}}},
		{5000, 3000, [][2]int64{{5000, 3000}, {8000, 0}}}, // breaks exactly at the end
	} {
		t.Run(fmt.Sprintf("%d,%d", tt.offset, tt.length), func(t *testing.T) {
			mem := remotetest.NewMemory()
			if err := mem.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			b := &breaking{Store: mem, after: 3000, times: 2, etag: "v1"}
			got, err := readAll(remote.WithRetry(b, fast).Get(t.Context(), "k", tt.offset, tt.length))
			if err != nil {
				t.Fatal(err)
			}
			end := int64(len(data))
			if tt.length >= 0 {
				end = tt.offset + tt.length
			}
			if !bytes.Equal(got, data[tt.offset:end]) {
				t.Errorf("Get: got %d bytes, want %d bytes of the object from %d", len(got), end-tt.offset, tt.offset)
			}
			if tt.offset == 5000 {
				tt.wantGets = tt.wantGets[:1] // the break came after the last byte: no second Get
			}
			if fmt.Sprint(b.gets) != fmt.Sprint(tt.wantGets) {
				t.Errorf("Gets: got %v, want %v", b.gets, tt.wantGets)
			}
		})
	}
	t.Run("gives-up", func(t *testing.T) {
		mem := remotetest.NewMemory()
		mem.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)))
		b := &breaking{Store: mem, after: 100, times: 100, etag: "v1"}
		_, err := readAll(remote.WithRetry(b, fast).Get(t.Context(), "k", 0, -1))
		if !errors.Is(err, errFlaky) || !strings.Contains(err.Error(), "gave up") {
			t.Errorf("Get body breaking every 100 bytes: got %v, want errFlaky and gave up", err)
		}
	})
	// A body that names no version is not resumed: the rest could come
	// from another one.
	t.Run("no-etag", func(t *testing.T) {
		mem := remotetest.NewMemory()
		mem.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)))
		b := &breaking{Store: mem, after: 100, times: 1}
		_, err := readAll(remote.WithRetry(b, fast).Get(t.Context(), "k", 0, -1))
		if !errors.Is(err, errFlaky) || len(b.gets) != 1 {
			t.Errorf("Get of a body without ETag breaking: got %v after %d Gets, want errFlaky after 1", err, len(b.gets))
		}
	})
	t.Run("changed", func(t *testing.T) {
		mem := remotetest.NewMemory()
		mem.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)))
		b := &breaking{Store: mem, after: 100, times: 1, etags: []string{"v1", "v2"}}
		_, err := readAll(remote.WithRetry(b, fast).Get(t.Context(), "k", 0, -1))
		if err == nil || !strings.Contains(err.Error(), "changed while it was read") {
			t.Errorf("Get resumed on another version: got %v, want %q", err, "changed while it was read")
		}
	})
}

func TestRetryListResumes(t *testing.T) {
	mem := remotetest.NewMemory()
	for _, k := range []string{"a", "b", "c", "d"} {
		mem.Put(t.Context(), k, strings.NewReader(k), 1)
	}
	b := &breaking{Store: mem}
	var got []string
	err := remote.WithRetry(b, fast).List(t.Context(), "", func(info remote.Info) error {
		got = append(got, info.Key)
		return nil
	})
	if err != nil || strings.Join(got, ",") != "a,b,c,d" || b.lists != 2 {
		t.Errorf("List breaking after 2 keys: got %v, %v after %d lists; want a,b,c,d after 2", got, err, b.lists)
	}

	// An error from the callback is never retried, transient or not.
	b = &breaking{Store: mem, lists: 1}
	calls := 0
	err = remote.WithRetry(b, fast).List(t.Context(), "", func(info remote.Info) error {
		calls++
		return flaky()
	})
	if !errors.Is(err, errFlaky) || calls != 1 || b.lists != 2 {
		t.Errorf("List with a failing callback: got %v after %d calls and %d lists, want errFlaky after 1 and 1", err, calls, b.lists-1)
	}
}

func TestRetryPutIfLostReply(t *testing.T) {
	mem := remotetest.NewMemory()
	f := remotetest.NewFaulty(mem)
	f.SetMode(remotetest.LostReply)
	s := remote.WithRetry(f, fast).(remote.Conditional)

	// Create: the first attempt is applied, its answer lost; the retry's
	// 412 is recognised as our own write.
	f.FailNext(remotetest.OpPutIf, 1, flaky())
	etag, err := s.PutIf(t.Context(), "lease", []byte("mine"), "")
	if err != nil {
		t.Fatalf("PutIf after a lost reply: %v", err)
	}
	if info, _ := mem.Stat(t.Context(), "lease"); etag != info.ETag {
		t.Errorf("PutIf ETag: got %q, want the stored %q", etag, info.ETag)
	}
	// Compare-and-swap, same story.
	f.FailNext(remotetest.OpPutIf, 1, flaky())
	etag2, err := s.PutIf(t.Context(), "lease", []byte("mine v2"), etag)
	if err != nil || etag2 == etag {
		t.Fatalf("PutIf If-Match after a lost reply: got %q, %v; want a new ETag", etag2, err)
	}
	// A real loss stays a loss.
	if _, err := s.PutIf(t.Context(), "lease", []byte("theirs"), ""); !errors.Is(err, remote.ErrPrecondition) {
		t.Errorf("PutIf create of an existing key: got %v, want ErrPrecondition", err)
	}
	f.FailNext(remotetest.OpPutIf, 1, flaky())
	f.SetMode(remotetest.Refused)
	if _, err := s.PutIf(t.Context(), "lease", []byte("other"), ""); !errors.Is(err, remote.ErrPrecondition) {
		t.Errorf("PutIf create after a refused attempt, other bytes stored: got %v, want ErrPrecondition", err)
	}
}

// slow blocks the first call of Stat and Get until its context ends.
type slow struct {
	remote.Store
	mu    sync.Mutex
	stats int
	gets  int
}

func (s *slow) Stat(ctx context.Context, key string) (remote.Info, error) {
	s.mu.Lock()
	s.stats++
	first := s.stats == 1
	s.mu.Unlock()
	if first {
		<-ctx.Done()
		return remote.Info{}, fmt.Errorf("stat %s: %w", key, ctx.Err())
	}
	return s.Store.Stat(ctx, key)
}

func (s *slow) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	s.mu.Lock()
	s.gets++
	first := s.gets == 1
	s.mu.Unlock()
	if first {
		<-ctx.Done()
		return nil, fmt.Errorf("get %s: %w", key, ctx.Err())
	}
	return s.Store.Get(ctx, key, offset, length)
}

func TestRetryAttemptTimeout(t *testing.T) {
	mem := remotetest.NewMemory()
	mem.Put(t.Context(), "k", strings.NewReader("value"), 5)
	sl := &slow{Store: mem}
	opts := fast
	opts.AttemptTimeout = 20 * time.Millisecond
	s := remote.WithRetry(sl, opts)
	if _, err := s.Stat(t.Context(), "k"); err != nil || sl.stats != 2 {
		t.Errorf("Stat hanging once: got %v after %d calls, want success after 2", err, sl.stats)
	}
	rc, err := s.Get(t.Context(), "k", 0, -1)
	if err != nil || sl.gets != 2 {
		t.Fatalf("Get hanging once: got %v after %d calls, want success after 2", err, sl.gets)
	}
	// The time limit stops once the reader is returned: a slow consumer
	// keeps its body.
	time.Sleep(3 * opts.AttemptTimeout)
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "value" {
		t.Errorf("reading the body after %v: got %q, %v; want %q", 3*opts.AttemptTimeout, b, err, "value")
	}

	// Every attempt hangs: the error says so and is not the caller's deadline.
	opts.Attempts = 2
	s = remote.WithRetry(&slow{Store: hang{}}, opts)
	_, err = s.Stat(t.Context(), "k")
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 20ms") {
		t.Errorf("Stat hanging always: got %v, want %q and no context error", err, "no answer within 20ms")
	}
}

// hang is a store whose Stat never answers.
type hang struct{ remote.Store }

func (hang) Stat(ctx context.Context, key string) (remote.Info, error) {
	<-ctx.Done()
	return remote.Info{}, ctx.Err()
}

func TestRetryPreservesConditional(t *testing.T) {
	if _, ok := remote.WithRetry(remotetest.NewMemory(), fast).(remote.Conditional); !ok {
		t.Errorf("WithRetry(Memory) is not a remote.Conditional")
	}
	if _, ok := remote.WithRetry(remotetest.WithoutConditional(remotetest.NewMemory()), fast).(remote.Conditional); ok {
		t.Errorf("WithRetry of a store without PutIf is a remote.Conditional")
	}
}

type deleteManyer interface {
	DeleteMany(ctx context.Context, keys []string) error
}

func TestRetryDeleteMany(t *testing.T) {
	mem := remotetest.NewMemory()
	for _, k := range []string{"a", "b", "c"} {
		mem.Put(t.Context(), k, strings.NewReader(k), 1)
	}
	f := remotetest.NewFaulty(mem)
	f.FailNext(remotetest.OpDelete, 1, flaky())
	s := remote.WithRetry(f, fast)
	if err := s.(deleteManyer).DeleteMany(t.Context(), []string{"a", "b", "missing"}); err != nil {
		t.Fatal(err)
	}
	var left []string
	mem.List(t.Context(), "", func(info remote.Info) error { left = append(left, info.Key); return nil })
	if strings.Join(left, ",") != "c" {
		t.Errorf("after DeleteMany(a, b, missing): got %v, want [c]", left)
	}
}

func TestRetryFunc(t *testing.T) {
	n := 0
	err := remote.Retry(t.Context(), fast, "open", func(ctx context.Context) error {
		n++
		if n < 3 {
			return flaky()
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("Retry: got %v after %d calls, want nil after 3", err, n)
	}
}

// TestRetryOnRetry: OnRetry hears of each retry with its operation and
// the error of the attempt that failed, and of nothing when the first
// attempt succeeds.
func TestRetryOnRetry(t *testing.T) {
	ctx := t.Context()
	f := remotetest.NewFaulty(remotetest.NewMemory())
	var mu sync.Mutex
	var ops []string
	opts := fast
	opts.OnRetry = func(op string, err error) {
		if !errors.Is(err, errFlaky) {
			t.Errorf("OnRetry(%s): error %v, want the failed attempt's", op, err)
		}
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}
	s := remote.WithRetry(f, opts)
	if err := s.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	f.FailNext(remotetest.OpGet, 2, flaky())
	if _, err := readAll(s.Get(ctx, "k", 0, -1)); err != nil {
		t.Fatal(err)
	}
	f.FailNext(remotetest.OpStat, 1, flaky())
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"get", "get", "stat"}; !slices.Equal(ops, want) {
		t.Errorf("retries heard: got %v, want %v", ops, want)
	}
}
