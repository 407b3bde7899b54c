package gc

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/cassback/cassback/remote"
)

// StoreNow returns the store's clock: the modification time of a probe
// object written now. Every time rule of the collector uses it, never a
// node's clock.
func StoreNow(ctx context.Context, st remote.Store) (time.Time, error) {
	var b [8]byte
	rand.Read(b[:])
	if err := st.Put(ctx, clockKey, bytes.NewReader(b[:]), int64(len(b))); err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	info, err := st.Stat(ctx, clockKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	return info.ModTime, nil
}
