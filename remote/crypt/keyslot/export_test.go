package keyslot

// CheapPassphrase is Passphrase with the cheapest Argon2id cost (1 pass,
// 64 KiB, 1 lane), for tests that derive many keys; the default cost is
// tested by TestPassphraseDefaultCost.
func CheapPassphrase(p string) Source {
	return passphrase{p: []byte(p), t: 1, m: 64, par: 1}
}

// Decode exposes the strict decoder to the tests.
func Decode(b []byte) error {
	_, err := decode(b)
	return err
}
