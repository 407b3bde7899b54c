// Package storecheck checks that a configured store gives the guarantees
// cassback's garbage collector relies on, so that an operator can find out
// before the first purge whether purge may run lock-free on it or needs
// --exclusive. It is what `cassback check-store` runs; kopia's
// `repository validate-provider` is the model.
//
// # What it checks
//
// Run writes only under a fresh scratch prefix, "check-store/<16 hex>/",
// and removes everything it wrote there when it ends, also when a check
// fails or the context is cancelled (best effort: cleanup gets its own
// two-minute budget). It never reads or writes another key, so it may run
// on an empty location or on a store in use. A backend may add writes of
// its own: the S3 backend's first PutIf probes conditional support with a
// hidden ".cassback-probe-<random>" object, which it deletes.
//
// The checks, in report order (the Check* constants name them):
//   - conditional create: PutIf with If-None-Match exists and works; a
//     second create of the key fails with remote.ErrPrecondition;
//   - conditional replace: If-Match succeeds with the current ETag (also
//     one that Stat reported for a plain Put) and fails with a stale one or
//     on a missing key; PutIf and Stat agree on the new ETag;
//   - create-only race: Racers goroutines create one fresh key at once,
//     Rounds times; exactly one wins each round and the key holds its bytes;
//   - If-Match race: as above, all replacing the same current ETag;
//   - read-after-write: Get and Stat see each new version at once after
//     an overwrite; Stat and List agree on size and ETag;
//   - list-after-write: a new key shows in List at once, and its directory
//     in ListDirs;
//   - delete visibility: after Delete, Get and Stat say fs.ErrNotExist and
//     List and ListDirs no longer show the key; deleting a missing key is
//     not an error;
//   - ranged reads: Get returns exactly the bytes asked for, clips a range
//     that reaches past the end, gives nothing at offset == size and
//     remote.ErrInvalidRange beyond;
//   - store clock: objects carry the store's modification time, which the
//     purge protocol uses as its clock; the report shows its offset from
//     this host's clock, which does not matter to purge.
//
// The first four are the conditional checks: a store without conditional
// writes gets NotSupported for each, which is not a failure. The others are
// the consistency checks. Report.Verdict turns the results into one of the
// Verdict* sentences: lock-free purge needs every check to pass; a store
// that passes the consistency checks but lacks atomic conditional writes
// needs --exclusive; a store that fails a consistency check is not safe
// for cassback at all.
//
// # What a pass means
//
// The races are evidence, not proof: a server whose check-then-write window
// is narrow may pass a few rounds and still lose a race in production, and
// a store fronted by several gateways may serialise the writes that reach
// one of them (rustfs#1659). More rounds (Options.Rounds) narrow the doubt;
// a server known to have been non-atomic should be upgraded past the fix
// whatever the check says (docs/s3.md lists them).
//
// # Concurrency and cost
//
// Run itself is sequential except for the races. On S3 it makes about
// 90 + 80 × Rounds requests with 32 racers: 1,670 with the defaults, 1,350
// of them PUTs (under a cent at AWS list prices), and uploads about 20 MiB,
// the racers' 16 KiB bodies. On versitygw over loopback it takes 2 s.
//
// # Testing
//
// storecheck_test.go runs Run against remotetest.Memory, remote/local and
// versitygw (remote/s3/s3test), and against wrappers that break one
// guarantee each: no PutIf, PutIf that reports errors.ErrUnsupported, a
// PutIf that checks and then writes without a lock, and a Get that serves
// the previous version after an overwrite. Each must yield the verdict it
// deserves, and nothing may be left under the scratch prefix.
package storecheck
