package keyslot

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/cassback/cassback/remote"
)

// Prefix is the folder of slot objects: slot id is the object keys/<id>.
const Prefix = "keys/"

// MaxSlots is the most slots a store may hold; Add refuses more. Unlock
// tries at most that many slots whose kind matches a source.
const MaxSlots = 20

// maxObjects bounds how many objects under Prefix List and Unlock read, so
// that a folder filled by someone else cannot make them read without end.
const maxObjects = 64

// ErrNoKey is wrapped by Unlock's error when no slot opens with the keys
// given (or none is given, or the store has no slot).
var ErrNoKey = errors.New("no key slot opens")

// ErrLastSlot is wrapped by Remove's error when removing the slot would
// leave the store with no readable slot.
var ErrLastSlot = errors.New("last key slot")

// Slot describes a key slot. It holds metadata only, never key bytes.
type Slot struct {
	ID      string
	Kind    string // KindKeyFile, KindPassphrase, KindKMS; "" when Err is set
	Created time.Time
	// KMSKeyID is the KMS key of a kms slot, as given when it was added.
	KMSKeyID string
	// Time, MemoryKiB and Threads are the Argon2id cost of a passphrase slot.
	Time, MemoryKiB, Threads uint32
	// Err is set, by List only, when the object keys/<ID> is not a valid
	// slot (it can still be removed).
	Err error
}

// String describes s in one line.
func (s Slot) String() string {
	if s.Err != nil {
		return fmt.Sprintf("slot %s: %v", s.ID, s.Err)
	}
	d := fmt.Sprintf("%s slot %s created %s", s.Kind, s.ID, s.Created.UTC().Format(time.RFC3339))
	switch s.Kind {
	case KindKMS:
		d += " key " + s.KMSKeyID
	case KindPassphrase:
		d += fmt.Sprintf(" argon2id t=%d m=%dKiB p=%d", s.Time, s.MemoryKiB, s.Threads)
	}
	return d
}

// LogValue logs the slot's metadata.
func (s Slot) LogValue() slog.Value { return slog.StringValue(s.String()) }

func (r *record) slot() Slot {
	return Slot{ID: r.ID, Kind: r.Kind, Created: r.Created, KMSKeyID: r.KMSKeyID, Time: r.T, MemoryKiB: r.M, Threads: r.P}
}

func slotKey(id string) string { return Prefix + id }

// Add wraps master (32 bytes) with src in a new slot of the store storeID
// and writes it to st, create-only when st is remote.Conditional. The
// caller has made sure that master is the store's: Add cannot tell. It
// refuses when the store already has MaxSlots slots.
func Add(ctx context.Context, st remote.Store, storeID string, master []byte, src Source) (Slot, error) {
	if len(master) != keySize {
		return Slot{}, fmt.Errorf("add key slot: master key of %d bytes, want %d", len(master), keySize)
	}
	if storeID == "" {
		return Slot{}, errors.New("add key slot: empty store id")
	}
	if src == nil {
		return Slot{}, errors.New("add key slot: no key given")
	}
	slots, err := read(ctx, st)
	if err != nil {
		return Slot{}, fmt.Errorf("add key slot: %w", err)
	}
	if n := len(slots); n >= MaxSlots {
		return Slot{}, fmt.Errorf("add key slot: store %s has %d slots, the most allowed is %d: remove one first", storeID, n, MaxSlots)
	}
	r := &record{Format: Format, ID: newID(), Kind: src.Kind(), Created: time.Now().UTC().Truncate(time.Second)}
	if err := src.seal(ctx, storeID, r, master); err != nil {
		return Slot{}, fmt.Errorf("add %s key slot: %w", r.Kind, err)
	}
	b, err := r.encode()
	if err != nil {
		return Slot{}, fmt.Errorf("add %s key slot: %w", r.Kind, err)
	}
	if err := create(ctx, st, slotKey(r.ID), b); err != nil {
		return Slot{}, fmt.Errorf("add %s key slot: %w", r.Kind, err)
	}
	return r.slot(), nil
}

// create writes a new object, failing if the key exists when st can tell.
func create(ctx context.Context, st remote.Store, key string, b []byte) error {
	if c, ok := st.(remote.Conditional); ok {
		_, err := c.PutIf(ctx, key, b, "")
		if !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	return st.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}

// stored is one object under Prefix: its bytes and, if valid, its record.
type stored struct {
	id  string
	raw []byte
	rec *record // nil when err is set
	err error
}

// read returns the objects under Prefix, at most maxObjects, each decoded.
// A slot that fails to decode is returned with its error; a failure to list
// or get is returned as the error.
func read(ctx context.Context, st remote.Store) ([]stored, error) {
	var keys []string
	err := st.List(ctx, Prefix, func(info remote.Info) error {
		if len(keys) == maxObjects {
			return remote.ErrStop
		}
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list key slots: %w", err)
	}
	out := make([]stored, 0, len(keys))
	for _, key := range keys {
		s := stored{id: strings.TrimPrefix(key, Prefix)}
		s.raw, s.err = get(ctx, st, key)
		if errors.Is(s.err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if s.err != nil && !errors.Is(s.err, ErrFormat) {
			return nil, s.err
		}
		if s.err == nil {
			s.rec, s.err = decode(s.raw)
		}
		if s.err == nil && s.rec.ID != s.id {
			s.rec, s.err = nil, fmt.Errorf("%w: object %s holds slot %s", ErrFormat, key, s.rec.ID)
		}
		if s.err == nil && !validID(s.id) {
			s.rec, s.err = nil, fmt.Errorf("%w: name %.40q is not 16 lowercase hex digits", ErrFormat, s.id)
		}
		out = append(out, s)
	}
	return out, nil
}

// get reads a slot object, refusing one larger than MaxSlotSize.
func get(ctx context.Context, st remote.Store, key string) ([]byte, error) {
	rc, err := st.Get(ctx, key, 0, MaxSlotSize+1)
	if err != nil {
		return nil, fmt.Errorf("read key slot: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read key slot %s: %w", key, err)
	}
	if len(b) > MaxSlotSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrFormat, MaxSlotSize)
	}
	return b, nil
}

// List returns the slots of st in id order: metadata only. An object under
// keys/ that is not a valid slot is listed with Err set. At most 64 objects
// are read.
func List(ctx context.Context, st remote.Store) ([]Slot, error) {
	objs, err := read(ctx, st)
	if err != nil {
		return nil, err
	}
	slots := make([]Slot, len(objs))
	for i, o := range objs {
		if o.err != nil {
			slots[i] = Slot{ID: o.id, Err: o.err}
			continue
		}
		slots[i] = o.rec.slot()
	}
	return slots, nil
}

// Unlock returns the master key of the store storeID and the slot that
// opened it, trying each source on the slots of its kind, at most
// MaxSlots of them. It writes nothing. When no slot opens, the error is one
// line wrapping ErrNoKey ("no key slot of store S opens with the given key
// (tried 2: passphrase, key-file)"), with the reason a KMS gave when one
// refused. A failure to read the store, a cancelled context or a KMS error
// marked transient (remote.IsTransient) is returned as itself.
func Unlock(ctx context.Context, st remote.Store, storeID string, srcs ...Source) (master []byte, slot Slot, err error) {
	return UnlockChecked(ctx, st, storeID, nil, srcs...)
}

// UnlockChecked is Unlock, taking only a master key that check accepts
// (nil: any): a slot that opens to another master (one a creator that
// lost the race to write the config left behind) is passed over, and the
// next slot tried.
func UnlockChecked(ctx context.Context, st remote.Store, storeID string, check func(master []byte) bool, srcs ...Source) (master []byte, slot Slot, err error) {
	objs, err := read(ctx, st)
	if err != nil {
		return nil, Slot{}, fmt.Errorf("unlock store %s: %w", storeID, err)
	}
	if len(srcs) == 0 {
		return nil, Slot{}, &noKeyError{msg: fmt.Sprintf("unlock store %s: no key given", storeID)}
	}
	var tried, others []string
	var damaged, wrong int
	var refusal error // the last error of a source other than "does not open"
	for _, o := range objs {
		if o.err != nil {
			damaged++
			continue
		}
		matched := false
		for _, src := range srcs {
			if src == nil || src.Kind() != o.rec.Kind {
				continue
			}
			if !matched {
				if len(tried) == MaxSlots {
					break
				}
				matched = true
				tried = append(tried, o.rec.Kind)
			}
			m, err := src.open(ctx, storeID, o.rec)
			if err == nil && len(m) != keySize {
				err = fmt.Errorf("key slot %s: opened to %d bytes, want %d", o.id, len(m), keySize)
				clear(m)
			}
			if err == nil && check != nil && !check(m) {
				clear(m)
				wrong++
				continue
			}
			if err == nil {
				return m, o.rec.slot(), nil
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, Slot{}, fmt.Errorf("unlock store %s: %w", storeID, ctxErr)
			}
			if remote.IsTransient(err) {
				return nil, Slot{}, fmt.Errorf("unlock store %s with key slot %s: %w", storeID, o.id, err)
			}
			if !errors.Is(err, errNotOpened) {
				refusal = fmt.Errorf("slot %s: %w", o.id, err)
			}
		}
		if !matched {
			others = append(others, o.rec.Kind)
		}
	}
	return nil, Slot{}, newNoKeyError(storeID, tried, others, damaged, wrong, refusal)
}

// noKeyError is Unlock's "no slot opens": one line, wrapping ErrNoKey and,
// if a KMS refused, its error.
type noKeyError struct {
	msg     string
	refusal error
}

func (e *noKeyError) Error() string {
	if e.refusal != nil {
		return e.msg + "; " + e.refusal.Error()
	}
	return e.msg
}

func (e *noKeyError) Unwrap() []error {
	if e.refusal == nil {
		return []error{ErrNoKey}
	}
	return []error{ErrNoKey, e.refusal}
}

func newNoKeyError(storeID string, tried, others []string, damaged, wrong int, refusal error) error {
	if len(tried) == 0 && len(others) == 0 && damaged == 0 {
		return &noKeyError{msg: fmt.Sprintf("store %s has no key slot", storeID), refusal: refusal}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "no key slot of store %s opens with the given key (tried %d", storeID, len(tried))
	if len(tried) > 0 {
		b.WriteString(": " + kinds(tried))
	}
	if len(others) > 0 {
		b.WriteString("; other slots: " + kinds(others))
	}
	if damaged > 0 {
		fmt.Fprintf(&b, "; %d unreadable slot(s) skipped", damaged)
	}
	if wrong > 0 {
		fmt.Fprintf(&b, "; %d opened to a key that is not this store's", wrong)
	}
	b.WriteString(")")
	return &noKeyError{msg: b.String(), refusal: refusal}
}

// kinds lists kinds in order of first appearance, with a count when one
// repeats: "passphrase (19), key-file".
func kinds(ks []string) string {
	var order []string
	n := map[string]int{}
	for _, k := range ks {
		if n[k] == 0 {
			order = append(order, k)
		}
		n[k]++
	}
	for i, k := range order {
		if n[k] > 1 {
			order[i] = fmt.Sprintf("%s (%d)", k, n[k])
		}
	}
	return strings.Join(order, ", ")
}

// Remove deletes slot id from st. It refuses, with an error wrapping
// ErrLastSlot, when no other readable slot would remain, and with one
// wrapping fs.ErrNotExist when there is no such slot. An unreadable slot
// object (List's Slot.Err) can always be removed.
//
// Two Removes running at once on the last two slots could each see the
// other slot and delete its own. To never leave the store keyless, Remove
// lists again after deleting: if no readable slot remains it writes the
// slot back from the bytes it read before deleting (create-only, with a
// context that the caller's cancellation does not end) and returns an
// error saying so. If that write fails too, the error says the store may
// have no slot left and tells the operator to add one with the master
// key still open in another process, or to restore keys/<id> from a copy.
// Between the delete and the write-back, an Unlock may find no slot.
func Remove(ctx context.Context, st remote.Store, id string) error {
	if id == "" || strings.Contains(id, "/") || remote.ValidKey(slotKey(id)) != nil {
		return fmt.Errorf("remove key slot %.40q: not a slot id", id)
	}
	objs, err := read(ctx, st)
	if err != nil {
		return fmt.Errorf("remove key slot %s: %w", id, err)
	}
	var target *stored
	others := 0
	for i := range objs {
		switch {
		case objs[i].id == id:
			target = &objs[i]
		case objs[i].err == nil:
			others++
		}
	}
	if target == nil {
		return fmt.Errorf("remove key slot %s: no such slot: %w", id, fs.ErrNotExist)
	}
	if target.err == nil && others == 0 {
		return fmt.Errorf("remove key slot %s: it is the store's last readable slot; add another first: %w", id, ErrLastSlot)
	}
	key := slotKey(id)
	if err := st.Delete(ctx, key); err != nil {
		return fmt.Errorf("remove key slot %s: %w", id, err)
	}
	if target.err != nil {
		return nil // an unreadable slot opened nothing
	}
	// A concurrent Remove may have deleted the others meanwhile.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	after, err := read(wctx, st)
	if err == nil {
		for _, o := range after {
			if o.err == nil {
				return nil
			}
		}
	}
	if err := create(wctx, st, key, target.raw); err != nil && !alreadyHolds(wctx, st, key, target.raw) {
		return fmt.Errorf("remove key slot %s: removed, but a concurrent removal may have left the store with no key slot, "+
			"and writing it back failed: %w; add a slot (cassback key add) from a process that still has the store open, "+
			"or restore %s from a copy of the store", id, err, key)
	}
	if err != nil {
		return fmt.Errorf("remove key slot %s: could not check that another slot remains (%w); the slot was written back, remove it again", id, err)
	}
	return fmt.Errorf("remove key slot %s: a concurrent removal took the other slots, so it was written back: %w", id, ErrLastSlot)
}

// alreadyHolds reports whether key holds exactly b (a write-back that was
// applied though its answer was lost).
func alreadyHolds(ctx context.Context, st remote.Store, key string, b []byte) bool {
	got, err := get(ctx, st, key)
	return err == nil && subtle.ConstantTimeCompare(got, b) == 1
}
