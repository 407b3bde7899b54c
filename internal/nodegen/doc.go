// Package nodegen generates realistic Cassandra data directories for tests,
// benchmarks and demos, and reports exactly what a correct backup of them
// must contain.
//
// # What it writes
//
// Generate lays out one data directory (one data_file_directories entry)
// the way Cassandra 2.1 to 5.0 does: <ks>/<table>-<32 hex id>/ with
// SSTables named by the version's grammar ("nb-7-big-Data.db",
// "da-7-bti-Partitions.db", 2.1's "ks-t-ka-7-Data.db"), secondary indexes
// in .<index>/ (2.2+) or as <table>.<index> files (2.1), system keyspaces
// with Cassandra's name-based table ids, empty tables, snapshots
// (hard links, manifest.json, schema.cql), incremental backups and, on
// request, unfinished work: open transaction logs (3.0+), tmp-/tmplink-
// files (2.x), a missing TOC.txt, Statistics.db.tmp.
//
// Every SSTable is internally consistent and passes CheckSSTable:
//
//   - Data.db is a synthetic row stream (random 16-byte keys, varints,
//     words from a 256-word vocabulary, random blobs) cut into chunks of
//     the version's chunk length, each a zlib stream (Cassandra's
//     DeflateCompressor) followed by its CRC-32 (Adler-32 before 3.0);
//   - CompressionInfo.db names DeflateCompressor and holds chunk length,
//     data length and chunk offsets in Cassandra's big-endian layout;
//   - Digest.* is the decimal checksum of Data.db, without a newline;
//   - TOC.txt lists the components one per line, in an order seen in real
//     files of that version;
//   - Index.db/Summary.db (BIG) or Partitions.db/Rows.db (BTI), Filter.db
//     and Statistics.db are derived from the actual partitions (keys,
//     positions, counts, histograms), with Cassandra's headers and, from
//     4.0, Statistics.db's CRCs. Trie nodes and HyperLogLog registers are
//     stand-ins: nothing here reads them back.
//
// A table's share of Config.TotalBytes is split like size-tiered
// compaction leaves it (tiers 4x apart, one to three SSTables each), so a
// node has a few large SSTables and many small ones.
//
// # Ground truth and operations
//
// Node lists the live SSTables and files, snapshot and backup files and the
// in-flight files. Flush, Compact, RewriteStatistics and Snapshot change
// the tree the way Cassandra does (transaction log or tmp rename, TOC.txt
// last, .tmp then rename for mutable components, hard links) and update
// Node, for continuous-backup simulations. Compact's output payload is its
// inputs' payloads joined end to end, then compressed again: chunks after
// the first input shift, as perf-anchors §3 describes.
//
// # Determinism and cost
//
// Output is a pure function of Config and the directory's path (open
// transaction logs hold absolute paths): names, bytes and, with the default
// simulated clock, file mtimes. It does not depend on Config.Workers.
// Payload is generated in 1 MiB segments, each from its own seed, on
// Workers goroutines; one goroutine per SSTable writes its files in order,
// and Generate writes up to Workers tables at once. Segments can be
// regenerated at will, which is how Compact rebuilds its inputs' payload
// without reading them back.
//
// compress/flate spends its time searching for matches (85-100 MB/s of
// input per core even at BestSpeed). The generator already knows which
// bytes repeat earlier ones (words, constants, zero runs) and which are
// random (blobs), so it passes that along as hints and the encoder writes
// fixed-Huffman and stored deflate blocks without searching, at a
// compression ratio about 10% below BestSpeed's (1.05-1.9 depending on the
// table). Measured on the 2-vCPU dev machine (gennode, default mix, nb):
// one core 97-105 MB/s (200 MB in 2.1 s, 1 GiB in 10.2 s); two cores
// 200 MB in 1.2 s, 1 GiB in 4.5-4.9 s (220-240 MB/s). Config.FlateLevel 1
// uses compress/flate instead: 43 MB/s on two cores. Creating files is a
// fixed cost that dominates small nodes on slow disks.
//
// # Tests
//
// nodegen_test.go generates nodes of every version with all options and
// checks them with an independent scanner that applies the "complete
// SSTable" rule (TOC.txt present and complete, no tmp marker, no
// uncommitted transaction-log ADD); it also checks determinism, every
// chunk's checksum and inflation, the operations, and CheckSSTable against
// the real SSTables in shared/testdata when present.
package nodegen
