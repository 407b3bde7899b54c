package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Store is the object-store contract every backend implements.
//
// Keys are opaque to the store but must pass ValidKey; a backend rejects an
// invalid key before any filesystem or network call. Values are opaque bytes.
// A store may not hold both "a" and "a/b" (a file cannot also be a
// directory); S3 can. Callers must not rely on either behaviour.
//
// Guarantees every implementation gives (checked by remotetest.Run):
//   - Put is atomic: a reader sees either no object, the previous object, or
//     all of the new one, never part of it; after Put returns nil the object is
//     durable and visible to Get, Stat and List (read-after-write). A failed
//     or cancelled Put leaves the previous object, or none, in place.
//   - Get, Stat and Delete of a missing key: Get and Stat return an error
//     wrapping fs.ErrNotExist; Delete of a missing key is not an error.
//   - List visits every key that starts with prefix, in increasing byte order,
//     including keys written before List was called; keys written during a List
//     may or may not be seen.
//   - A cancelled context makes every method return an error wrapping
//     ctx.Err() (context.Canceled or context.DeadlineExceeded).
//   - An invalid key or prefix gives an error wrapping ErrInvalidKey.
//
// Implementations are safe for concurrent use by multiple goroutines and, for
// shared stores, by multiple processes and hosts.
type Store interface {
	// Put stores size bytes read from data under key, replacing any object
	// there. data must yield exactly size bytes: if it ends early, has more,
	// or returns an error, Put fails and stores nothing.
	Put(ctx context.Context, key string, data io.Reader, size int64) error
	// Get returns length bytes of the object starting at offset; length < 0
	// means up to the end. A length that reaches past the end is clipped to
	// the end, as HTTP range requests are. offset == size gives an empty body.
	// offset < 0 or offset > size gives an error wrapping ErrInvalidRange.
	// The caller closes the reader.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat returns the object's size, modification time and ETag.
	Stat(ctx context.Context, key string) (Info, error)
	// List calls fn for each object whose key starts with prefix (which must
	// pass ValidPrefix and may end mid-segment), in increasing byte order of
	// the key. It stops and returns fn's error if fn returns one (ErrStop
	// stops without error). fn may call the store's other methods.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// ListDirs returns, in increasing byte order, the distinct segments that
	// follow prefix in the keys under it, for keys that continue with '/'
	// after that segment ("directories"). prefix must be "" or end in '/'.
	// A directory with no key under it is never reported.
	ListDirs(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time // the store's clock, not the writer's
	// ETag is opaque and compared only for equality. It changes whenever
	// the content changes; some stores also change it when the same bytes
	// are written again, so it is not a content hash. Stat, List and PutIf
	// agree on it.
	ETag string
}

// Conditional is implemented by stores that support compare-and-swap writes
// (S3 If-None-Match / If-Match). The garbage collector's session and lease
// objects need it; detect it with a type assertion.
type Conditional interface {
	// PutIf stores data under key only if the condition holds at the moment of
	// the write, atomically with respect to every other write or delete of
	// that key. ifMatch == "" means the key must not exist yet
	// (If-None-Match: *); otherwise the object's current ETag must equal
	// ifMatch. It returns the new ETag, or an error wrapping ErrPrecondition
	// when the condition fails. A store that implements the method but finds
	// at run time that it cannot honour it (an S3 server that ignores the
	// headers) returns an error wrapping errors.ErrUnsupported.
	PutIf(ctx context.Context, key string, data []byte, ifMatch string) (etag string, err error)
}

// Verifying is implemented by stores whose Put can confirm that the object
// it stored holds exactly the bytes sent, so that a caller that must see
// an object stored whole before relying on it (a pack before an index file
// names it: docs/design.md §2) need not read its size back (PutDurable).
type Verifying interface {
	// PutVerified is Put, and reports whether the store confirmed the
	// object: S3 echoed the CRC-32C it checked before storing the bytes,
	// the local store synced its file and renamed it into place. When it
	// reports false the caller checks the object before relying on it.
	PutVerified(ctx context.Context, key string, data io.Reader, size int64) (verified bool, err error)
}

// PutVerified stores data under key with st's PutVerified when st is
// Verifying, else with Put (reporting false).
func PutVerified(ctx context.Context, st Store, key string, data io.Reader, size int64) (bool, error) {
	if v, ok := st.(Verifying); ok {
		return v.PutVerified(ctx, key, data, size)
	}
	return false, st.Put(ctx, key, data, size)
}

// PutDurable stores an object the caller will rely on being whole: it Puts
// it and, unless the store confirmed the write (Verifying), reads its size
// back with a Stat, so that an acknowledged upload that left nothing, or
// less, is an error rather than a "phantom" object.
func PutDurable(ctx context.Context, st Store, key string, data io.Reader, size int64) error {
	verified, err := PutVerified(ctx, st, key, data, size)
	if err != nil || verified {
		return err
	}
	info, err := st.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("put %s: not seen stored: %w", key, err)
	}
	if info.Size != size {
		return fmt.Errorf("put %s: stored %d bytes, want %d", key, info.Size, size)
	}
	return nil
}

// ErrPrecondition reports a failed conditional write.
var ErrPrecondition = errors.New("precondition failed")

// ErrCorrupt is matched by errors of reads whose bytes fail the store's
// own integrity check (an encrypted store's authentication, remote/crypt):
// the object is damaged, and reading it again will not help. Readers treat
// it as they treat bytes that do not decode.
var ErrCorrupt = errors.New("stored bytes fail their integrity check")

// ErrStop may be returned by a List callback to stop listing without error.
var ErrStop = errors.New("stop listing")

// ErrInvalidRange reports a Get whose offset lies outside the object. Like
// HTTP 416 it is permanent for that object: retrying cannot help, and to an
// index reader it means the object is shorter than recorded.
var ErrInvalidRange = errors.New("invalid range")

// ContextReader returns a reader of r that fails with ctx's error once ctx
// ends, checked before every Read: backends use it so a cancelled Put or Get
// stops between buffers instead of running to the end.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
