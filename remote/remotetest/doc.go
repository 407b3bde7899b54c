// Package remotetest checks remote.Store implementations and helps test the
// code that uses them.
//
// Run is the conformance suite, in the spirit of testing/fstest.TestFS and
// perkeep's storagetest: every backend's tests call it with a constructor of
// empty stores, and it checks every guarantee the remote.Store and
// remote.Conditional doc comments give. Its subtests run in parallel, each on
// its own store. Its longest keys fill remote.MaxKeyLenOf(store) bytes, and
// one byte more must be refused: a store with a key prefix gets keys that
// are shorter by the prefix.
//
// Memory is an in-memory store with a settable clock, for unit tests of the
// layers above remote. Faulty wraps any store and fails the calls its rules
// select (the next n, all after the first n, all under a key prefix, or
// whatever a hook decides), in three ways: refused, half-read, or applied with
// the reply lost. It counts and logs calls, so a test can assert that a
// retried backup uploads no pack twice. Both are safe for concurrent use.
//
// The package's own tests run Run on Memory, on Faulty without rules, and on
// WithoutConditional, and test Faulty's rules.
package remotetest
