// Package s3 implements remote.Store and remote.Conditional on an Amazon S3
// bucket or an S3-compatible server (MinIO, Ceph RGW, SeaweedFS, versitygw),
// with aws-sdk-go-v2. It is the only package that imports the AWS SDK.
//
// # Layout
//
// Key k is the object Config.Prefix + "/" + k. S3 (and SeaweedFS) refuse
// object names over 1,024 bytes, so the prefix counts: every method checks
// keys with remote.ValidKeyUnder and refuses one the prefix would push past
// remote.MaxKeyLen before sending anything, and Store.KeyPrefix tells
// callers (remote.MaxKeyLenOf) how much room is left; Config.Prefix is at
// most MaxPrefixLen bytes, so at least 511 are. Keys follow remote.ValidKey,
// which also suits file-backed servers (versitygw's posix backend maps a
// key to a path, so it cannot hold both "a" and "a/b", nor a segment over
// 255 bytes; cassback's layout never needs either). The store's own
// objects have dot-names, which no key can have: the conditional-write
// probe writes and deletes ".cassback-probe-<random>". List and ListDirs
// skip every object name that is not a valid key.
//
// # Requests
//
// Put is one PutObject up to Config.MaxSinglePut, else a multipart upload
// (parts of Config.PartSize, Config.PartConcurrency at once, aborted on
// failure). Every upload request carries the CRC-32C of its body in
// x-amz-checksum-crc32c, computed here before sending, and the server
// refuses a body that does not match: integrity does not rest on ETag = MD5,
// which multipart uploads break. Sending the checksum as a header rather
// than an aws-chunked trailer also keeps servers that lack trailers working.
// Get is one GetObject with a Range; Stat a HeadObject; List and ListDirs
// ListObjectsV2 (1,000 keys or directories a page); Delete a DeleteObject;
// DeleteMany one DeleteObjects per 1,000 keys; PutIf a PutObject with
// If-None-Match: * or If-Match, after a one-time probe of four requests.
// Store.Requests counts the HTTP requests by operation.
//
// Config.SSE (and SSEKMSKeyID) adds the server-side encryption headers to
// every PutObject and CreateMultipartUpload, conditional writes and the
// probe included; Config.StorageClass adds x-amz-storage-class to those of
// keys under Config.StorageClassPrefixes only. UploadPart carries neither
// (S3 takes them from the upload's creation). Reads need no header for
// SSE-S3 or SSE-KMS.
//
// # Errors
//
// Errors are classified where they arise: not found is fs.ErrNotExist; 412
// and 409 ConditionalRequestConflict are remote.ErrPrecondition; 416 is
// handled by Get; throttling (503 SlowDown, 429), 5xx, timeouts, stalled
// requests, refused or reset connections and truncated answers are marked
// remote.Transient; everything else (403, other 4xx, a checksum mismatch)
// is permanent. ErrNoBucket, ErrCredentials and ErrAccessDenied name the
// usual setup mistakes. Messages are one line, name the operation and the
// key, and never contain the secret key.
//
// The SDK's own retries are off: remote.WithRetry retries transient errors
// with backoff and jitter, resumes broken GET bodies (Get bodies report
// their ETag for that) and bounds each attempt. Within a request, a
// transport-level timer cancels it when it makes no progress for
// Config.RequestTimeout.
//
// # Concurrency
//
// A Store is safe for concurrent use; the SDK client pools connections (64
// idle per host). Any number of processes and hosts may share a bucket:
// S3 gives atomic, strongly consistent PUTs, and PutIf is atomic against
// every other write of its key.
//
// # Testing
//
// s3_test.go runs remotetest.Run against a real versitygw started by
// package s3test: plain, under key prefixes, with every object sent by
// multipart upload, and through s3test.FaultProxy injecting 10% faults
// behind remote.WithRetry. Other tests cover multipart uploads, Open's
// errors, stalled requests, each fault kind, uploads corrupted on the way,
// a server that ignores conditional headers, pagination, batch deletes,
// resumed reads, and (serverside_test.go) the server-side option headers
// each request carries, recorded by s3test.FaultProxy; versitygw accepts
// those headers but neither encrypts nor tiers, so only the requests and
// the round trip are tested, not the effect.
package s3
