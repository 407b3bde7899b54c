package remotetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/remote"
)

// Memory is an in-memory remote.Store and remote.Conditional for unit tests
// of the layers above remote. It passes Run. Unlike remote/local it can hold
// both "a" and "a/b", as S3 can. Its ETags count writes, so rewriting the same
// bytes changes the ETag. The zero value is not usable; call NewMemory.
type Memory struct {
	mu   sync.Mutex
	objs map[string]memObject
	gen  uint64 // writes so far; the source of ETags
	now  func() time.Time
}

type memObject struct {
	data []byte // never modified once stored
	info remote.Info
}

var (
	_ remote.Store       = (*Memory)(nil)
	_ remote.Conditional = (*Memory)(nil)
)

// NewMemory returns an empty store whose clock is time.Now.
func NewMemory() *Memory {
	return &Memory{objs: make(map[string]memObject), now: time.Now}
}

// SetClock makes now the store's clock: the ModTime of later writes. Tests of
// time-based rules (lease expiry, grace periods) use it to move time.
func (m *Memory) SetClock(now func() time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = now
}

// Put implements remote.Store.
func (m *Memory) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if err := remote.Begin(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: negative size %d", key, size)
	}
	buf := make([]byte, size)
	r := remote.ContextReader(ctx, data)
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("put %s: data ended after %d of %d bytes", key, n, size)
	}
	if err != nil {
		return fmt.Errorf("put %s: read data: %w", key, err)
	}
	if k, err := io.ReadFull(r, make([]byte, 1)); k > 0 {
		return fmt.Errorf("put %s: data is longer than %d bytes", key, size)
	} else if err != io.EOF {
		return fmt.Errorf("put %s: read data: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.store(key, buf)
	return nil
}

// store saves data under key and returns its new ETag; m.mu is held.
func (m *Memory) store(key string, data []byte) string {
	m.gen++
	etag := strconv.FormatUint(m.gen, 16)
	m.objs[key] = memObject{
		data: data,
		info: remote.Info{Key: key, Size: int64(len(data)), ModTime: m.now(), ETag: etag},
	}
	return etag
}

// PutVerified implements remote.Verifying: Put keeps a copy of the whole
// object.
func (m *Memory) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	err := m.Put(ctx, key, data, size)
	return err == nil, err
}

// PutIf implements remote.Conditional.
func (m *Memory) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if err := remote.Begin(ctx, "put-if", key); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, exists := m.objs[key]
	switch {
	case ifMatch == "" && exists:
		return "", fmt.Errorf("put-if %s: %w: object exists", key, remote.ErrPrecondition)
	case ifMatch != "" && !exists:
		return "", fmt.Errorf("put-if %s: %w: no object to match etag %s", key, remote.ErrPrecondition, ifMatch)
	case ifMatch != "" && cur.info.ETag != ifMatch:
		return "", fmt.Errorf("put-if %s: %w: etag is %s, not %s", key, remote.ErrPrecondition, cur.info.ETag, ifMatch)
	}
	return m.store(key, bytes.Clone(data)), nil
}

// Get implements remote.Store.
func (m *Memory) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := remote.Begin(ctx, "get", key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	obj, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, fs.ErrNotExist)
	}
	size := int64(len(obj.data))
	if offset < 0 || offset > size {
		return nil, fmt.Errorf("get %s: %w: offset %d, object size %d", key, remote.ErrInvalidRange, offset, size)
	}
	end := size
	if length >= 0 && length < size-offset {
		end = offset + length
	}
	return io.NopCloser(remote.ContextReader(ctx, bytes.NewReader(obj.data[offset:end]))), nil
}

// Stat implements remote.Store.
func (m *Memory) Stat(ctx context.Context, key string) (remote.Info, error) {
	if err := remote.Begin(ctx, "stat", key); err != nil {
		return remote.Info{}, err
	}
	m.mu.Lock()
	obj, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return remote.Info{}, fmt.Errorf("stat %s: %w", key, fs.ErrNotExist)
	}
	return obj.info, nil
}

// List implements remote.Store. It lists a snapshot taken when it starts, so
// fn may write to the store.
func (m *Memory) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if err := remote.BeginList(ctx, prefix); err != nil {
		return err
	}
	for _, info := range m.snapshot(prefix) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			if errors.Is(err, remote.ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// snapshot returns the objects under prefix in key order.
func (m *Memory) snapshot(prefix string) []remote.Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	var infos []remote.Info
	for key, obj := range m.objs {
		if strings.HasPrefix(key, prefix) {
			infos = append(infos, obj.info)
		}
	}
	slices.SortFunc(infos, func(a, b remote.Info) int { return strings.Compare(a.Key, b.Key) })
	return infos
}

// ListDirs implements remote.Store.
func (m *Memory) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := remote.BeginListDirs(ctx, prefix); err != nil {
		return nil, err
	}
	var dirs []string
	for _, info := range m.snapshot(prefix) {
		rest := info.Key[len(prefix):]
		if dir, _, ok := strings.Cut(rest, "/"); ok {
			dirs = append(dirs, dir)
		}
	}
	// Key order is not name order: "x-y/1" < "x/1" but "x" < "x-y".
	slices.Sort(dirs)
	return slices.Compact(dirs), nil
}

// Delete implements remote.Store.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := remote.Begin(ctx, "delete", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}
