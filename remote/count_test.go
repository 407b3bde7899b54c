package remote_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

func TestCountingConformance(t *testing.T) {
	t.Run("Memory", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store { return remote.NewCounting(remotetest.NewMemory()) })
	})
	t.Run("WithoutConditional", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store {
			return remote.NewCounting(remotetest.WithoutConditional(remotetest.NewMemory()))
		})
	})
}

func TestCountingCounts(t *testing.T) {
	ctx := t.Context()
	f := remotetest.NewFaulty(remotetest.NewMemory())
	c := remote.NewCounting(f)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Put(ctx, "a/1", strings.NewReader("hello"), 5))
	must(c.Put(ctx, "a/2", strings.NewReader("hi"), 2))
	if _, err := c.PutIf(ctx, "a/3", []byte("abc"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutIf(ctx, "a/3", []byte("abc"), ""); !errors.Is(err, remote.ErrPrecondition) {
		t.Fatalf("second create: got %v, want ErrPrecondition", err)
	}
	b, err := readAll(c.Get(ctx, "a/1", 1, 3))
	must(err)
	if string(b) != "ell" {
		t.Fatalf("Get: got %q", b)
	}
	if _, err := c.Get(ctx, "missing", 0, -1); err == nil {
		t.Fatal("Get of a missing key: got nil error")
	}
	_, err = c.Stat(ctx, "a/1")
	must(err)
	must(c.List(ctx, "a/", func(remote.Info) error { return nil }))
	// A callback's error is the caller's, not a failed request.
	if err := c.List(ctx, "a/", func(remote.Info) error { return io.ErrUnexpectedEOF }); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("List: got %v", err)
	}
	_, err = c.ListDirs(ctx, "")
	must(err)
	must(c.Delete(ctx, "a/2"))
	f.FailNext(remotetest.OpDelete, 1, nil)
	if err := c.Delete(ctx, "a/2"); err == nil {
		t.Fatal("injected Delete fault: got nil error")
	}
	must(c.DeleteMany(ctx, []string{"a/1", "a/3"})) // Faulty has no DeleteMany: two Deletes

	want := map[string]int64{"PUT": 2, "PUTIF": 2, "GET": 2, "HEAD": 1, "LIST": 3, "DELETE": 4, "DELETEMANY": 0}
	got := c.Counts()
	for k, n := range want {
		if got[k] != n {
			t.Errorf("Counts()[%s]: got %d, want %d", k, got[k], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Counts(): got %v, want the kinds %v", got, want)
	}
	if c.Total() != 14 {
		t.Errorf("Total: got %d, want 14", c.Total())
	}
	if put, get := c.Bytes(); put != 10 || get != 3 {
		t.Errorf("Bytes: got put %d get %d, want 10 and 3", put, get)
	}
	if c.Failed() != 1 {
		t.Errorf("Failed: got %d, want 1 (the injected Delete fault)", c.Failed())
	}
	var log bytes.Buffer
	slog.New(slog.NewTextHandler(&log, nil)).Info("store requests", "requests", c)
	for _, s := range []string{"requests.PUT=2", "requests.GET=2", "requests.bytes_put=10", "requests.failed=1"} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log %q lacks %q", log.String(), s)
		}
	}
	if strings.Contains(log.String(), "DELETEMANY") {
		t.Errorf("log %q names a kind with no calls", log.String())
	}
}

// batch is a store with DeleteMany.
type batch struct {
	remote.Store
	calls int
}

func (b *batch) DeleteMany(ctx context.Context, keys []string) error {
	b.calls++
	for _, k := range keys {
		if err := b.Store.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

func TestCountingDeleteMany(t *testing.T) {
	b := &batch{Store: remotetest.NewMemory()}
	c := remote.NewCounting(b)
	if err := c.DeleteMany(t.Context(), []string{"x", "y"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Counts(); b.calls != 1 || got["DELETEMANY"] != 1 || got["DELETE"] != 0 {
		t.Errorf("DeleteMany on a batch store: got %d batch calls, counts %v; want 1 DELETEMANY", b.calls, got)
	}
	// Through a retrying decorator the batch is kept.
	r := remote.WithRetry(c, fast)
	if err := r.(deleteManyer).DeleteMany(t.Context(), []string{"z"}); err != nil || b.calls != 2 {
		t.Errorf("DeleteMany through WithRetry: got %v, %d batch calls; want 2", err, b.calls)
	}
}

func TestCountingWithoutConditional(t *testing.T) {
	c := remote.NewCounting(remotetest.WithoutConditional(remotetest.NewMemory()))
	if _, err := c.PutIf(t.Context(), "k", nil, ""); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PutIf on a store without it: got %v, want errors.ErrUnsupported", err)
	}
	if c.Total() != 0 || c.Failed() != 0 {
		t.Errorf("an unsupported PutIf was counted: total %d, failed %d", c.Total(), c.Failed())
	}
}

// TestObserved: the observer hears of every counted call with its kind,
// outcome, the bytes a successful write sent, and a duration; an observed
// store still passes the conformance suite.
func TestObserved(t *testing.T) {
	t.Run("Conformance", func(t *testing.T) {
		remotetest.Run(t, func(*testing.T) remote.Store {
			return remote.NewObserved(remotetest.NewMemory(), func(remote.Call) {})
		})
	})
	ctx := t.Context()
	f := remotetest.NewFaulty(remotetest.NewMemory())
	var calls []remote.Call
	c := remote.NewObserved(f, func(call remote.Call) { calls = append(calls, call) })
	if err := c.Put(ctx, "a/1", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	f.FailNext(remotetest.OpPut, 1, nil)
	c.Put(ctx, "a/2", strings.NewReader("hi"), 2)
	c.PutIf(ctx, "a/3", []byte("abc"), "")
	c.Stat(ctx, "missing")
	c.List(ctx, "a/", func(remote.Info) error { return io.ErrUnexpectedEOF }) // the callback's error: the store answered
	want := []struct {
		kind  string
		bytes int64
		err   bool
	}{{"PUT", 5, false}, {"PUT", 0, true}, {"PUTIF", 3, false}, {"HEAD", 0, true}, {"LIST", 0, false}}
	if len(calls) != len(want) {
		t.Fatalf("observed %d calls, want %d: %+v", len(calls), len(want), calls)
	}
	for i, w := range want {
		got := calls[i]
		if got.Kind != w.kind || got.Bytes != w.bytes || (got.Err != nil) != w.err || got.Dur <= 0 {
			t.Errorf("call %d: got %s %d bytes err %v dur %v; want %s %d bytes, error %v, a duration", i, got.Kind, got.Bytes, got.Err, got.Dur, w.kind, w.bytes, w.err)
		}
	}
	if !errors.Is(calls[3].Err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing key: observed %v, want fs.ErrNotExist", calls[3].Err)
	}
}

// stale is a store that keeps temporary files, like remote/local.
type stale struct {
	remote.Store
	age time.Duration
}

func (s *stale) RemoveStaleTemp(_ context.Context, age time.Duration) (int, error) {
	s.age = age
	return 3, nil
}

// TestCountingRemoveStaleTemp: purge finds RemoveStaleTemp through the
// decorator, and gets 0 from a store without temporary files.
func TestCountingRemoveStaleTemp(t *testing.T) {
	type remover interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	}
	s := &stale{Store: remotetest.NewMemory()}
	n, err := remote.NewCounting(s).RemoveStaleTemp(t.Context(), time.Hour)
	if n != 3 || err != nil || s.age != time.Hour {
		t.Errorf("forwarded: got %d, %v, age %v; want 3, nil, 1h", n, err, s.age)
	}
	var st remote.Store = remote.NewCounting(remotetest.NewMemory())
	if n, err := st.(remover).RemoveStaleTemp(t.Context(), time.Hour); n != 0 || err != nil {
		t.Errorf("without temporary files: got %d, %v; want 0, nil", n, err)
	}
}
