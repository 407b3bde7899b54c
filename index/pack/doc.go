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
// A pack is encoded as its chunks come by a Writer, which hashes the bytes
// as they pass; a backup spools each open pack to an unlinked temporary
// file (Spool) and uploads it from there, so a pack costs its writer 64 KiB
// and 40 bytes a chunk of memory, not the pack. Builder is the same encoder
// into memory, for small packs (those of manifest tree nodes, at most
// MaxTreePack) and tests.
//
// An encrypted store pads its packs (Writer.Pad, format 3): zero bytes
// after the chunks bring the pack to its Padme size, so that the sizes an
// observer sees say little of the chunks inside; a last header entry with
// the zero ID records the padding, and readers drop it from the entries
// they return.
//
// Writers, Spools and Builders are not safe for concurrent use; the
// decoders are pure functions that never panic on hostile bytes
// (FuzzParse). Golden packs in testdata/ pin both formats (pack-v2, and
// pack-v3 padded); the Writer must reproduce the first (TestWriterGolden).
package pack
