// Package manifest is the record of a backup: per-keyspace manifests that
// list the complete SSTables of one keyspace of one host at one moment, each
// file with its chunk list, and where they live in the store.
//
// A Manifest is named by BackupName, the original cassback's
// "<YYYY_MM_DDTHH_MM_SS_ffffff>-<keyspace>-<host>" (UTC), and stored under
// manifests/<host>/<keyspace>/<name> (store.go), so one host's manifests of
// a keyspace sort by time and a day, month or year is a key prefix. Encode
// writes canonical JSON in gzip with a format number; Decode accepts exactly
// the canonical encoding of a valid manifest, bounds the inflated size and
// never panics. Validate states every invariant a stored manifest keeps;
// what a data-directory path means comes from package sstable.
//
// # Concurrency
//
// Everything here is a pure function or works on values the caller owns;
// the store functions may run concurrently.
//
// # Tests
//
// Golden files in testdata/ pin the encoding (go test -update rewrites
// them), and FuzzDecode/FuzzDecodeJSON check that Decode never panics and
// that whatever it accepts re-encodes to the same JSON.
package manifest
