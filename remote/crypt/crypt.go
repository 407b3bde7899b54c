package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// A sealed object is a run of segments, each sealed on its own so that a
// ranged read needs only the segments it covers:
//
//	segment = version (1 byte, 1) | nonce (24 random bytes) | ciphertext | tag (16 bytes)
//
// Every segment but the last holds SegmentSize bytes of plaintext; the
// last holds fewer, possibly none (an object of a multiple of SegmentSize
// bytes ends with an empty segment), so an object that lost its last
// segments is told apart from a whole one. The segment's AES-256-GCM key
// is the keyed BLAKE3 of the first 12 bytes of its nonce under the store's
// data key, and the GCM nonce is the other 12: a fresh key for every
// segment, so random nonces never repeat under one key however many
// segments the fleet writes. The additional data binds the object's key
// and the segment's index, so a segment moved to another object or place
// does not open.
const (
	// SegmentSize is the plaintext bytes of a full segment.
	SegmentSize = 64 << 10
	// Overhead is the bytes a segment adds to its plaintext.
	Overhead = 1 + nonceLen + tagLen

	version  = 1
	nonceLen = 24
	tagLen   = 16
	fullLen  = SegmentSize + Overhead // a full segment's stored bytes
)

// ErrAuth reports an object whose bytes do not open under the store's key:
// changed since it was written, cut short, or not written by this store.
// It is never transient, and matches remote.ErrCorrupt.
var ErrAuth error = authError{}

type authError struct{}

func (authError) Error() string {
	return "authentication failed (object changed or damaged, or not sealed with this store's key)"
}

func (authError) Is(target error) bool { return target == remote.ErrCorrupt }

// Keys are the secrets derived from a store's master key.
type Keys struct {
	data  [32]byte // roots each segment's key
	check [32]byte // proves a master key right for a store (CheckValue)
	id    [32]byte // keys chunk IDs (ChunkIDKey)

	segKeys sync.Pool // of keyed hashers under data (aead)
}

// NewKeys derives a store's keys from its master key (32 random bytes).
func NewKeys(master []byte) (*Keys, error) {
	if len(master) != 32 {
		return nil, fmt.Errorf("master key of %d bytes, want 32", len(master))
	}
	return &Keys{
		data:  chunk.DeriveKey("cassback 2026 object segments v1", master),
		check: chunk.DeriveKey("cassback 2026 key check v1", master),
		id:    chunk.DeriveKey("cassback 2026 chunk-id v1", master),
	}, nil
}

// ChunkIDKey is the key that names the store's chunks (keyed BLAKE3).
func (k *Keys) ChunkIDKey() [32]byte { return k.id }

// CheckValue returns 16 bytes that a config records so that a master key
// opened from a key slot is known to be the store's before anything is
// read or written with it.
func (k *Keys) CheckValue(storeID string) []byte {
	s := chunk.KeyedSum(&k.check, []byte("cassback store "+storeID))
	return s[:16]
}

// SealedSize returns the stored size of an object of n plaintext bytes.
func SealedSize(n int64) int64 { return n + Overhead*(n/SegmentSize+1) }

// PlainSize returns the plaintext size of a sealed object of c stored
// bytes, and false if no object seals to c bytes.
func PlainSize(c int64) (int64, bool) {
	if c < Overhead {
		return 0, false
	}
	q, r := c/fullLen, c%fullLen
	if r < Overhead {
		return 0, false
	}
	return q*SegmentSize + r - Overhead, true
}

// aead returns the cipher of the segment whose nonce begins with n12.
func (k *Keys) aead(n12 []byte) cipher.AEAD {
	// A keyed hasher is some 11 KB to set up: each segment reuses one.
	h, _ := k.segKeys.Get().(*chunk.Hasher)
	if h == nil {
		h = chunk.KeyedNamer(k.data).NewHasher()
	}
	h.Reset()
	_, _ = h.Write(n12)
	sk := h.Sum()
	k.segKeys.Put(h)
	b, err := aes.NewCipher(sk[:])
	if err != nil {
		panic(err) // unreachable: the key is 32 bytes
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err) // unreachable: AES has 16-byte blocks
	}
	return g
}

// additional returns the additional data of segment i of the object key.
func additional(key string, i int64) []byte {
	buf := make([]byte, 0, 32+len(key))
	buf = append(buf, "cassback segment v1\x00"...)
	buf = append(buf, key...)
	buf = append(buf, 0)
	return binary.BigEndian.AppendUint64(buf, uint64(i))
}

// sealSegment appends to dst segment i of object key holding plain.
func (k *Keys) sealSegment(dst []byte, key string, i int64, plain []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, version)
	dst = append(dst, make([]byte, nonceLen)...)
	nonce := dst[start+1 : start+1+nonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead(nonce[:12]).Seal(dst, nonce[12:], plain, additional(key, i)), nil
}

// openSegment appends to dst the plaintext of segment i of object key.
func (k *Keys) openSegment(dst []byte, key string, i int64, seg []byte) ([]byte, error) {
	if len(seg) < Overhead || len(seg) > fullLen {
		return nil, segmentError(key, i, "size")
	}
	if seg[0] != version {
		return nil, segmentError(key, i, fmt.Sprintf("version %d", seg[0]))
	}
	nonce := seg[1 : 1+nonceLen]
	out, err := k.aead(nonce[:12]).Open(dst, nonce[12:], seg[1+nonceLen:], additional(key, i))
	if err != nil {
		return nil, segmentError(key, i, "tag")
	}
	return out, nil
}

func segmentError(key string, i int64, what string) error {
	return fmt.Errorf("%s: segment %d (%s): %w", key, i, what, ErrAuth)
}

// Seal returns plain sealed as the object key.
func (k *Keys) Seal(key string, plain []byte) ([]byte, error) {
	out := make([]byte, 0, SealedSize(int64(len(plain))))
	for i := int64(0); ; i++ {
		n := min(len(plain), SegmentSize)
		var err error
		if out, err = k.sealSegment(out, key, i, plain[:n]); err != nil {
			return nil, err
		}
		plain = plain[n:]
		if n < SegmentSize {
			return out, nil
		}
	}
}

// Open returns the plaintext of the whole sealed object key.
func (k *Keys) Open(key string, sealed []byte) ([]byte, error) {
	n, ok := PlainSize(int64(len(sealed)))
	if !ok {
		return nil, fmt.Errorf("%s: %d bytes, no sealed object's size: %w", key, len(sealed), ErrAuth)
	}
	out := make([]byte, 0, n)
	for i := int64(0); len(sealed) > 0; i++ {
		m := min(len(sealed), fullLen)
		var err error
		if out, err = k.openSegment(out, key, i, sealed[:m]); err != nil {
			return nil, err
		}
		sealed = sealed[m:]
	}
	return out, nil
}
