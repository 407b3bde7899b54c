package chunk

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"hash"

	"github.com/zeebo/blake3"
)

// ID names a chunk (and any other content-addressed object) by the BLAKE3-256
// hash of its bytes. It is comparable and usable as a map key.
type ID [32]byte

// String returns the ID as 64 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID, which never names real content
// in practice and marks "no hash" in records.
func (id ID) IsZero() bool { return id == ID{} }

// Compare orders IDs by their bytes, for slices.SortFunc.
func Compare(a, b ID) int { return bytes.Compare(a[:], b[:]) }

// ParseID parses 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("chunk id %q: want 64 hex digits, got %d characters", s, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunk id %q: %w", s, err)
	}
	return id, nil
}

// MarshalText encodes the ID as hex, so IDs read well in JSON.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes hex produced by MarshalText.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Sum returns the BLAKE3-256 of data.
func Sum(data []byte) ID { return ID(blake3.Sum256(data)) }

// Hasher computes an ID incrementally, for whole files and objects.
type Hasher struct {
	h     *blake3.Hasher
	key   [32]byte // of a keyed Hasher: the pool gives it only to its Namer
	keyed bool
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher { return &Hasher{h: blake3.New()} }

// Write adds p to the hash; it never fails.
func (h *Hasher) Write(p []byte) (int, error) { return h.h.Write(p) }

// Sum returns the ID of everything written so far.
func (h *Hasher) Sum() ID {
	var id ID
	h.h.Sum(id[:0])
	return id
}

// Reset empties the Hasher.
func (h *Hasher) Reset() { h.h.Reset() }

// Hash exposes the Hasher as a hash.Hash.
func (h *Hasher) Hash() hash.Hash { return h.h }
