// Package throttle limits what a process asks of its store: bytes uploaded
// per second, bytes downloaded per second and requests per second, so that
// backups of many nodes neither saturate the network (Medusa's users saw 40
// nodes do it) nor exceed a provider's request rate.
//
// A Limiter holds one token bucket per limit (golang.org/x/time/rate);
// Limiter.Wrap returns a remote.Store that draws from them. Every store
// wrapped by the same Limiter shares its buckets, so one Limiter per
// process bounds all its workers together, however many there are.
//
// # What is counted
//
//   - Upload: the bytes of Put data as the inner store reads them, and of
//     PutIf data (in memory) before it is sent. Put bodies are read through
//     a reader that pays for each Read's bytes after the inner Read, at
//     most 64 KiB at a time (a large Read returns at most 64 KiB), so a
//     store that writes as it reads, as a local folder does, writes at
//     the limit.
//   - Download: the bytes of Get bodies as the caller reads them, the same
//     way. Bytes the caller never reads are not paid for.
//   - Requests: one token per Put, PutIf, Get, Stat, List, ListDirs and
//     Delete; one more per 1,000 keys a List delivers past its first
//     1,000, and one per 1,000 keys of a DeleteMany (S3's page and batch
//     sizes, which is what a provider counts).
//
// Each bucket holds one second of its rate and starts empty: workers late
// to ask for tokens (woken late on a busy machine, or in a file's fsync)
// catch up within that second instead of losing their share, and after an
// idle spell at most one second's worth goes at once. Waits honour the
// context: a cancelled wait returns an error wrapping ctx.Err() and gives
// its tokens back.
//
// # Composition
//
// Wrap keeps what callers detect by type assertion: the result implements
// remote.Conditional when the inner store does, forwards remote.ETagger on
// Get bodies, and always has DeleteMany (the inner store's, else one
// Delete per key) and RemoveStaleTemp (the inner store's, else nothing to
// do), as remote.Counting and remote.WithRetry do.
//
// Placed above remote.WithRetry (as cmd/cassback places it), a retried
// request is not paid for again, and an upload-limited Put hands the inner
// store a plain io.Reader: WithRetry copies a body of up to 64 MiB into
// memory to replay it (one more copy of each body in flight), paying for
// it as it copies, outside any attempt's time limit. The S3 store reads a
// whole body to checksum it before sending it, so S3 PUTs leave at line
// speed, one body at a time, with the limit as their average: it holds
// over any period longer than a few bodies' time, not within one body.
// Without an upload limit, Put data is passed through untouched.
//
// # Testing
//
// The conformance suite (remotetest.Run) runs on a wrapped in-memory store
// with every limit set. Rate tests upload, download and make requests
// through a wrapped local store from several goroutines and check that the
// achieved rate is within 10% of the limit, over about 3 s, or 30 s with
// CASSBACK_LONG=1. Cancellation, the kept interfaces and rate parsing have
// tests of their own.
package throttle
