package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// Request kinds, as Counting.Counts names them. They follow S3's request
// classes, which is what a bill counts: ListDirs is a LIST, Stat a HEAD.
const (
	KindPut        = "PUT"
	KindPutIf      = "PUTIF"
	KindGet        = "GET"
	KindHead       = "HEAD"
	KindList       = "LIST"
	KindDelete     = "DELETE"
	KindDeleteMany = "DELETEMANY"
)

var kinds = [...]string{KindPut, KindPutIf, KindGet, KindHead, KindList, KindDelete, KindDeleteMany}

const (
	kPut = iota
	kPutIf
	kGet
	kHead
	kList
	kDelete
	kDeleteMany
)

// Counting wraps a Store and counts its calls by kind, the bytes they moved
// and the calls that failed, for logs and benchmarks. Placed under a
// retrying decorator it counts every attempt, so it sees what the backend
// was asked to do. It is safe for concurrent use; counting costs an atomic
// add per call (and per body Read for Get).
//
// Like remotetest.Faulty, Counting always has PutIf; when the inner store is
// not a Conditional, PutIf returns an error wrapping errors.ErrUnsupported,
// which callers already treat as "no conditional writes". It forwards
// RemoveStaleTemp to a store that has it (remote/local).
type Counting struct {
	inner    Store
	n        [len(kinds)]atomic.Int64
	put, got atomic.Int64
	failed   atomic.Int64
	observe  func(Call) // nil: no clock read, no call
}

// Call is one call a Counting saw, as its observer hears of it.
type Call struct {
	Kind  string        // KindPut, KindGet, ...
	Bytes int64         // sent by a Put or PutIf that succeeded
	Err   error         // what the call returned
	Dur   time.Duration // until it returned (for Get, until its body was returned)
}

var (
	_ Store       = (*Counting)(nil)
	_ Conditional = (*Counting)(nil)
)

// NewCounting returns a Counting around st with every counter at zero.
func NewCounting(st Store) *Counting { return &Counting{inner: st} }

// NewObserved returns a Counting around st that also calls fn after every
// call it counts, from the caller's goroutine (fn must be quick and safe
// for concurrent use): for metrics of request latency and outcome. Placed
// above a retrying decorator it sees each call once, its retries and their
// delays included, and the outcome the caller gets.
func NewObserved(st Store, fn func(Call)) *Counting { return &Counting{inner: st, observe: fn} }

// start returns the time a call starts, read only for an observer.
func (c *Counting) start() time.Time {
	if c.observe == nil {
		return time.Time{}
	}
	return time.Now()
}

// done counts a call of kind k that started at t0 and returned err, having
// sent size bytes if it succeeded, and tells the observer.
func (c *Counting) done(k int, t0 time.Time, size int64, err error) error {
	c.count(k, err)
	if err == nil {
		c.put.Add(size)
	}
	if c.observe != nil {
		if err != nil {
			size = 0
		}
		c.observe(Call{Kind: kinds[k], Bytes: size, Err: err, Dur: time.Since(t0)})
	}
	return err
}

// Counts returns the number of calls of each kind so far (every kind is
// present, zero or not).
func (c *Counting) Counts() map[string]int64 {
	m := make(map[string]int64, len(kinds))
	for i, k := range kinds {
		m[k] = c.n[i].Load()
	}
	return m
}

// Total returns the number of calls of every kind.
func (c *Counting) Total() int64 {
	var t int64
	for i := range kinds {
		t += c.n[i].Load()
	}
	return t
}

// Bytes returns the bytes sent by Put and PutIf and the bytes read from Get
// bodies so far.
func (c *Counting) Bytes() (put, got int64) { return c.put.Load(), c.got.Load() }

// Failed returns how many calls returned an error other than not found, a
// lost precondition or ErrStop: for a store under a retrying decorator,
// about the number of retries.
func (c *Counting) Failed() int64 { return c.failed.Load() }

// LogValue logs the non-zero counters: put=12 get=3 bytes_put=… failed=1.
func (c *Counting) LogValue() slog.Value {
	var attrs []slog.Attr
	for i, k := range kinds {
		if n := c.n[i].Load(); n > 0 {
			attrs = append(attrs, slog.Int64(k, n))
		}
	}
	put, got := c.Bytes()
	attrs = append(attrs, slog.Int64("bytes_put", put), slog.Int64("bytes_got", got))
	if f := c.failed.Load(); f > 0 {
		attrs = append(attrs, slog.Int64("failed", f))
	}
	return slog.GroupValue(attrs...)
}

func (c *Counting) count(k int, err error) error {
	c.n[k].Add(1)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrPrecondition) && !errors.Is(err, ErrStop) {
		c.failed.Add(1)
	}
	return err
}

// Put implements Store.
func (c *Counting) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	t0 := c.start()
	return c.done(kPut, t0, size, c.inner.Put(ctx, key, data, size))
}

// PutVerified implements Verifying with the inner store's PutVerified, or
// its Put (reporting false); either counts as a Put.
func (c *Counting) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	t0 := c.start()
	verified, err := PutVerified(ctx, c.inner, key, data, size)
	return verified, c.done(kPut, t0, size, err)
}

// PutIf implements Conditional.
func (c *Counting) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	cs, ok := c.inner.(Conditional)
	if !ok {
		if err := ValidKey(key); err != nil {
			return "", fmt.Errorf("put-if: %w", err)
		}
		return "", fmt.Errorf("put-if %s: %T is not a remote.Conditional: %w", key, c.inner, errors.ErrUnsupported)
	}
	t0 := c.start()
	etag, err := cs.PutIf(ctx, key, data, ifMatch)
	if errors.Is(err, errors.ErrUnsupported) {
		return etag, err // no request worth counting
	}
	return etag, c.done(kPutIf, t0, int64(len(data)), err)
}

// Get implements Store.
func (c *Counting) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	t0 := c.start()
	rc, err := c.inner.Get(ctx, key, offset, length)
	if c.done(kGet, t0, 0, err) != nil {
		return nil, err
	}
	return &countingBody{ReadCloser: rc, n: &c.got}, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

// ETag implements ETagger for the inner body.
func (b *countingBody) ETag() string { return BodyETag(b.ReadCloser) }

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Stat implements Store.
func (c *Counting) Stat(ctx context.Context, key string) (Info, error) {
	t0 := c.start()
	info, err := c.inner.Stat(ctx, key)
	return info, c.done(kHead, t0, 0, err)
}

// List implements Store. A List counts once, however many pages the
// backend fetched.
func (c *Counting) List(ctx context.Context, prefix string, fn func(Info) error) error {
	t0 := c.start()
	var fnErr error
	err := c.inner.List(ctx, prefix, func(info Info) error {
		fnErr = fn(info)
		return fnErr
	})
	if err != nil && fnErr != nil {
		c.done(kList, t0, 0, nil) // the callback's error is not the store's failure
		return err
	}
	return c.done(kList, t0, 0, err)
}

// ListDirs implements Store.
func (c *Counting) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	t0 := c.start()
	dirs, err := c.inner.ListDirs(ctx, prefix)
	return dirs, c.done(kList, t0, 0, err)
}

// Delete implements Store.
func (c *Counting) Delete(ctx context.Context, key string) error {
	t0 := c.start()
	return c.done(kDelete, t0, 0, c.inner.Delete(ctx, key))
}

// batchDeleter is implemented by stores that delete many keys per request
// (S3 DeleteObjects, up to 1,000 keys each).
type batchDeleter interface {
	DeleteMany(ctx context.Context, keys []string) error
}

// DeleteMany deletes keys with the inner store's DeleteMany when it has one
// (one call counted), else one Delete per key (each counted). Missing keys
// are not an error; the error names the keys that could not be deleted.
func (c *Counting) DeleteMany(ctx context.Context, keys []string) error {
	if bd, ok := c.inner.(batchDeleter); ok {
		t0 := c.start()
		return c.done(kDeleteMany, t0, 0, bd.DeleteMany(ctx, keys))
	}
	return deleteEach(ctx, c, keys)
}

// RemoveStaleTemp deletes the inner store's temporary files of crashed
// writes older than age when it keeps such files (remote/local), and
// reports 0 otherwise. It is not a counted request.
func (c *Counting) RemoveStaleTemp(ctx context.Context, age time.Duration) (int, error) {
	if t, ok := c.inner.(interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	}); ok {
		return t.RemoveStaleTemp(ctx, age)
	}
	return 0, nil
}

// deleteEach deletes keys one by one, going on past failures, and joins
// their errors on one line.
func deleteEach(ctx context.Context, st Store, keys []string) error {
	var errs []error
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil {
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, err)
		}
	}
	return JoinErrors(errs)
}

// JoinErrors is errors.Join on one line ("a; b"), for messages that must
// stay one line; nil when errs is empty.
func JoinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return joined(errs)
}

type joined []error

func (j joined) Error() string {
	msgs := make([]string, len(j))
	for i, e := range j {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joined) Unwrap() []error { return j }
