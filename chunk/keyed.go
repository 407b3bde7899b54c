package chunk

import (
	"sync"

	"github.com/zeebo/blake3"
)

// Keys for an encrypted store come from its master key through BLAKE3's
// key-derivation mode, and keyed BLAKE3 serves as its PRF (only this
// package imports BLAKE3).

// DeriveKey returns the 32-byte key BLAKE3 derives from material for the
// purpose named by context, a constant string unique to that purpose
// ("cassback 2026 chunk-id v1").
func DeriveKey(context string, material []byte) [32]byte {
	var k [32]byte
	blake3.DeriveKey(context, material, k[:])
	return k
}

// KeyedSum returns the keyed BLAKE3-256 of data under key: a PRF, so
// without the key its value says nothing of data.
func KeyedSum(key *[32]byte, data []byte) ID {
	h := KeyedNamer(*key).getHasher()
	_, _ = h.Write(data)
	id := h.Sum()
	putHasher(h)
	return id
}

// pooled recycles Hashers, plain and keyed: a BLAKE3 hasher is some 11 KB
// to set up, and a backup sums every file, and on an encrypted store
// names every chunk, with one. Each remembers its Namer; one taken for
// another is dropped (a process works with one store at a time).
var pooled sync.Pool // of *Hasher

// getHasher returns an empty Hasher of n's kind, for putHasher.
func (n Namer) getHasher() *Hasher {
	if h, _ := pooled.Get().(*Hasher); h != nil && h.keyed == n.keyed && h.key == n.key {
		h.Reset()
		return h
	}
	if !n.keyed {
		return NewHasher()
	}
	h, err := blake3.NewKeyed(n.key[:])
	if err != nil {
		panic(err) // unreachable: the key is 32 bytes
	}
	return &Hasher{h: h, key: n.key, keyed: true}
}

// putHasher returns h, from getHasher, to be used again; the caller keeps
// no reference to it.
func putHasher(h *Hasher) { pooled.Put(h) }

// Namer names chunks, and the tree nodes stored as chunks, by their
// content. The zero Namer is plain BLAKE3-256 (Sum), the IDs of a store
// that is not encrypted; KeyedNamer gives those of an encrypted store,
// keyed BLAKE3 under a store secret, so that nodes sharing the store still
// name equal data alike (and dedup it) while an ID, in the store's index
// or a node's cache, says nothing of the data to one without the secret.
//
// Only chunk IDs are named so: the other content-addressed names (packs,
// index files, manifest objects, whole-file sums) stay plain, as they hash
// bytes that are stored encrypted or never leave a manifest. A Namer is a
// small comparable value: two made from one key are equal.
type Namer struct {
	key   [32]byte
	keyed bool
}

// KeyedNamer returns the Namer that names data by its keyed BLAKE3-256
// under key (derive key from the store's master key with DeriveKey).
func KeyedNamer(key [32]byte) Namer { return Namer{key: key, keyed: true} }

// Keyed reports whether n names chunks by keyed BLAKE3.
func (n Namer) Keyed() bool { return n.keyed }

// Sum returns the ID of a chunk holding data.
func (n Namer) Sum(data []byte) ID {
	if !n.keyed {
		return Sum(data)
	}
	return KeyedSum(&n.key, data)
}

// NewHasher returns an empty Hasher of n's kind: a whole file's sum on an
// encrypted store is keyed too, so that a manifest's file sums, in a
// node's cache, confirm no guessed file (a file of one chunk would have
// its chunk's ID as its sum).
func (n Namer) NewHasher() *Hasher {
	if !n.keyed {
		return NewHasher()
	}
	return n.getHasher()
}

// String says which kind of Namer n is, never its key, so that a Namer
// printed with its Params (%v, %+v) cannot leak the secret.
func (n Namer) String() string {
	if n.keyed {
		return "keyed-blake3-256"
	}
	return "blake3-256"
}

// GoString is String, for %#v.
func (n Namer) GoString() string { return n.String() }
