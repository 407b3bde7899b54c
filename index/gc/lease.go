package gc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/cassback/cassback/internal/hole"
	"github.com/cassback/cassback/remote"
)

// leaseFormat is the version of the lease object.
const leaseFormat = 1

type leaseState string

const (
	leaseHeld leaseState = "held"
	leaseFree leaseState = "free"
)

type leaseDoc struct {
	Format int        `json:"format"`
	Holder string     `json:"holder"`
	State  leaseState `json:"state"`
	Since  time.Time  `json:"since"` // store time the holder took it
	Seq    int        `json:"seq"`
}

// Lease is the purger's exclusive lease: one purge at a time. It is taken
// by a create-only write, or by compare-and-swap over a free lease or one
// not renewed within the lease time; renewed by compare-and-swap before
// every destructive step (Renew), and in the background while the purge
// plans (KeepAlive); and released by compare-and-swap to free, never
// deleted, so a purger that lost its lease cannot remove its successor's.
//
// Its methods are safe for concurrent use; like a Session's, they wait
// for one another by polling with the clock.
type Lease struct {
	st    remote.Store
	cas   bool
	clock Clock
	every time.Duration // KeepAlive's period: a third of the lease

	io    sync.Mutex // held across a write; taken with lock
	etag  string
	doc   leaseDoc
	tried []byte // a renewal whose outcome is unknown
	lost  error  // sticky ErrLeaseLost
}

// ErrLeaseHeld reports that another purge is running.
var ErrLeaseHeld = errors.New("another purge holds the lease")

// ErrLeaseLost reports that another purge took the lease over: this one
// must stop before it deletes anything more.
var ErrLeaseLost = errors.New("the purge lease was taken over by another purge")

// ErrNeedExclusive reports a store without atomic conditional writes, on
// which two purges cannot exclude each other: the operator must assert
// that no other cassback process uses the store.
var ErrNeedExclusive = errors.New("this store has no atomic conditional writes (see cassback check-store): purge runs only with --exclusive, when no other cassback process uses the store")

// AcquireLease takes the purge lease, or takes it over when it is free or
// its holder has not renewed it within lease. On a store without
// conditional writes (opts.NoConditional) it is refused unless exclusive.
func AcquireLease(ctx context.Context, st remote.Store, holder string, opts Options, exclusive bool) (*Lease, error) {
	o := opts.WithDefaults()
	if !o.cas() && !exclusive {
		return nil, ErrNeedExclusive
	}
	now, err := StoreNow(ctx, st)
	if err != nil {
		return nil, err
	}
	l := &Lease{st: st, cas: o.cas(), clock: o.Clock, every: o.Lease / 3, doc: leaseDoc{Format: leaseFormat, Holder: holder, State: leaseHeld, Since: now}}
	b, _ := json.Marshal(l.doc)
	etag, err := putIf(ctx, st, leaseKey, b, "", l.cas)
	if err == nil {
		l.etag = etag
		return l, nil
	}
	if !errors.Is(err, remote.ErrPrecondition) {
		return nil, fmt.Errorf("take the purge lease: %w", err)
	}
	var cur leaseDoc
	info, err := getJSON(ctx, st, leaseKey, &cur)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: it changed while being taken; try again", ErrLeaseHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("read the purge lease: %w", err)
	}
	if cur.State != leaseFree && now.Sub(info.ModTime) <= o.Lease {
		return nil, fmt.Errorf("%w: %s since %s", ErrLeaseHeld, cur.Holder, cur.Since.Format(time.RFC3339))
	}
	l.doc.Seq = cur.Seq + 1
	b, _ = json.Marshal(l.doc)
	if l.etag, err = putIf(ctx, st, leaseKey, b, info.ETag, l.cas); err != nil {
		if errors.Is(err, remote.ErrPrecondition) {
			return nil, fmt.Errorf("%w: another purge took it first", ErrLeaseHeld)
		}
		return nil, fmt.Errorf("take over the purge lease of %s: %w", cur.Holder, err)
	}
	return l, nil
}

// Renew extends the lease by compare-and-swap. It fails with ErrLeaseLost
// if another purge took it over; the caller must then stop before its next
// destructive step. A renewal whose response was lost is recognised by the
// next one, which reads the lease back.
func (l *Lease) Renew(ctx context.Context) error {
	if hole.On(hole.LeaseUnfenced) {
		return nil
	}
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.io.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if err := l.swap(ctx); err != nil {
		return fmt.Errorf("renew the purge lease: %w", err)
	}
	return nil
}

// swap writes l.doc with the next sequence number by compare-and-swap on
// the last ETag. If an earlier write's outcome was unknown and the swap
// fails, it reads the lease back: if that write landed, it swaps again on
// top. A lease someone else wrote is lost (ErrLeaseLost, sticky). Called
// with l.io held.
func (l *Lease) swap(ctx context.Context) error {
	l.doc.Seq++
	b, _ := json.Marshal(l.doc)
	etag, err := putIf(ctx, l.st, leaseKey, b, l.etag, l.cas)
	if errors.Is(err, remote.ErrPrecondition) && l.tried != nil {
		cur, curETag, rerr := readBack(ctx, l.st, leaseKey)
		if rerr == nil && bytes.Equal(cur, l.tried) {
			l.etag = curETag
			etag, err = putIf(ctx, l.st, leaseKey, b, l.etag, l.cas)
		}
	}
	switch {
	case errors.Is(err, remote.ErrPrecondition):
		l.lost = ErrLeaseLost
		return l.lost
	case err != nil:
		l.tried = b
		return err
	}
	l.etag, l.tried = etag, nil
	return nil
}

// KeepAlive renews the lease every third of the lease time until ctx ends
// or the lease is lost, so a long plan (reading every manifest of a large
// store) does not let another purge take over. Failed renewals are retried
// at the next period; Renew before each destructive step stays the fence.
func (l *Lease) KeepAlive(ctx context.Context) {
	for {
		if err := l.clock.Sleep(ctx, l.every); err != nil {
			return
		}
		if err := l.Renew(ctx); errors.Is(err, ErrLeaseLost) {
			return
		}
	}
}

// lock takes the write lock, polling with the lease's clock.
func (l *Lease) lock(ctx context.Context) error {
	for !l.io.TryLock() {
		if err := l.clock.Sleep(ctx, lockPoll); err != nil {
			return err
		}
	}
	return nil
}

// Release frees the lease by compare-and-swap; if another purge holds it
// now, it is left alone.
func (l *Lease) Release(ctx context.Context) error {
	if hole.On(hole.LeaseUnfenced) {
		return l.st.Delete(ctx, leaseKey)
	}
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.io.Unlock()
	if l.lost != nil {
		return nil
	}
	l.doc.State = leaseFree
	if err := l.swap(ctx); err != nil && !errors.Is(err, ErrLeaseLost) {
		return fmt.Errorf("release the purge lease: %w", err)
	}
	return nil
}
