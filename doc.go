// Package engine runs the work of one node's backups and restores: it scans
// the Cassandra data directories, drives the deduplicating chunk writer,
// writes per-keyspace manifests once everything they reference is durable,
// and restores manifests into a data directory with verified, atomic writes.
//
// It wires the chunk, index, manifest and remote packages together; the
// command line in cmd/cassback only parses flags and prints results.
//
// Tests run real backups and restores of generated node data against the
// local store and an in-memory store with injected faults.
package cassback
