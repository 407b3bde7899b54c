package cassback

import (
	"context"
	"errors"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/crypt/keyslot"
)

// KeySlots returns the Keys of the given key sources: a store opens with
// the first of its key slots that one of them opens, and a new store gets
// a slot for each.
func KeySlots(srcs ...keyslot.Source) Keys {
	if len(srcs) == 0 {
		return nil
	}
	return slotKeys(srcs)
}

type slotKeys []keyslot.Source

func (s slotKeys) Unlock(ctx context.Context, st remote.Store, storeID string, check func(master []byte) bool) ([]byte, error) {
	master, _, err := keyslot.UnlockChecked(ctx, st, storeID, check, s...)
	return master, err
}

func (s slotKeys) Create(ctx context.Context, st remote.Store, storeID string, master []byte) error {
	for _, src := range s {
		if _, err := keyslot.Add(ctx, st, storeID, master, src); err != nil {
			return err
		}
	}
	return nil
}

// ErrPlainStore reports a key command on a store that is not encrypted.
var ErrPlainStore = errors.New("the store is not encrypted: it has no key slots")

// AddKey adds a key slot of the store's master key for src.
func (r *Repo) AddKey(ctx context.Context, src keyslot.Source) (keyslot.Slot, error) {
	if r.master == nil {
		return keyslot.Slot{}, ErrPlainStore
	}
	// r.master passed the config's check when the store was unlocked.
	return keyslot.Add(ctx, r.raw, r.Config.ID, r.master, src)
}

// KeySlotList lists the store's key slots (never their keys).
func (r *Repo) KeySlotList(ctx context.Context) ([]keyslot.Slot, error) {
	if !r.Config.Encrypted() {
		return nil, ErrPlainStore
	}
	return keyslot.List(ctx, r.raw)
}

// RemoveKey removes a key slot; the last one is refused.
func (r *Repo) RemoveKey(ctx context.Context, id string) error {
	if !r.Config.Encrypted() {
		return ErrPlainStore
	}
	return keyslot.Remove(ctx, r.raw, id)
}
