package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
)

// httpClient sends the SDK's requests, counts them by operation and cancels
// any that stalls: the timer runs from the start of a request, restarts at
// every read of the request body (the transport reads it as the connection
// takes it) and covers the wait for the answer; on the response body it runs
// only inside Read, so a caller that is slow to consume a body keeps it.
type httpClient struct {
	inner interface {
		Do(*http.Request) (*http.Response, error)
	}
	timeout time.Duration

	mu sync.Mutex
	n  map[string]int64
}

// stalledError reports a request cancelled for making no progress. It does
// not wrap context.Canceled, which would read as the caller's cancellation.
type stalledError struct{ d time.Duration }

func (e *stalledError) Error() string { return fmt.Sprintf("no progress for %v", e.d) }

func (c *httpClient) counts() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// Do implements the SDK's HTTPClient.
func (c *httpClient) Do(req *http.Request) (*http.Response, error) {
	op := awsmiddleware.GetOperationName(req.Context())
	c.mu.Lock()
	if c.n == nil {
		c.n = make(map[string]int64)
	}
	c.n[op]++
	c.mu.Unlock()

	parent := req.Context()
	ctx, cancel := context.WithCancelCause(parent)
	stall := &stalledError{c.timeout}
	w := &watchdog{d: c.timeout}
	w.timer = time.AfterFunc(c.timeout, func() { cancel(stall) })
	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &progressBody{ReadCloser: req.Body, w: w}
	}
	resp, err := c.inner.Do(req)
	if err != nil {
		w.stop()
		stalled := parent.Err() == nil && errors.Is(context.Cause(ctx), stall)
		cancel(nil)
		if stalled {
			return nil, stall
		}
		return nil, err
	}
	w.stop()
	resp.Body = &watchedBody{ReadCloser: resp.Body, w: w, ctx: ctx, parent: parent, cancel: cancel, stall: stall}
	return resp, nil
}

type watchdog struct {
	mu    sync.Mutex
	timer *time.Timer
	d     time.Duration
}

func (w *watchdog) reset() { w.mu.Lock(); w.timer.Reset(w.d); w.mu.Unlock() }
func (w *watchdog) stop()  { w.mu.Lock(); w.timer.Stop(); w.mu.Unlock() }

// progressBody restarts the timer whenever the transport reads the request
// body.
type progressBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *progressBody) Read(p []byte) (int, error) {
	b.w.reset()
	return b.ReadCloser.Read(p)
}

// watchedBody times each Read of a response body and ends the request's
// context on Close.
type watchedBody struct {
	io.ReadCloser
	w           *watchdog
	ctx, parent context.Context
	cancel      context.CancelCauseFunc
	stall       *stalledError
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.w.reset()
	n, err := b.ReadCloser.Read(p)
	b.w.stop()
	if err != nil && err != io.EOF && b.parent.Err() == nil && errors.Is(context.Cause(b.ctx), b.stall) {
		err = b.stall
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.w.stop()
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}
