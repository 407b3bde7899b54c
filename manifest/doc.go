// Package manifest is the record of a backup: per-keyspace manifests that
// list the complete SSTables of one keyspace of one host at one moment, each
// file with its chunk list, and where they live in the store.
//
// A Manifest is named by BackupName, the original cassback's
// "<YYYY_MM_DDTHH_MM_SS_ffffff>-<keyspace>-<host>" (UTC), and stored under
// manifests/<host>/<keyspace>/<name> (store.go), so one host's manifests of
// a keyspace sort by time and a day, month or year is a key prefix. The
// manifests one backup commits together, of one host and time, are
// marked by one commit marker whose key names each keyspace with the hash
// of its manifest object (commit.go): readers learn from a listing which
// backups count and check the objects they read against it. Encode
// writes a small manifest object (gzipped JSON) and a tree of each table's
// files whose leaves are binary (tree.go, leaf.go); Read accepts exactly
// the one encoding of a valid manifest, bounds what it holds and never
// panics. Validate states every invariant a stored manifest keeps; what a
// data-directory path means comes from package sstable.
//
// # Concurrency
//
// Everything here is a pure function or works on values the caller owns;
// the store functions may run concurrently.
//
// # Tests
//
// Golden files in testdata/ pin the leaf encoding (go test -update
// rewrites them); FuzzDecodeLeaf checks that decoding a leaf never panics
// and that whatever it accepts is valid and re-encodes to the same bytes,
// and FuzzRead the same of a whole manifest; FuzzParseCommitKey that a
// marker key parses to what makes it again. store_test.go splits commits
// at the key limits and reads markers as a union.
package manifest
