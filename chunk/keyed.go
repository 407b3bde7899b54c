package chunk

import "github.com/zeebo/blake3"

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
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(err) // unreachable: the key is 32 bytes
	}
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	return id
}
