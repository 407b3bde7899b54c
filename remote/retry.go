package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"time"
)

// TransientError marks an error that trying again may cure: throttling, a
// server error, a timeout, a broken connection. A backend wraps such errors
// with Transient where it classifies them; every other error is permanent.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as transient; nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// IsTransient reports whether err is marked transient. Not found,
// ErrPrecondition, ErrInvalidKey, ErrInvalidRange, errors.ErrUnsupported and
// context cancellation or expiry are permanent even inside a transient
// wrapper: retrying them cannot help, or the caller has given up.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	for _, perm := range []error{fs.ErrNotExist, ErrPrecondition, ErrInvalidKey, ErrInvalidRange,
		errors.ErrUnsupported, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, perm) {
			return false
		}
	}
	var t *TransientError
	return errors.As(err, &t)
}

// RetryOptions configures WithRetry and Retry. Zero values mean defaults.
type RetryOptions struct {
	// Attempts is how many times a call is tried in all, the first included;
	// 0 means 6. 1 disables retries.
	Attempts int
	// BaseDelay and MaxDelay shape the backoff: before retry n (from 0) the
	// call sleeps a uniformly random time in [0, min(MaxDelay, BaseDelay×2^n)]
	// ("full jitter", which spreads the retries of many clients that failed
	// together). Defaults 500ms and 30s: six attempts ride out about 15 s of
	// outage on average, 31 s at most.
	BaseDelay, MaxDelay time.Duration
	// AttemptTimeout bounds each attempt of Stat, Delete, ListDirs, PutIf and
	// DeleteMany, and of Get until its reader is returned; a Put attempt gets
	// AttemptTimeout plus one second per MiB. An attempt that runs out is
	// cancelled and retried. List attempts are not bounded (the callback's
	// time counts against them); a backend detects stalls inside a request
	// or a body. 0 means 2 minutes; negative disables the bound.
	AttemptTimeout time.Duration
	// Log receives one WARN record per retry (operation, key, attempt,
	// delay, error); nil logs nothing. Errors from backends carry no secrets.
	Log *slog.Logger
	// OnRetry, if set, hears of every retry before its delay, with the
	// operation ("put", "get", "stat", "list", ...) and the error of the
	// attempt that failed: for metrics. It must be quick and safe for
	// concurrent use.
	OnRetry func(op string, err error)
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.Attempts <= 0 {
		o.Attempts = 6
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 30 * time.Second
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 2 * time.Minute
	}
	return o
}

// delay returns the sleep before retry n (0 for the first retry).
func (o RetryOptions) delay(n int) time.Duration {
	d := o.MaxDelay
	if n < 30 {
		if b := o.BaseDelay << n; b > 0 && b < d {
			d = b
		}
	}
	return rand.N(d + 1)
}

// retryBufferLimit is the largest Put body WithRetry copies into memory to
// be able to send it again when it can neither seek nor read at offsets.
// Larger bodies of that kind get a single attempt.
const retryBufferLimit = 64 << 20

// putTimeoutPerByte is what each byte adds to a Put attempt's time limit:
// one second per MiB, a floor far below any link cassback should run on.
const putTimeoutPerByte = time.Second / (1 << 20)

// Retry calls fn until it returns nil or an error IsTransient rejects, ctx
// ends, or opts.Attempts attempts have failed, sleeping with exponential
// backoff and full jitter between attempts. Each attempt's context expires
// after opts.AttemptTimeout. what names the operation in logs and errors.
func Retry(ctx context.Context, opts RetryOptions, what string, fn func(context.Context) error) error {
	r := &retrier{opts: opts.withDefaults()}
	return r.do(ctx, what, "", r.opts.AttemptTimeout, func(ctx context.Context, _ int) error { return fn(ctx) })
}

// WithRetry returns st with every call retried as Retry does, for errors
// marked transient only. The result implements Conditional when st does,
// and always has DeleteMany (see Counting.DeleteMany). Besides retrying
// whole calls it
//   - replays a Put's data by seeking back, or from a copy in memory when
//     the data cannot seek and is at most 64 MiB (larger such bodies get one
//     attempt);
//   - resumes a Get body that breaks with a transient error by asking for
//     the rest from the offset reached, so a long ranged read survives a
//     dropped connection. Only bodies that name the version they read
//     (see ETagger) are resumed, and only from the same version: if the
//     object was replaced meanwhile the read fails rather than mix two
//     versions;
//   - resumes a List after the last key it delivered, so fn never sees a
//     key twice; errors returned by fn are never retried;
//   - treats a PutIf that fails with ErrPrecondition after an earlier
//     attempt failed transiently as having won when the object now holds
//     exactly its data (the earlier attempt was applied but its answer was
//     lost), and returns the object's ETag.
func WithRetry(st Store, opts RetryOptions) Store {
	r := &retrier{inner: st, opts: opts.withDefaults()}
	if c, ok := st.(Conditional); ok {
		return &retryConditional{retrier: r, cond: c}
	}
	return r
}

// ETagger is implemented by Get bodies that know the ETag of the object
// version they read (an S3 GetObject answer carries it). WithRetry resumes
// a broken body only when it and the resumed one report the same non-empty
// ETag; decorators that wrap bodies should forward it.
type ETagger interface {
	ETag() string
}

// BodyETag returns the ETag a Get body reports, or "" if it reports none.
func BodyETag(rc io.ReadCloser) string {
	if e, ok := rc.(ETagger); ok {
		return e.ETag()
	}
	return ""
}

type retrier struct {
	inner Store
	opts  RetryOptions
}

type retryConditional struct {
	*retrier
	cond Conditional
}

var (
	_ Store       = (*retrier)(nil)
	_ Conditional = (*retryConditional)(nil)
)

// attemptTimedOut is the cause of an attempt context that ran out of time.
var attemptTimedOut = errors.New("attempt timed out")

// permanent carries an error that must end the retries at once (a List
// callback's). It has no Unwrap, so IsTransient never sees through it.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// do runs fn until it succeeds or fails for good. fn gets the attempt
// number, from 1.
func (r *retrier) do(ctx context.Context, op, key string, timeout time.Duration, fn func(context.Context, int) error) error {
	for attempt := 1; ; attempt++ {
		err := r.attempt(ctx, op, key, timeout, func(ctx context.Context) error { return fn(ctx, attempt) })
		if err == nil {
			return nil
		}
		if p, ok := err.(permanent); ok {
			return p.err
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("%w; %w", err, ctx.Err())
		}
		if ctx.Err() != nil || !IsTransient(err) {
			return err
		}
		if attempt >= r.opts.Attempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		if err := r.backoff(ctx, op, key, attempt, err); err != nil {
			return err
		}
	}
}

// backoff logs a failed attempt and sleeps before the next one.
func (r *retrier) backoff(ctx context.Context, op, key string, attempt int, err error) error {
	d := r.opts.delay(attempt - 1)
	if r.opts.OnRetry != nil {
		r.opts.OnRetry(op, err)
	}
	if r.opts.Log != nil {
		attrs := []any{"op", op, "attempt", attempt, "delay", d.Round(time.Millisecond), "err", err}
		if key != "" {
			attrs = append(attrs[:2:2], append([]any{"key", key}, attrs[2:]...)...)
		}
		r.opts.Log.Warn("store request failed; retrying", attrs...)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", op, key, ctx.Err())
	}
}

// attempt runs fn under a context that expires after timeout (if > 0) and
// turns that expiry into a transient error.
func (r *retrier) attempt(ctx context.Context, op, key string, timeout time.Duration, fn func(context.Context) error) error {
	if timeout <= 0 {
		return fn(ctx)
	}
	actx, cancel := context.WithTimeoutCause(ctx, timeout, attemptTimedOut)
	defer cancel()
	err := fn(actx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), attemptTimedOut) {
		// Drop err: it wraps context.DeadlineExceeded, which would read as
		// the caller's own deadline.
		return Transient(fmt.Errorf("%s %s: no answer within %v", op, key, timeout))
	}
	return err
}

// Put implements Store.
func (r *retrier) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	_, err := r.PutVerified(ctx, key, data, size)
	return err
}

// PutVerified implements Verifying with the inner store's PutVerified, or
// its Put (reporting false); what counts is the attempt that succeeded.
func (r *retrier) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (verified bool, err error) {
	rewind, data, err := replayable(data, size)
	if err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	timeout := r.opts.AttemptTimeout
	if timeout > 0 && size > 0 {
		timeout += time.Duration(size) * putTimeoutPerByte
	}
	put := func(ctx context.Context) (err error) {
		verified, err = PutVerified(ctx, r.inner, key, data, size)
		return err
	}
	if rewind == nil {
		return verified, r.attempt(ctx, "put", key, timeout, put)
	}
	err = r.do(ctx, "put", key, timeout, func(ctx context.Context, attempt int) error {
		if attempt > 1 {
			if err := rewind(); err != nil {
				return permanent{fmt.Errorf("put %s: rewind data: %w", key, err)}
			}
		}
		return put(ctx)
	})
	return verified, err
}

// replayable returns data, or a copy of it, with a function that rewinds it
// for another attempt; rewind is nil when data can be sent only once.
func replayable(data io.Reader, size int64) (rewind func() error, _ io.Reader, _ error) {
	if s, ok := data.(io.Seeker); ok {
		if pos, err := s.Seek(0, io.SeekCurrent); err == nil {
			return func() error { _, err := s.Seek(pos, io.SeekStart); return err }, data, nil
		}
	}
	if size < 0 || size > retryBufferLimit {
		return nil, data, nil
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(data, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, fmt.Errorf("data shorter than %d bytes: %w", size, err)
	}
	switch _, err := io.ReadFull(data, make([]byte, 1)); {
	case err == nil:
		return nil, nil, fmt.Errorf("data longer than %d bytes", size)
	case !errors.Is(err, io.EOF):
		return nil, nil, err
	}
	br := bytes.NewReader(b)
	return func() error { _, err := br.Seek(0, io.SeekStart); return err }, br, nil
}

// Get implements Store.
func (r *retrier) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, cancel, err := r.open(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	return &resumingBody{r: r, ctx: ctx, key: key, offset: offset, length: length, rc: rc, cancel: cancel, etag: BodyETag(rc)}, nil
}

// open gets a body with retries. Its attempt's time limit stops counting
// once the reader is returned, and cancel (called when the body is closed)
// ends the attempt's context.
func (r *retrier) open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, context.CancelFunc, error) {
	var (
		rc     io.ReadCloser
		cancel context.CancelFunc
	)
	err := r.do(ctx, "get", key, 0, func(ctx context.Context, _ int) error {
		actx, acancel := context.WithCancelCause(ctx)
		var timer *time.Timer
		if t := r.opts.AttemptTimeout; t > 0 {
			timer = time.AfterFunc(t, func() { acancel(attemptTimedOut) })
		}
		body, err := r.inner.Get(actx, key, offset, length)
		if timer != nil && !timer.Stop() && err == nil {
			// The timer fired as the answer came: the body's context is
			// gone, so count it as a time-out.
			body.Close()
			err = context.Cause(actx)
		}
		if err != nil {
			acancel(nil)
			if ctx.Err() == nil && errors.Is(context.Cause(actx), attemptTimedOut) {
				return Transient(fmt.Errorf("get %s: no answer within %v", key, r.opts.AttemptTimeout))
			}
			return err
		}
		rc, cancel = body, func() { acancel(nil) }
		return nil
	})
	return rc, cancel, err
}

// resumingBody reads a Get's body and, when it breaks with a transient
// error, opens the rest of the range again.
type resumingBody struct {
	r              *retrier
	ctx            context.Context
	key            string
	offset, length int64 // what is left to read; length < 0: to the end
	rc             io.ReadCloser
	cancel         context.CancelFunc
	resumes        int
	etag           string // of the version read; "" means no resuming
	err            error  // sticky
}

// ETag implements ETagger.
func (b *resumingBody) ETag() string { return b.etag }

func (b *resumingBody) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.rc.Read(p)
		b.offset += int64(n)
		if b.length >= 0 {
			b.length -= int64(n)
		}
		if err == nil || err == io.EOF || b.ctx.Err() != nil || !IsTransient(err) || b.etag == "" {
			return n, err
		}
		if b.length == 0 {
			return n, io.EOF
		}
		if b.resumes+1 >= b.r.opts.Attempts {
			b.err = fmt.Errorf("%w (gave up after %d attempts)", err, b.resumes+1)
			return n, b.err
		}
		b.resumes++
		b.rc.Close()
		b.cancel()
		if err := b.r.backoff(b.ctx, "get", b.key, b.resumes, err); err != nil {
			b.err = err
			return n, err
		}
		rc, cancel, err := b.r.open(b.ctx, b.key, b.offset, b.length)
		if err != nil {
			b.err = err
			b.rc, b.cancel = io.NopCloser(bytes.NewReader(nil)), func() {}
			return n, err
		}
		b.rc, b.cancel = rc, cancel
		if got := BodyETag(rc); got != b.etag {
			b.err = fmt.Errorf("get %s: the object changed while it was read (ETag %s, then %s)", b.key, b.etag, got)
			return n, b.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (b *resumingBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// Stat implements Store.
func (r *retrier) Stat(ctx context.Context, key string) (Info, error) {
	var info Info
	err := r.do(ctx, "stat", key, r.opts.AttemptTimeout, func(ctx context.Context, _ int) error {
		var err error
		info, err = r.inner.Stat(ctx, key)
		return err
	})
	return info, err
}

// List implements Store.
func (r *retrier) List(ctx context.Context, prefix string, fn func(Info) error) error {
	var (
		last    string
		started bool
	)
	return r.do(ctx, "list", prefix, 0, func(ctx context.Context, _ int) error {
		var fnErr error
		err := r.inner.List(ctx, prefix, func(info Info) error {
			if started && info.Key <= last {
				return nil // delivered by an earlier attempt
			}
			last, started = info.Key, true
			if err := fn(info); err != nil {
				if !errors.Is(err, ErrStop) {
					fnErr = err
				}
				return err
			}
			return nil
		})
		if err != nil && fnErr != nil {
			return permanent{err}
		}
		return err
	})
}

// ListDirs implements Store.
func (r *retrier) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	var dirs []string
	err := r.do(ctx, "list-dirs", prefix, r.opts.AttemptTimeout, func(ctx context.Context, _ int) error {
		var err error
		dirs, err = r.inner.ListDirs(ctx, prefix)
		return err
	})
	return dirs, err
}

// Delete implements Store.
func (r *retrier) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, r.opts.AttemptTimeout, func(ctx context.Context, _ int) error {
		return r.inner.Delete(ctx, key)
	})
}

// DeleteMany deletes keys, in batches when the store can (see
// Counting.DeleteMany); each batch or key is retried.
func (r *retrier) DeleteMany(ctx context.Context, keys []string) error {
	bd, ok := r.inner.(batchDeleter)
	if !ok {
		return deleteEach(ctx, r, keys)
	}
	if len(keys) == 0 {
		return nil
	}
	timeout := r.opts.AttemptTimeout
	if timeout > 0 {
		timeout *= time.Duration((len(keys) + 999) / 1000)
	}
	return r.do(ctx, "delete-many", keys[0], timeout, func(ctx context.Context, _ int) error {
		return bd.DeleteMany(ctx, keys)
	})
}

// PutIf implements Conditional.
func (r *retryConditional) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	var etag string
	err := r.do(ctx, "put-if", key, r.opts.AttemptTimeout, func(ctx context.Context, attempt int) error {
		var err error
		etag, err = r.cond.PutIf(ctx, key, data, ifMatch)
		if attempt > 1 && errors.Is(err, ErrPrecondition) {
			// An earlier attempt failed transiently; it may have been
			// applied with its answer lost.
			if e, ok := holds(ctx, r.retrier, key, data); ok {
				etag, err = e, nil
			}
		}
		return err
	})
	return etag, err
}

// holds reports whether key holds exactly data, and its ETag then; any
// error, or a change while it reads, answers false.
func holds(ctx context.Context, st Store, key string, data []byte) (string, bool) {
	before, err := st.Stat(ctx, key)
	if err != nil || before.Size != int64(len(data)) {
		return "", false
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return "", false
	}
	got, err := io.ReadAll(io.LimitReader(rc, int64(len(data))+1))
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		return "", false
	}
	after, err := st.Stat(ctx, key)
	if err != nil || after.ETag != before.ETag {
		return "", false
	}
	return after.ETag, true
}
