package throttle

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cassback/cassback/remote"
)

// listPage is how many keys one LIST request returns (S3's page size):
// List takes a request token for every listPage keys it delivers past the
// first page, and DeleteMany one per listPage keys, as S3's DeleteObjects
// takes at most that many.
const listPage = 1000

type store struct {
	inner remote.Store
	l     *Limiter
}

type conditional struct {
	*store
	cond remote.Conditional
}

var (
	_ remote.Store       = (*store)(nil)
	_ remote.Conditional = (*conditional)(nil)
)

// request waits for one request token.
func (s *store) request(ctx context.Context, op, key string) error {
	if err := wait(ctx, s.l.requests, 1); err != nil {
		return waitError(op, key, err)
	}
	return nil
}

func waitError(op, key string, err error) error {
	if key == "" {
		return fmt.Errorf("%s: wait for the rate limit: %w", op, err)
	}
	return fmt.Errorf("%s %s: wait for the rate limit: %w", op, key, err)
}

// Put implements remote.Store. The data is paid for as the inner store
// reads it; with an upload limit the inner store sees a plain io.Reader
// (see the package doc for what that costs).
func (s *store) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	_, err := s.PutVerified(ctx, key, data, size)
	return err
}

// PutVerified implements remote.Verifying with the inner store's
// PutVerified, or its Put (reporting false), paid for as Put is.
func (s *store) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	if err := s.request(ctx, "put", key); err != nil {
		return false, err
	}
	if s.l.up != nil {
		data = &throttledReader{ctx: ctx, r: data, b: s.l.up, slice: s.l.upSlice}
	}
	return remote.PutVerified(ctx, s.inner, key, data, size)
}

// PutIf implements remote.Conditional. Its data is in memory, so it is
// paid for before it is sent.
func (c *conditional) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if err := c.request(ctx, "put-if", key); err != nil {
		return "", err
	}
	if err := waitBytes(ctx, c.l.up, c.l.upSlice, int64(len(data))); err != nil {
		return "", waitError("put-if", key, err)
	}
	return c.cond.PutIf(ctx, key, data, ifMatch)
}

// Get implements remote.Store.
func (s *store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := s.request(ctx, "get", key); err != nil {
		return nil, err
	}
	rc, err := s.inner.Get(ctx, key, offset, length)
	if err != nil || s.l.down == nil {
		return rc, err
	}
	return &throttledBody{throttledReader{ctx: ctx, r: rc, b: s.l.down, slice: s.l.downSlice}, rc}, nil
}

// Stat implements remote.Store.
func (s *store) Stat(ctx context.Context, key string) (remote.Info, error) {
	if err := s.request(ctx, "stat", key); err != nil {
		return remote.Info{}, err
	}
	return s.inner.Stat(ctx, key)
}

// List implements remote.Store.
func (s *store) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if err := s.request(ctx, "list", prefix); err != nil {
		return err
	}
	n := 0
	return s.inner.List(ctx, prefix, func(info remote.Info) error {
		if n++; n > listPage && n%listPage == 1 {
			if err := s.request(ctx, "list", prefix); err != nil {
				return err
			}
		}
		return fn(info)
	})
}

// ListDirs implements remote.Store.
func (s *store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := s.request(ctx, "list-dirs", prefix); err != nil {
		return nil, err
	}
	return s.inner.ListDirs(ctx, prefix)
}

// Delete implements remote.Store.
func (s *store) Delete(ctx context.Context, key string) error {
	if err := s.request(ctx, "delete", key); err != nil {
		return err
	}
	return s.inner.Delete(ctx, key)
}

// DeleteMany deletes keys with the inner store's DeleteMany when it has
// one, taking a request token per 1,000 keys, else with one Delete per
// key, going on past failures. Missing keys are not an error.
func (s *store) DeleteMany(ctx context.Context, keys []string) error {
	bd, ok := s.inner.(interface {
		DeleteMany(context.Context, []string) error
	})
	if !ok {
		var errs []error
		for _, k := range keys {
			if err := s.Delete(ctx, k); err != nil {
				if ctx.Err() != nil {
					return err
				}
				errs = append(errs, err)
			}
		}
		return remote.JoinErrors(errs)
	}
	if len(keys) == 0 {
		return nil
	}
	for range (len(keys) + listPage - 1) / listPage {
		if err := s.request(ctx, "delete-many", keys[0]); err != nil {
			return err
		}
	}
	return bd.DeleteMany(ctx, keys)
}

// RemoveStaleTemp forwards to the inner store's RemoveStaleTemp (a local
// folder's cleanup of crashed writes, which purge looks for), unthrottled:
// it makes no store request. A store without one has nothing to remove.
func (s *store) RemoveStaleTemp(ctx context.Context, age time.Duration) (int, error) {
	if t, ok := s.inner.(interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	}); ok {
		return t.RemoveStaleTemp(ctx, age)
	}
	return 0, nil
}
