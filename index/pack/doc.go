// Package pack is the packfile format: how chunks are laid out in one
// stored object, and how a pack is built, checked and read without the
// index.
//
// A pack holds chunks back to back, then a header that lists each chunk's
// ID and length, then a fixed trailer (Layout in pack.go). The header and
// trailer alone rebuild the pack's index entries with two ranged reads
// (ReadHeader), so a lost index file costs time, never data; every chunk's
// ID checks its own bytes. A pack is named by the BLAKE3 of all its bytes
// and stored under Key(id). A random nonce in the trailer makes every
// upload a new key even when two packs hold the same chunks: otherwise a
// chunk uploaded again because its pack was condemned could recreate the
// condemned pack's key just before the collector deletes that key.
//
// Builders are not safe for concurrent use; the decoders are pure functions
// that never panic on hostile bytes (FuzzParse). A golden pack in testdata/
// pins the format.
package pack
