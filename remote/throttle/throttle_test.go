package throttle_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
	"github.com/cassback/cassback/remote/throttle"
)

func TestConformance(t *testing.T) {
	lim := throttle.New(throttle.Config{Upload: 1e9, Download: 1e9, Requests: 1e6})
	t.Run("Memory", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store { return lim.Wrap(remotetest.NewMemory()) })
	})
	t.Run("WithoutConditional", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store {
			return lim.Wrap(remotetest.WithoutConditional(remotetest.NewMemory()))
		})
	})
}

// rateWindow is how long each rate test measures: about 3 s, or 30 s with
// CASSBACK_LONG=1 (the "within 10% over 30 s").
func rateWindow() time.Duration {
	if os.Getenv("CASSBACK_LONG") == "1" {
		return 30 * time.Second
	}
	return 3 * time.Second
}

// measure runs work on workers goroutines until the window ends and
// returns what they did per second, counting every call that started in
// the window and the time until the last one ended.
func measure(t *testing.T, workers int, work func(ctx context.Context, worker int) (int64, error)) float64 {
	t.Helper()
	window := rateWindow()
	var (
		total atomic.Int64
		wg    sync.WaitGroup
		errs  = make(chan error, workers)
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for time.Since(start) < window {
				n, err := work(t.Context(), w)
				if err != nil {
					errs <- err
					return
				}
				total.Add(n)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d in %v", total.Load(), elapsed.Round(time.Millisecond))
	return float64(total.Load()) / elapsed.Seconds()
}

// checkRate fails unless got is within 10% of want.
func checkRate(t *testing.T, what string, got, want float64, unit string) {
	t.Helper()
	dev := (got - want) / want
	t.Logf("%s: %.4g %s achieved in a %v window, limit %.4g (%+.1f%%)", what, got, unit, rateWindow(), want, 100*dev)
	if math.Abs(dev) > 0.10 {
		t.Errorf("%s: %.4g %s, want %.4g within 10%%", what, got, unit, want)
	}
}

func openLocal(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestUploadRate uploads 1 MiB objects from 4 goroutines into two local
// stores wrapped by one Limiter: the limit holds for both together.
func TestUploadRate(t *testing.T) {
	t.Parallel()
	const limit = 6e6
	lim := throttle.New(throttle.Config{Upload: limit})
	stores := []remote.Store{lim.Wrap(openLocal(t)), lim.Wrap(openLocal(t))}
	data := bytes.Repeat([]byte("cassback"), 1<<17)
	var seq atomic.Int64
	got := measure(t, 4, func(ctx context.Context, w int) (int64, error) {
		key := "packs/" + strings.Repeat("a", int(seq.Add(1)%7)+1)
		return int64(len(data)), stores[w%2].Put(ctx, key, bytes.NewReader(data), int64(len(data)))
	})
	checkRate(t, "upload", got, limit, "B/s")
}

// TestDownloadRate reads whole 1 MiB objects and ranges of them from 4
// goroutines.
func TestDownloadRate(t *testing.T) {
	t.Parallel()
	const limit = 8e6
	inner := openLocal(t)
	data := bytes.Repeat([]byte("cassback"), 1<<17)
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := inner.Put(t.Context(), k, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	st := throttle.New(throttle.Config{Download: limit}).Wrap(inner)
	got := measure(t, 4, func(ctx context.Context, w int) (int64, error) {
		off, length := int64(0), int64(-1)
		if w%2 == 1 {
			off, length = 1000, 300_000
		}
		rc, err := st.Get(ctx, string(rune('a'+w)), off, length)
		if err != nil {
			return 0, err
		}
		defer rc.Close()
		return io.Copy(io.Discard, rc)
	})
	checkRate(t, "download", got, limit, "B/s")
}

// TestRequestRate makes Stat, Get and List calls from 4 goroutines.
func TestRequestRate(t *testing.T) {
	t.Parallel()
	const limit = 300
	inner := openLocal(t)
	if err := inner.Put(t.Context(), "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	st := throttle.New(throttle.Config{Requests: limit}).Wrap(inner)
	got := measure(t, 4, func(ctx context.Context, w int) (int64, error) {
		switch w {
		case 0:
			rc, err := st.Get(ctx, "k", 0, -1)
			if err == nil {
				rc.Close()
			}
			return 1, err
		case 1:
			return 1, st.List(ctx, "", func(remote.Info) error { return nil })
		}
		_, err := st.Stat(ctx, "k")
		return 1, err
	})
	checkRate(t, "requests", got, limit, "requests/s")
}

// TestCancelWhileWaiting checks that a call waiting for tokens returns as
// soon as its context ends, with an error wrapping ctx.Err() and naming
// the key, and that a Put so stopped stores nothing.
func TestCancelWhileWaiting(t *testing.T) {
	inner := remotetest.NewMemory()
	ctx := t.Context()
	if err := inner.Put(ctx, "big", bytes.NewReader(make([]byte, 1<<20)), 1<<20); err != nil {
		t.Fatal(err)
	}
	requests := throttle.New(throttle.Config{Requests: 0.1}).Wrap(inner) // buckets start empty
	up := throttle.New(throttle.Config{Upload: 1000}).Wrap(inner)
	down := throttle.New(throttle.Config{Download: 1000}).Wrap(inner)
	for _, tt := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"request", func(ctx context.Context) error { _, err := requests.Stat(ctx, "big"); return err }},
		{"upload", func(ctx context.Context) error {
			return up.Put(ctx, "new", bytes.NewReader(make([]byte, 1<<20)), 1<<20)
		}},
		{"download", func(ctx context.Context) error {
			rc, err := down.Get(ctx, "big", 0, -1)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := tt.call(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want an error wrapping context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("returned after %v, want about 300ms", d)
			}
		})
	}
	if _, err := inner.Stat(ctx, "new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cancelled Put left an object: %v", err)
	}
}

func TestWaitErrorNamesKey(t *testing.T) {
	st := throttle.New(throttle.Config{Requests: 0.001}).Wrap(remotetest.NewMemory())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := st.Delete(ctx, "packs/ab/abcd")
	if want := "delete packs/ab/abcd: wait for the rate limit: context canceled"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

// etagStore's Get bodies report an ETag, as S3's do.
type etagStore struct{ *remotetest.Memory }

type etagBody struct{ io.ReadCloser }

func (etagBody) ETag() string { return "v1" }

func (s etagStore) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := s.Memory.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	return etagBody{rc}, nil
}

func TestKeepsInterfaces(t *testing.T) {
	ctx := t.Context()
	lim := throttle.New(throttle.Config{Upload: 1e9, Download: 1e9, Requests: 1e6})
	if none := throttle.New(throttle.Config{}); none.Wrap(openLocal(t)) == nil {
		t.Fatal("nil store")
	}
	in := openLocal(t)
	if got := throttle.New(throttle.Config{}).Wrap(in); got != remote.Store(in) {
		t.Errorf("no limit: got %T, want the store itself", got)
	}
	if _, ok := lim.Wrap(remotetest.NewMemory()).(remote.Conditional); !ok {
		t.Error("wrapped Conditional store is not a remote.Conditional")
	}
	if _, ok := lim.Wrap(remotetest.WithoutConditional(remotetest.NewMemory())).(remote.Conditional); ok {
		t.Error("wrapped plain store is a remote.Conditional")
	}
	st := lim.Wrap(etagStore{remotetest.NewMemory()})
	if err := st.Put(ctx, "k", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got := remote.BodyETag(rc); got != "v1" {
		t.Errorf("body ETag %q, want v1", got)
	}
	// RemoveStaleTemp reaches a local store; DeleteMany works without one.
	type staleRemover interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	}
	sr, ok := lim.Wrap(openLocal(t)).(staleRemover)
	if !ok {
		t.Fatal("no RemoveStaleTemp")
	}
	if _, err := sr.RemoveStaleTemp(ctx, time.Hour); err != nil {
		t.Error(err)
	}
	bd, ok := st.(interface {
		DeleteMany(context.Context, []string) error
	})
	if !ok {
		t.Fatal("no DeleteMany")
	}
	if err := bd.DeleteMany(ctx, []string{"k", "missing"}); err != nil {
		t.Error(err)
	}
	if _, err := st.Stat(ctx, "k"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after DeleteMany: %v", err)
	}
}

// TestEachLimitAlone runs every call with one limit set at a time: a
// call must not wait on a limit that is not set (a PutIf with only a
// download limit once looped for ever).
func TestEachLimitAlone(t *testing.T) {
	for _, cfg := range []throttle.Config{{Upload: 1e9}, {Download: 1e9}, {Requests: 1e6}} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		st := throttle.New(cfg).Wrap(remotetest.NewMemory())
		etag, err := st.(remote.Conditional).PutIf(ctx, "k", []byte("hello"), "")
		if err == nil {
			_, err = st.(remote.Conditional).PutIf(ctx, "k", []byte("again"), etag)
		}
		if err == nil {
			err = st.Put(ctx, "j", strings.NewReader("hi"), 2)
		}
		var rc io.ReadCloser
		if err == nil {
			rc, err = st.Get(ctx, "k", 0, -1)
		}
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err == nil {
			_, err = st.Stat(ctx, "j")
		}
		if err == nil {
			err = st.List(ctx, "", func(remote.Info) error { return nil })
		}
		if err == nil {
			_, err = st.ListDirs(ctx, "")
		}
		if err == nil {
			err = st.Delete(ctx, "j")
		}
		cancel()
		if err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

// batchStore deletes many keys per call, as S3 does.
type batchStore struct {
	*remotetest.Memory
	calls atomic.Int64
}

func (b *batchStore) DeleteMany(ctx context.Context, keys []string) error {
	b.calls.Add(1)
	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// TestDeleteManyBatches checks that a DeleteMany reaches a batching inner
// store as one call.
func TestDeleteManyBatches(t *testing.T) {
	inner := &batchStore{Memory: remotetest.NewMemory()}
	st := throttle.New(throttle.Config{Requests: 1e6}).Wrap(inner)
	bd := st.(interface {
		DeleteMany(context.Context, []string) error
	})
	if err := bd.DeleteMany(t.Context(), []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	if n := inner.calls.Load(); n != 1 {
		t.Errorf("%d DeleteMany calls reached the store, want 1", n)
	}
}

// TestReadSlices checks that one large Read takes at most 64 KiB of the
// bucket at a time.
func TestReadSlices(t *testing.T) {
	ctx := t.Context()
	inner := remotetest.NewMemory()
	if err := inner.Put(ctx, "k", bytes.NewReader(make([]byte, 1<<20)), 1<<20); err != nil {
		t.Fatal(err)
	}
	st := throttle.New(throttle.Config{Download: 1e9}).Wrap(inner)
	rc, err := st.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := rc.Read(make([]byte, 1<<20))
	if err != nil || n > 64<<10 || n == 0 {
		t.Errorf("Read of 1 MiB gave %d, %v; want 1 to 65536 bytes", n, err)
	}
	if rest, err := io.Copy(io.Discard, rc); err != nil || int64(n)+rest != 1<<20 {
		t.Errorf("read %d+%d bytes, %v; want 1 MiB", n, rest, err)
	}
}
