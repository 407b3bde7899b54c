package gc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cassback/cassback/remote"
)

// Keys of the protocol's objects (docs/design.md §4).
const (
	sessionPrefix   = "sessions/"
	leaseKey        = "gc/lease"
	clockKey        = "gc/clock"
	condemnedPrefix = "gc/condemned/"
)

// Options are the timings of the protocol. Zero durations mean the
// defaults; tests use Grace and NewPackMargin of -1 (none).
type Options struct {
	Heartbeat     time.Duration // how often sessions renew; default 5 min
	Lease         time.Duration // a session or purge lease not renewed for this long is stale; default 30 min
	Grace         time.Duration // minimum time between condemning a pack and deleting it; default 1 h
	NewPackMargin time.Duration // never condemn a pack younger than this; default 1 h
	// RepackThreshold: a live pack with more than this fraction of its
	// bytes unreferenced is rewritten, so the space comes back; default 0.5,
	// 1 or more disables repacking.
	RepackThreshold float64
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
	if o.RepackThreshold == 0 {
		o.RepackThreshold = 0.5
	}
	return o
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// putIf writes with a condition when the store supports it. On a store
// without conditional writes it falls back to a plain Put: the protocol
// then relies on timing alone (docs/design.md §4).
func putIf(ctx context.Context, st remote.Store, key string, b []byte, ifMatch string) (string, error) {
	if cs, ok := st.(remote.Conditional); ok {
		etag, err := cs.PutIf(ctx, key, b, ifMatch)
		if !errors.Is(err, errors.ErrUnsupported) {
			return etag, err
		}
	}
	if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return "", err
	}
	info, err := st.Stat(ctx, key)
	return info.ETag, err
}

// getJSON reads the small JSON object under key into v.
func getJSON(ctx context.Context, st remote.Store, key string, v any) (remote.Info, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return info, err
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return info, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return info, fmt.Errorf("%s: %w", key, err)
	}
	return info, nil
}
