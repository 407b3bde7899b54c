package gc

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/internal/random"
	"github.com/cassback/cassback/remote"
)

// Keys of the protocol's objects (docs/design.md §4).
const (
	sessionPrefix   = "sessions/"
	leaseKey        = "gc/lease"
	clockKey        = "gc/clock"
	probePrefix     = "gc/probe-"
	condemnedPrefix = "gc/condemned/"
)

// Options are the timings of the protocol. Zero durations mean the
// defaults; tests use Grace and NewPackMargin of -1 (none).
type Options struct {
	Heartbeat     time.Duration // how often sessions renew; default 5 min
	Lease         time.Duration // a session or purge lease not renewed for this long is stale; default 30 min
	Grace         time.Duration // minimum time between condemning a pack and deleting it; default 1 h
	NewPackMargin time.Duration // never condemn a pack younger than this; default 1 h
	// ScanEvery is how long purges may go without one that lists every
	// pack (scan.go); default 7 days, negative for every purge.
	ScanEvery time.Duration
	// RepackThreshold: a live pack with more than this fraction of its
	// bytes unreferenced is rewritten, so the space comes back; default 0.5,
	// 1 or more disables repacking.
	RepackThreshold float64
	// NoConditional says the store has no atomic conditional writes (its
	// config says so, from ProbeConditional at creation): sessions are written with plain PUTs, and purge
	// never revokes a session nor takes the lease unless exclusive.
	NoConditional bool
	// Clock is this process's clock, for heartbeats and the local fence;
	// nil means the system clock. Safety never depends on it.
	Clock Clock
	// HideSizes makes a repack of a plaintext store pad and spread its
	// packs (index.WriterOptions Pad and Spread), as an encrypted store's
	// writers always do; the simulator sets it.
	HideSizes bool
}

// WithDefaults returns o with every zero field set to its default and every
// negative duration set to zero.
func (o Options) WithDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			*d = 0
		}
	}
	def(&o.Heartbeat, 5*time.Minute)
	def(&o.Lease, 30*time.Minute)
	def(&o.Grace, time.Hour)
	def(&o.NewPackMargin, time.Hour)
	def(&o.ScanEvery, 7*24*time.Hour)
	if o.RepackThreshold == 0 {
		o.RepackThreshold = 0.5
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	return o
}

// cas reports whether compare-and-swap may be relied on.
func (o Options) cas() bool { return !o.NoConditional || hole.On(hole.PlainFallback) }

func randomID() string {
	var b [12]byte
	random.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ProbeConditional reports whether the store honours conditional writes:
// a create-only write of a fresh key succeeds, a second one fails with a
// precondition error, and an If-Match with a wrong ETag fails too. It
// writes and removes one probe object. It cannot tell an atomic server
// from one whose conditions race; `cassback check-store` can.
func ProbeConditional(ctx context.Context, st remote.Store) (bool, error) {
	cs, ok := st.(remote.Conditional)
	if !ok {
		return false, nil
	}
	key := probePrefix + randomID()
	defer st.Delete(context.WithoutCancel(ctx), key)
	etag, err := cs.PutIf(ctx, key, []byte("probe"), "")
	if errors.Is(err, errors.ErrUnsupported) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("probe conditional writes: %w", err)
	}
	_, err = cs.PutIf(ctx, key, []byte("again"), "")
	if errors.Is(err, errors.ErrUnsupported) || err == nil {
		return false, nil
	}
	if !errors.Is(err, remote.ErrPrecondition) {
		return false, fmt.Errorf("probe conditional writes: %w", err)
	}
	_, err = cs.PutIf(ctx, key, []byte("again"), etag+"x")
	if errors.Is(err, errors.ErrUnsupported) || err == nil {
		return false, nil
	}
	if !errors.Is(err, remote.ErrPrecondition) {
		return false, fmt.Errorf("probe conditional writes: %w", err)
	}
	return true, nil
}

// putIf writes with a condition. Where the store has no conditional writes
// (cas false) it writes plainly: the protocol then never relies on the
// condition (docs/design.md §4.6).
func putIf(ctx context.Context, st remote.Store, key string, b []byte, ifMatch string, cas bool) (string, error) {
	if cas {
		err := errors.ErrUnsupported
		if cs, ok := st.(remote.Conditional); ok {
			var etag string
			if etag, err = cs.PutIf(ctx, key, b, ifMatch); !errors.Is(err, errors.ErrUnsupported) {
				return etag, err
			}
		}
		if !hole.On(hole.PlainFallback) {
			return "", fmt.Errorf("write %s: %w: the store had conditional writes when it was created (run cassback check-store)", key, err)
		}
	}
	if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return "", err
	}
	info, err := st.Stat(ctx, key)
	return info.ETag, err
}

// maxObject bounds the small JSON objects of the protocol (sessions, the
// lease, condemned-set shards): a larger one is an error naming it.
const maxObject = 16 << 20

// errTooLarge marks an object larger than its kind allows.
var errTooLarge = errors.New("object too large")

// getJSON reads the small JSON object under key into v, with its Info.
// Its Stat size, at most maxObject, sizes the buffer; it never reads more
// than maxObject bytes, even of an object replaced since (a lease renewed
// in between is read as it is now: its ETag then no longer matches info).
func getJSON(ctx context.Context, st remote.Store, key string, v any) (remote.Info, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return info, err
	}
	if info.Size > maxObject {
		return info, fmt.Errorf("%s: %d bytes is more than %d: %w", key, info.Size, maxObject, errTooLarge)
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if errors.Is(err, remote.ErrCorrupt) {
		return info, decodeError{err} // damaged: as if it did not decode
	}
	if err != nil {
		return info, err
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, info.Size+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(rc, maxObject+1)); err != nil {
		if errors.Is(err, remote.ErrCorrupt) {
			return info, decodeError{err} // damaged: as if it did not decode
		}
		return info, err
	}
	if buf.Len() > maxObject {
		return info, fmt.Errorf("%s: more than %d bytes: %w", key, maxObject, errTooLarge)
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return info, fmt.Errorf("%s: %w", key, decodeError{err})
	}
	return info, nil
}

// decodeError marks an object read whole that does not decode: not JSON,
// or a value a field's own unmarshaler refuses (a chunk ID that is not 64
// hex digits), which encoding/json returns as is.
type decodeError struct{ error }

func (e decodeError) Unwrap() error { return e.error }
