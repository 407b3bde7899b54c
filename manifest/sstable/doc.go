// Package sstable is cassback's knowledge of Cassandra's data directories:
// the file-name grammar of every release, which SSTables are complete, and
// the digests that check a Data.db.
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
// Nothing below a data directory is followed or waited on: Scan takes a
// symbolic link for what it is (skipped as SkipNotRegular, even if it
// points at a table directory or a file named like a component), never
// opens a FIFO or device, and reads TOC.txt and transaction logs with
// OpenFile. Open and OpenDir open data files and directories the same way
// for the backup: O_NOFOLLOW at every level below the data directory,
// O_NONBLOCK, and an fstat(2) that refuses anything but a regular file
// (ErrNotRegular).
//
// DigestAlgorithm and CheckDigest verify Data.db against the Digest component
// (Adler-32 up to 2.2 even in files named Digest.sha1, CRC-32 from 3.0, SHA-1
// hex in 1.x).
//
// # Concurrency
//
// Everything here is a pure function or only reads the file system; Scan and
// CheckComplete may run concurrently with Cassandra and with each other.
//
// # Tests
//
// Table tests pin the grammar; a test copies the real SSTables of
// ../shared/testdata/cassandra-sstables (ka … da, 94 sets) into a live layout
// and checks ParsePath, Scan and CheckDigest against them; synthetic trees
// cover incomplete SSTables, transaction logs and skipped trees; hostile
// trees cover symbolic links to components and directories and FIFOs in
// place of a TOC, a transaction log or a component.
package sstable
