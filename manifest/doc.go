// Package manifest is cassback's model of Cassandra's data directories and
// the per-keyspace manifests that record a backup.
//
// # Data directories
//
// ParsePath classifies a path relative to a data directory by the file-name
// grammar of every Cassandra release from 1.0 to 5.0: the 1.0 layout
// (<ks>/<cf>-hd-5-Data.db), the 1.1–2.1 legacy names
// (<ks>/<cf>[-<id>]/<ks>-<cf>-ka-5-Data.db, secondary indexes as <cf>.<idx>),
// the 2.2+ names (<ks>/<cf>-<id>/nb-5-big-Data.db, UUID ids, BTI, SAI
// components, secondary indexes in .<idx>/), temporary files (tmp-/tmplink-
// markers, .tmp and .<timeuuid>.tmp suffixes, tmp/), snapshots/<tag>/,
// backups/ and 3.0+ transaction logs. Anything else is KindOther, never an
// error: a scan must not stop at a stray file.
//
// Scan walks one data directory and returns its complete SSTables: TOC.txt
// present and every component it lists present, no transaction log in the
// directory with an uncommitted ADD for it, no temporary names (before 1.2,
// which has no TOC, Data.db must exist). CheckComplete applies the same rule
// to one SSTable, for the continuous watcher. Files may vanish during a scan;
// that is never an error, but an unreadable directory is.
//
// DigestAlgorithm and CheckDigest verify Data.db against the Digest component
// (Adler-32 up to 2.2 even in files named Digest.sha1, CRC-32 from 3.0, SHA-1
// hex in 1.x).
//
// # Manifests
//
// A Manifest lists the complete SSTables of one keyspace of one host at one
// moment, each file with its chunk list. It is named by BackupName, the
// original cassback's "<YYYY_MM_DDTHH_MM_SS_ffffff>-<keyspace>-<host>"
// (UTC), and stored under manifests/<host>/<keyspace>/<name> (store.go).
// Encode writes canonical JSON in gzip with a format number; Decode accepts
// exactly the canonical encoding of a valid manifest, bounds the inflated
// size and never panics. Validate states every invariant a stored manifest
// keeps.
//
// # Concurrency
//
// Everything here is a pure function or works on values the caller owns;
// Scan and CheckComplete only read the file system and may run concurrently
// with Cassandra and with each other.
//
// # Tests
//
// Table tests pin the grammar; a test copies the real SSTables of
// ../shared/testdata/cassandra-sstables (ka … da, 94 sets) into a live layout
// and checks ParsePath, Scan and CheckDigest against them; synthetic trees
// cover incomplete SSTables, transaction logs and skipped trees; golden
// files in testdata/ pin the encoding (go test -update rewrites them), and
// FuzzDecode/FuzzDecodeJSON check that Decode never panics and that whatever
// it accepts re-encodes to the same JSON.
package manifest
