package crypt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/remote"
)

// Store is a remote.Store whose objects are sealed in the store beneath
// it: callers put and get plaintext, the inner store holds only sealed
// segments. Sizes it reports (Stat, List) are plaintext sizes, computed
// from the stored ones; an object whose stored size no sealed object has
// reports Size -1, which matches no recorded size. ETags and times are the
// inner store's. Keys stay as they are.
//
// Exempt keys are passed through unsealed: the config
// (read before any key is known; its secrets are sealed on their own) and
// the key slots (which seal the master key themselves).
//
// Store has PutIf always; when the inner store is not a
// remote.Conditional it returns an error wrapping errors.ErrUnsupported,
// as remote.Counting does. It forwards PutVerified, DeleteMany,
// RemoveStaleTemp and KeyPrefix.
type Store struct {
	inner  remote.Store
	keys   *Keys
	exempt []string
}

// NewStore returns a Store sealing the objects of inner with keys, except
// those whose keys are one of exempt, or start with one of exempt that
// ends in '/'.
func NewStore(inner remote.Store, keys *Keys, exempt ...string) *Store {
	return &Store{inner: inner, keys: keys, exempt: exempt}
}

func (s *Store) sealed(key string) bool {
	for _, e := range s.exempt {
		if key == e || strings.HasSuffix(e, "/") && strings.HasPrefix(key, e) {
			return false
		}
	}
	return true
}

// Put implements remote.Store.
func (s *Store) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if !s.sealed(key) {
		return s.inner.Put(ctx, key, data, size)
	}
	if size < 0 {
		return fmt.Errorf("put %s: size %d", key, size)
	}
	return s.inner.Put(ctx, key, s.sealReader(key, data, size), SealedSize(size))
}

// PutVerified implements remote.Verifying.
func (s *Store) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	if !s.sealed(key) {
		return remote.PutVerified(ctx, s.inner, key, data, size)
	}
	if size < 0 {
		return false, fmt.Errorf("put %s: size %d", key, size)
	}
	return remote.PutVerified(ctx, s.inner, key, s.sealReader(key, data, size), SealedSize(size))
}

// PutIf implements remote.Conditional.
func (s *Store) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	cs, ok := s.inner.(remote.Conditional)
	if !ok {
		return "", fmt.Errorf("put %s: %w", key, errors.ErrUnsupported)
	}
	if !s.sealed(key) {
		return cs.PutIf(ctx, key, data, ifMatch)
	}
	b, err := s.keys.Seal(key, data)
	if err != nil {
		return "", err
	}
	return cs.PutIf(ctx, key, b, ifMatch)
}

// Get implements remote.Store: it reads the segments the range covers and
// opens them as it goes; a segment that does not open ends the body with
// an error wrapping ErrAuth.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if !s.sealed(key) {
		return s.inner.Get(ctx, key, offset, length)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: offset %d: %w", key, offset, remote.ErrInvalidRange)
	}
	if length == 0 {
		// The range is empty, but an offset past the end must still fail:
		// read the segment that holds offset.
		length = 1
		rc, err := s.Get(ctx, key, offset, length)
		if err != nil {
			return nil, err
		}
		rc.Close()
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	first := offset / SegmentSize
	cLen := int64(-1)
	if length > 0 {
		last := (offset + length - 1) / SegmentSize
		cLen = (last - first + 1) * fullLen
	}
	rc, err := s.inner.Get(ctx, key, first*fullLen, cLen)
	if err != nil {
		return nil, err
	}
	// Read the stored bytes readAhead segments at a time, not one.
	ahead := int64(readAhead * fullLen)
	if cLen >= 0 {
		ahead = min(ahead, cLen)
	}
	r := &openReader{s: s, key: key, rc: rc, body: bufio.NewReaderSize(cutBody{rc, key}, int(max(ahead, fullLen))), seg: first, skip: offset - first*SegmentSize, left: length, pbuf: make([]byte, 0, SegmentSize)}
	// Open the first segment now, so that an offset past the end is an
	// error of Get, as the Store contract has it.
	if err := r.fill(); err != nil {
		rc.Close()
		return nil, err
	}
	return r, nil
}

// openReader opens the segments of a ranged read one at a time.
type openReader struct {
	s    *Store
	key  string
	rc   io.ReadCloser
	body *bufio.Reader // rc, buffered: a stored segment is opened where it lies in the buffer
	seg  int64         // index of the next segment to read
	skip int64         // plaintext bytes still to skip before the range
	left int64         // plaintext bytes still to return; < 0: to the end
	pbuf []byte        // the plaintext of the last segment read
	out  []byte        // opened bytes not yet returned (in pbuf)
	eof  bool          // the object's last segment was read
	err  error
}

// fill reads and opens the next segment.
func (r *openReader) fill() error {
	stored, err := r.body.Peek(fullLen)
	n := len(stored)
	switch {
	case err == io.EOF:
		if n == 0 {
			if r.skip > 0 || r.left != 0 {
				// The object ended on a full segment: its last one is lost.
				return fmt.Errorf("%s: ends after segment %d without a last one: %w", r.key, r.seg-1, ErrAuth)
			}
			r.eof = true
			return nil
		}
		r.eof = true
	case err != nil:
		return err
	}
	if r.pbuf, err = r.s.keys.openSegment(r.pbuf[:0], r.key, r.seg, stored); err != nil {
		return err
	}
	_, _ = r.body.Discard(n) // what Peek gave: never fails
	r.out = r.pbuf
	r.seg++
	if r.skip > int64(len(r.out)) {
		if r.eof {
			return fmt.Errorf("get %s: offset past the end: %w", r.key, remote.ErrInvalidRange)
		}
		r.skip -= int64(len(r.out))
		r.out = r.out[:0]
		return nil
	}
	r.out = r.out[r.skip:]
	r.skip = 0
	if r.left >= 0 && int64(len(r.out)) > r.left {
		r.out = r.out[:r.left]
	}
	return nil
}

func (r *openReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.left == 0 || r.eof {
			return 0, io.EOF
		}
		if r.err = r.fill(); r.err != nil {
			return 0, r.err
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	if r.left > 0 {
		r.left -= int64(n)
	}
	return n, nil
}

func (r *openReader) Close() error { return r.rc.Close() }

// cutBody wraps the io.ErrUnexpectedEOF of a body that broke (net/http's
// for a body shorter than its Content-Length), so that fill, which reads
// io.ReadFull's own io.ErrUnexpectedEOF as the object's end, does not take
// a transfer cut short for a damaged object.
type cutBody struct {
	r   io.Reader
	key string
}

func (b cutBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("get %s: body cut short: %w", b.key, err)
	}
	return n, err
}

// ETag forwards the inner body's (remote.ETagger).
func (r *openReader) ETag() string { return remote.BodyETag(r.rc) }

// Stat implements remote.Store.
func (s *Store) Stat(ctx context.Context, key string) (remote.Info, error) {
	info, err := s.inner.Stat(ctx, key)
	if err == nil {
		s.plain(&info)
	}
	return info, err
}

// plain makes info's size the plaintext size of a sealed object.
func (s *Store) plain(info *remote.Info) {
	if !s.sealed(info.Key) {
		return
	}
	n, ok := PlainSize(info.Size)
	if !ok {
		n = -1
	}
	info.Size = n
}

// List implements remote.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	return s.inner.List(ctx, prefix, func(info remote.Info) error {
		s.plain(&info)
		return fn(info)
	})
}

// ListDirs implements remote.Store.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	return s.inner.ListDirs(ctx, prefix)
}

// Delete implements remote.Store.
func (s *Store) Delete(ctx context.Context, key string) error { return s.inner.Delete(ctx, key) }

// DeleteMany deletes keys with the inner store's DeleteMany when it has
// one, else one at a time.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	if bd, ok := s.inner.(interface {
		DeleteMany(context.Context, []string) error
	}); ok {
		return bd.DeleteMany(ctx, keys)
	}
	var errs []error
	for _, k := range keys {
		if err := s.inner.Delete(ctx, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveStaleTemp forwards to the inner store when it keeps temporary
// files (remote/local).
func (s *Store) RemoveStaleTemp(ctx context.Context, age time.Duration) (int, error) {
	if t, ok := s.inner.(interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	}); ok {
		return t.RemoveStaleTemp(ctx, age)
	}
	return 0, nil
}

// KeyPrefix forwards the inner store's (remote.KeyPrefixer).
func (s *Store) KeyPrefix() string {
	if p, ok := s.inner.(remote.KeyPrefixer); ok {
		return p.KeyPrefix()
	}
	return ""
}

// Unwrap returns the store beneath.
func (s *Store) Unwrap() remote.Store { return s.inner }

// sealReader returns a reader of the sealed form of the size bytes data
// yields; it fails if data yields fewer or more.
func (s *Store) sealReader(key string, data io.Reader, size int64) io.Reader {
	r := &sealReader{s: s, key: key, data: data, left: size, segs: size/SegmentSize + 1, last: int(size % SegmentSize)}
	r.bufs, _ = sealBufs.Get().(*sealBuf)
	if r.bufs == nil {
		r.bufs = &sealBuf{in: make([]byte, readAhead*SegmentSize), seg: make([]byte, 0, fullLen)}
	}
	r.in = r.bufs.in[:min(size, readAhead*SegmentSize)]
	return r
}

// sealBufs recycles the buffers of sealReaders that reached their end: a
// MiB a Put, which a backup would otherwise leave to the collector once a
// pack (and the runtime would return to the system and fault in again).
var sealBufs sync.Pool // of *sealBuf

type sealBuf struct {
	in  []byte // readAhead segments of plaintext
	seg []byte // one sealed segment
}

// readAhead is the segments sealReader reads from its data at a time.
const readAhead = 16

// sealReader seals as many whole segments as the caller's buffer holds
// straight into it, and only a segment that does not fit goes through
// bufs.seg; it reads its data readAhead segments at a time. Both keep the
// syscalls of a large object's copy as few as the plaintext's.
type sealReader struct {
	s       *Store
	key     string
	data    io.Reader
	left    int64 // plaintext bytes still to read from data
	segs    int64 // the object's segments
	last    int   // plaintext bytes of its last segment
	seg     int64 // the next segment to seal
	in      []byte
	pend    []byte // plaintext read and not yet sealed (in in)
	checked bool   // data was read to its end and had no more
	out     []byte // bytes not yet read of a sealed segment that did not fit the caller's buffer (in bufs.seg)
	err     error
	bufs    *sealBuf // in and out lie in it; nil once returned to sealBufs
}

// release returns the reader's buffers to sealBufs once it has nothing
// more to give: later calls see only r.err or the end.
func (r *sealReader) release() {
	if r.bufs != nil {
		sealBufs.Put(r.bufs)
		r.bufs, r.in, r.pend, r.out = nil, nil, nil, nil
	}
}

func (r *sealReader) Read(p []byte) (int, error) {
	// What is left of a segment that did not fit the last call comes
	// first, and the call goes on, so that a caller reading with one
	// buffer gets it full every time (writes of a file's whole pages).
	n := copy(p, r.out)
	r.out = r.out[n:]
	for len(r.out) == 0 && r.err == nil && r.seg < r.segs && n < len(p) {
		plain, err := r.plain()
		if err != nil {
			r.err = err
			break
		}
		direct := len(p)-n >= fullLen // the whole sealed segment fits
		dst := p[n:n:len(p)]
		if !direct {
			dst = r.bufs.seg[:0]
		}
		out, err := r.s.keys.sealSegment(dst, r.key, r.seg, plain)
		if err != nil {
			r.err = err
			break
		}
		r.seg++
		c := len(out)
		if !direct {
			c = copy(p[n:], out)
			r.out = out[c:]
		}
		n += c
	}
	switch {
	case n > 0 || len(r.out) > 0:
		return n, nil // an error waits for the next call
	case r.err != nil:
		r.release()
		return 0, r.err
	case len(p) == 0 && r.seg < r.segs:
		return 0, nil
	}
	r.release()
	return 0, io.EOF
}

// plain returns the plaintext of segment r.seg, reading ahead as needed.
func (r *sealReader) plain() ([]byte, error) {
	want := SegmentSize
	if r.seg == r.segs-1 {
		want = r.last
	}
	if len(r.pend) == 0 && !r.checked {
		// Batches end on segment boundaries: pend is empty or holds
		// whole segments and, at the end, the last one.
		n, err := io.ReadFull(r.data, r.in[:min(r.left, int64(len(r.in)))])
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, fmt.Errorf("seal %s: data ended %d bytes early", r.key, r.left-int64(n))
			}
			return nil, err
		}
		r.left -= int64(n)
		r.pend = r.in[:n]
		if r.left == 0 {
			// Data must end here: more bytes, or an error instead of
			// io.EOF, fail the Put.
			var one [1]byte
			switch m, err := io.ReadFull(r.data, one[:]); {
			case m > 0:
				return nil, fmt.Errorf("seal %s: data longer than its size", r.key)
			case err != io.EOF:
				return nil, fmt.Errorf("seal %s: read data: %w", r.key, err)
			}
			r.checked = true
		}
	}
	if len(r.pend) < want {
		return nil, fmt.Errorf("seal %s: segment %d short", r.key, r.seg) // unreachable: batches are whole segments
	}
	b := r.pend[:want]
	r.pend = r.pend[want:]
	return b, nil
}
