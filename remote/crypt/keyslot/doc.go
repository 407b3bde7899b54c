// Package keyslot wraps a store's master key in key slots: each slot is an
// object keys/<id> that opens to the master with one key source (a key
// file, a passphrase or a KMS key).
//
// # Format
//
// A slot is a JSON object of at most 64 KiB:
//
//	{"format":1,"id":"<16 hex>","kind":"passphrase","created":"<RFC 3339>",
//	 "salt":"<base64, 16 bytes>","t":3,"m":65536,"p":4,"wrapped":"<base64>"}
//
// kind is "key-file", "passphrase" or "kms". A key-file slot has a salt; a
// passphrase slot a salt and its Argon2id cost (t passes, m KiB of memory,
// p lanes); a kms slot the KMS key id (kms_key_id). For key-file and
// passphrase slots, wrapped is nonce (12 bytes) ‖ AES-256-GCM(KEK, master)
// with additional data binding "cassback slot v1", the store ID, the slot
// ID and the kind, so a slot copied to another store or another ID does not
// open. The KEK is HKDF-SHA256(key file bytes, salt, "cassback key-file
// v1") or Argon2id(passphrase, salt, t, m, p). For kms slots, wrapped is
// the KMS ciphertext of the master, made with the encryption context
// {"cassback-store": storeID, "slot": slotID}.
//
// # Invariants
//
//   - The master key, a KEK, a passphrase or a key file's bytes never
//     appear in an error, a String, a GoString or a log value; Slot holds
//     metadata only.
//   - Decoding is strict (unknown fields, missing or out-of-range fields,
//     trailing bytes and oversized objects are refused) and never panics.
//     A slot asking Argon2id for more than 1 GiB, 16 passes or 64 lanes is
//     refused before any key derivation, so a hostile slot cannot exhaust
//     memory or time.
//   - Unlock writes nothing. Add writes one object, create-only
//     (Conditional.PutIf with ifMatch "") when the store supports it.
//   - Remove never leaves a store without a readable slot through its own
//     action; see Remove for the race with a concurrent Remove.
//
// # Concurrency
//
// The functions are safe for concurrent use; Sources are immutable.
//
// # Tests
//
// Round trips of every kind against a real local store (remote/local) and,
// for kms, against the local-kms emulator (remote/s3/kmstest); wrong keys,
// slots from another store, tampered bytes and hostile parameters; a fuzz
// test of the decoder; and a test that formats every error path and greps
// for the test secrets.
package keyslot
