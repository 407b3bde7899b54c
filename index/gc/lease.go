package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cassback/cassback/remote"
)

// Lease is the purger's exclusive lease: one purge at a time.
type Lease struct {
	st   remote.Store
	etag string
	doc  leaseDoc
}

type leaseDoc struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

// ErrLeaseHeld reports that another purge is running.
var ErrLeaseHeld = errors.New("another purge holds the lease")

// AcquireLease takes the purge lease, or takes it over when its holder has
// not renewed it within lease.
func AcquireLease(ctx context.Context, st remote.Store, holder string, lease time.Duration) (*Lease, error) {
	now, err := StoreNow(ctx, st)
	if err != nil {
		return nil, err
	}
	l := &Lease{st: st, doc: leaseDoc{Holder: holder, Since: now}}
	b, _ := json.Marshal(l.doc)
	etag, err := putIf(ctx, st, leaseKey, b, "")
	if err == nil {
		l.etag = etag
		return l, nil
	}
	if !errors.Is(err, remote.ErrPrecondition) {
		return nil, fmt.Errorf("take the purge lease: %w", err)
	}
	var cur leaseDoc
	info, err := getJSON(ctx, st, leaseKey, &cur)
	if err != nil {
		return nil, fmt.Errorf("read the purge lease: %w", err)
	}
	if now.Sub(info.ModTime) <= lease {
		return nil, fmt.Errorf("%w: %s since %s", ErrLeaseHeld, cur.Holder, cur.Since.Format(time.RFC3339))
	}
	etag, err = putIf(ctx, st, leaseKey, b, info.ETag)
	if err != nil {
		return nil, fmt.Errorf("take over the stale purge lease of %s: %w", cur.Holder, err)
	}
	l.etag = etag
	return l, nil
}

// Renew extends the lease; it fails if another purge took it over.
func (l *Lease) Renew(ctx context.Context) error {
	b, _ := json.Marshal(l.doc)
	etag, err := putIf(ctx, l.st, leaseKey, b, l.etag)
	if err != nil {
		return fmt.Errorf("renew the purge lease: %w", err)
	}
	l.etag = etag
	return nil
}

// Release gives the lease up.
func (l *Lease) Release(ctx context.Context) error { return l.st.Delete(ctx, leaseKey) }
