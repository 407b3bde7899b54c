package pack

import "math/bits"

// Padme returns the size Padmé pads an object of n bytes to (Nikitin et
// al., "Reducing Metadata Leakage from Encrypted Files and Communication
// with PURBs", PETS 2019): n rounded up to a multiple of 2^(E-S), where
// E = ⌊log2 n⌋ and S = ⌊log2 E⌋+1, so that a padded size has only about
// log2 log2 n significant bits and says that little of n. The overhead is
// under 2^-S of n: under 1/32 for packs of 2 to 64 MiB (rounded to
// multiples of 64 KiB to 1 MiB), about half that on average.
func Padme(n int64) int64 {
	if n < 2 {
		return n
	}
	e := bits.Len64(uint64(n)) - 1
	s := bits.Len64(uint64(e))
	mask := int64(1)<<(e-s) - 1
	return (n + mask) &^ mask
}
