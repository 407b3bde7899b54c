package chunk

import (
	"math/rand/v2"
)

// randomBytes returns n pseudo-random bytes, the same for the same seed on every platform and Go version.
func randomBytes(seed byte, n int) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}
