// Package chunk cuts files into content-defined chunks and names content by its BLAKE3-256 hash.
//
// Split reads a file through an io.ReaderAt and returns its chunk list (File) while handing each chunk to a
// callback, which stores it. Cut points are chosen by restic/chunker's Rabin fingerprint over a 64-byte
// window, so equal content gives equal chunks wherever it sits in a file, and a backup only uploads the chunks
// the store lacks. The package does no I/O beyond the io.ReaderAt it is given and knows nothing of packs or
// stores. It is the only package that imports BLAKE3.
//
// # Invariants
//
//   - An ID is the BLAKE3-256 of the bytes it names: a chunk, a whole file (File.Sum), or any other object;
//     except that on an encrypted store a chunk's ID is its keyed BLAKE3-256 under a store secret (Namer,
//     carried in Params but never stored), which File.Chunks and every reader checking a chunk then use.
//   - A store's Params are chosen once, with a random polynomial (NewParams), and kept in its config; every node
//     splits with them. Changing any field, even Segment, changes the cuts and forks deduplication.
//   - A file is cut into segments of Params.Segment bytes at fixed offsets, each chunked on its own; so there
//     is a cut at every segment boundary, and the chunks depend only on the bytes and the Params, never on the
//     parallelism or the timing of a Split. Chunks are MinSize..MaxSize bytes long, except the last of a
//     segment, which may be shorter. File.Chunks lists them in order and their lengths add up to File.Size.
//   - The pinned vector in split_test.go guards all of this: it must never change.
//
// # Concurrency
//
// Split chunks up to par segments at once, one goroutine each, and calls its callback from all of them: in
// offset order within a segment, in no order across segments. Each goroutine holds about MaxSize + 512 KiB of
// buffers, pooled across calls (17 MiB with the defaults); on unix the chunk buffer, most of it, is mapped
// outside the Go heap (buffer.go), so it costs only the pages it touches and does not raise the collector's
// goal. The whole-file hash costs no extra pass: the goroutine of the first segment not yet hashed hashes its
// bytes as it reads them, and segments read ahead of it are read again from r (normally from the page cache,
// moments after the first read) when their turn comes. If the file changes while it is split, File.Sum may not match the chunks; SSTables never change.
// The other functions and types are safe for concurrent use.
//
// # Testing
//
// split_test.go pins the chunk lengths, first IDs and whole-file sum of 48 MiB of fixed ChaCha8 bytes with two
// sets of Params; checks that par 1 to 64 give the same result, that each chunk's ID is the BLAKE3 of its
// bytes, that segment boundaries are cut, and that edits re-synchronise (most chunks stay shared); forces each
// interleaving of the whole-file hash with gated readers; and covers the empty file, cancellation, callback
// and read errors, and a file that shrank. params_test.go covers Validate's errors and the JSON field names.
// buffer_test.go checks that a Split of 48 MiB allocates under 4 MiB in the heap (no buffer grown by append,
// none in the heap on unix) and that buffers come zeroed and writable.
//
// # Performance
//
// On the 2-vCPU AMD EPYC (Zen 3) dev machine, BenchmarkSplit over 256 MiB of random data with the defaults
// (go test -run x -bench Split -benchtime 3x ./chunk/, median of 3 runs with no other load) splits at
// 394 MB/s on one core (par=1) and 672 MB/s on both, 1.7 times as fast. That includes the BLAKE3 of every chunk
// and of the whole file; restic/chunker alone runs at about 600 MB/s, two thirds of the one-core cost.
//
// For the whole-file hash, a separate goroutine re-reading the file sequentially was measured too (medians of
// the quiet runs among 5): no faster with both cores busy (662 against 655 MB/s), 463 against 414 MB/s with par=1 only
// because it then takes a second core, and it reads every byte twice. So the segments' own reads are hashed.
package chunk
