package gc

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/cassback/cassback/internal/random"
	"github.com/cassback/cassback/remote"
)

// Clock is a process's own clock. Sessions time their heartbeats and
// their local fence with it; the simulator substitutes a virtual one.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends (then it returns ctx's error).
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the system's clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep implements Clock.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// StoreNow returns the store's clock: the modification time of a probe
// object written now. The time rules of the collector (stale sessions,
// grace, the new-pack margin) use it, never a node's clock; none of them
// is needed for safety, only for progress.
func StoreNow(ctx context.Context, st remote.Store) (time.Time, error) {
	var b [8]byte
	random.Read(b[:])
	if err := st.Put(ctx, clockKey, bytes.NewReader(b[:]), int64(len(b))); err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	info, err := st.Stat(ctx, clockKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	return info.ModTime, nil
}
