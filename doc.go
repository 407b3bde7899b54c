// Package cassback is the engine of cassback: the library that backs up the
// SSTables of one Cassandra node into a shared, deduplicated store and
// restores them, which the command line (cmd/cassback) and the benchmarks
// (bench) use.
//
// Open opens a store (remote.Store) and its index. Backup stores every
// complete SSTable once (one-shot); Continuous watches the data directories
// and stores each SSTable as soon as it is complete. Both drive one
// pipeline (write.go): register a session, read this host's previous
// manifests, cut changed files into chunks, upload new chunks in packs, and
// commit per-keyspace manifests once everything they name is durable.
// Select picks the manifests to restore, Restore writes them into a data
// directory with verified, atomic writes, Validate checks backups down to
// the byte, and Purge removes old manifests and collects the packs no
// manifest needs (index/gc).
//
// The packages below it own one concept each: chunk (content-defined
// chunks and their IDs), index/pack (the packfile format), index (index
// files, the dedup writer, the chunk reader, the store config), index/gc
// (sessions, the purge lease, condemned sets, the collector), manifest
// (backup records), manifest/sstable (Cassandra's file names and data
// directories), watch (file-system events to SSTable events) and remote
// (the object-store contract and its backends).
//
// # Concurrency
//
// A Repo may run one operation at a time per host; operations of different
// processes and hosts on one store run concurrently, coordinated through the
// store (docs/design.md §4).
//
// # Tests
//
// Real backups and restores of generated node data (internal/nodegen) and
// of real SSTables against the local store, an in-memory store with injected
// faults, kill -9 and SIGSTOP of child processes, and a torture test of
// continuous backups racing purges.
package cassback
