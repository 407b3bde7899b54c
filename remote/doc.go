// Package remote is the object-store contract that cassback's shared,
// content-addressed backup store is written through.
//
// A Store maps keys to immutable-looking byte strings with a handful of
// operations: Put, Get with a byte range, Stat, List by prefix, ListDirs and
// Delete. Stores that can compare-and-swap also implement Conditional, found
// with a type assertion as fs.ReadFileFS is. The package knows nothing of
// chunks, packs or manifests: keys are opaque strings, values opaque bytes.
// Backends live in sub-packages (remote/local for a directory, remote/s3);
// retry, rate limiting and request counting are decorators around a Store,
// not code inside a backend.
//
// # Keys
//
// ValidKey defines the key grammar: '/'-separated segments of A-Z a-z 0-9
// '.' '_' '-', none starting with '.', at most 255 bytes each and 1024 in
// all. Every backend checks it before touching a disk or the network, so a
// key can never name a path outside a local store or a backend's own files.
// The 1024 bytes bound the name the server gets (AWS S3 and SeaweedFS
// refuse longer ones): a backend that puts a prefix before every key
// checks keys with ValidKeyUnder, which counts the prefix, and implements
// KeyPrefixer, so MaxKeyLenOf tells how long a key it takes.
//
// # Guarantees
//
// The Store doc comment lists them: atomic, durable, read-after-write Put;
// lexically ordered List; idempotent Delete; cancellation honoured. Writes to
// one key from several hosts are last-writer-wins unless they go through
// Conditional.PutIf, which is atomic against every other write of that key.
//
// # Errors
//
// Not found is fs.ErrNotExist (test with errors.Is), as in io/fs. The other
// sentinels are ErrPrecondition (a conditional write lost), ErrInvalidRange
// (a Get outside the object), ErrInvalidKey (a key or prefix the grammar
// rejects) and ErrStop (returned by a List callback to stop early). Backends
// wrap them with the operation and the key: "get packs/3f/3fa2…: file does
// not exist". Not found, invalid key, invalid range and precondition failures
// are permanent; a retrying decorator must pass them through at once.
//
// # Testing
//
// Every backend runs the conformance suite remotetest.Run, which checks each
// guarantee above, including concurrent writers, readers racing a Put and
// racing conditional creates. remotetest.Memory is an in-memory Store for
// unit tests of the layers above, and remotetest.Faulty wraps any Store to
// inject failures for crash and retry tests.
package remote
