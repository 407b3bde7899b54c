package throttle

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/cassback/cassback/remote"
)

// Config sets the limits; a zero field means no limit of that kind.
type Config struct {
	// Upload is the most bytes per second of request bodies sent: Put
	// data and PutIf data (packs, index files, manifests, sessions:
	// everything written).
	Upload float64
	// Download is the most bytes per second of Get bodies read.
	Download float64
	// Requests is the most store calls per second, of every kind (see the
	// package doc for what counts as one).
	Requests float64
}

// Limiter holds the token buckets of a Config. Every Store wrapped by one
// Limiter draws from the same buckets, so one Limiter per process makes
// its limits hold for all its workers together. It is safe for concurrent
// use.
type Limiter struct {
	cfg                Config
	up, down, requests *rate.Limiter // nil: no limit
	upSlice, downSlice int           // most bytes paid for at once
}

// Buckets hold burstTime's worth of tokens and start empty. The bucket is
// what lets workers that are late to ask (woken late on a busy machine,
// busy with a file's fsync) catch up without losing their share: with
// 50 ms buckets, 4 workers got 10-16% less than the limit on a loaded
// 2-core machine. Starting empty keeps a new process from beginning with
// a burst. A body is paid for maxSlice bytes at a time, so no Read takes
// more than that from the bucket at once.
const (
	burstTime = time.Second
	maxSlice  = 64 << 10
)

// New returns a Limiter for cfg. Negative, NaN or infinite limits are
// treated as no limit; callers check ranges themselves.
func New(cfg Config) *Limiter {
	l := &Limiter{cfg: cfg}
	l.up, l.upSlice = byteBucket(cfg.Upload)
	l.down, l.downSlice = byteBucket(cfg.Download)
	if limited(cfg.Requests) {
		l.requests = emptyBucket(cfg.Requests, int(max(1, min(cfg.Requests*burstTime.Seconds(), 1<<30))))
	}
	return l
}

// emptyBucket returns a bucket of burst tokens refilled at r per second,
// empty now.
func emptyBucket(r float64, burst int) *rate.Limiter {
	b := rate.NewLimiter(rate.Limit(r), burst)
	b.ReserveN(time.Now(), burst)
	return b
}

func limited(v float64) bool { return v > 0 && !math.IsInf(v, 0) }

// byteBucket returns a bucket for bps bytes per second, holding
// burstTime's worth of bytes (at least one), and the slice in which bodies
// pay for their bytes: at most 64 KiB and never more than the bucket.
func byteBucket(bps float64) (*rate.Limiter, int) {
	if !limited(bps) {
		return nil, 0
	}
	burst := int(max(1, min(bps*burstTime.Seconds(), 1<<40)))
	return emptyBucket(bps, burst), min(burst, maxSlice)
}

// Config returns the limits l was made with.
func (l *Limiter) Config() Config { return l.cfg }

// Wrap returns st with l's limits applied to every call. The result
// implements remote.Conditional when st does, and always has DeleteMany
// and RemoveStaleTemp (see the package doc). A nil Limiter, or one with no
// limit, returns st itself.
func (l *Limiter) Wrap(st remote.Store) remote.Store {
	if l == nil || (l.up == nil && l.down == nil && l.requests == nil) {
		return st
	}
	s := &store{inner: st, l: l}
	if c, ok := st.(remote.Conditional); ok {
		return &conditional{store: s, cond: c}
	}
	return s
}

// wait takes n tokens from b, waiting until they are there or ctx ends;
// n must not exceed the bucket's burst. A nil bucket never waits.
func wait(ctx context.Context, b *rate.Limiter, n int) error {
	if b == nil || n <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := b.ReserveN(time.Now(), n)
	if !r.OK() {
		return fmt.Errorf("rate limiter: %d tokens exceed the bucket of %d", n, b.Burst())
	}
	d := r.Delay()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel() // give back what was not used, for the other waiters
		return ctx.Err()
	}
}

// waitBytes pays for n bytes from b in slices of at most slice bytes. A
// nil bucket never waits.
func waitBytes(ctx context.Context, b *rate.Limiter, slice int, n int64) error {
	if b == nil {
		return nil
	}
	for n > 0 {
		k := int(min(n, int64(slice)))
		if err := wait(ctx, b, k); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// throttledReader pays for what it reads, a slice at a time, after each
// inner Read: the bytes reach the caller only once paid for.
type throttledReader struct {
	ctx   context.Context
	r     io.Reader
	b     *rate.Limiter
	slice int
}

func (t *throttledReader) Read(p []byte) (int, error) {
	if len(p) > t.slice {
		p = p[:t.slice]
	}
	n, err := t.r.Read(p)
	if werr := wait(t.ctx, t.b, n); werr != nil {
		return n, werr
	}
	return n, err
}

// throttledBody is a Get body read through a throttledReader.
type throttledBody struct {
	throttledReader
	rc io.ReadCloser
}

func (b *throttledBody) Close() error { return b.rc.Close() }

// ETag implements remote.ETagger for the inner body.
func (b *throttledBody) ETag() string { return remote.BodyETag(b.rc) }
