// Package gc is the garbage-collection protocol of a store that many nodes
// write at once: sessions, the purge lease, condemned sets, and the
// collector that deletes packs no manifest references without stopping
// backups.
//
// Writers (backups) and readers (restores, validate) register a Session,
// renewed by compare-and-swap. A purge takes the Lease, marks every chunk
// the manifests reference (Mark), and condemns dead packs in a
// CondemnedSet before deleting anything; a later sweep deletes a set's
// packs only once every live session has acknowledged the set and a fresh
// mark still finds them unreferenced. Collector.Plan works out what a
// collection would do without changing the store (a dry run prints it);
// Plan.Execute does it in the crash-safe order its doc comment states.
// docs/design.md §4 gives the protocol and the argument for its safety.
//
// # Concurrency
//
// Session methods are safe for concurrent use (a heartbeat goroutine renews
// while the writer works). A Collector and its Plan are used by one
// goroutine; one purge runs at a time per store (the Lease).
//
// # Tests
//
// The protocol is exercised end to end by the engine's tests (races between
// backups, restores and purges, paused writers, two purgers) and by the
// torture test of the command line.
package gc
