package main

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/s3"
)

// s3OpenTimeout bounds opening the bucket, retries included (the retries
// themselves last about 30 s at most with the default --retries); an
// interrupt cuts them short.
const s3OpenTimeout = 5 * time.Minute

// openS3 opens the bucket the s3 options name, wrapped so that every
// request is counted and transient failures are retried, and arranges for
// the request counts to be logged when the command ends. create does not
// matter: cassback never creates buckets, and an empty bucket (or prefix)
// is where a first backup creates its store.
func (g *globals) openS3(ctx context.Context, create bool) (remote.Store, error) {
	cfg, opts, err := g.s3Config()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s3OpenTimeout)
	defer cancel()
	var st *s3.Store
	err = remote.Retry(ctx, opts, "open s3", func(ctx context.Context) error {
		st, err = s3.Open(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	counted := remote.NewCounting(st)
	start := time.Now()
	prev := g.closeLog
	g.closeLog = func() {
		logRequests(g.log, counted, st.Requests(), time.Since(start))
		prev()
	}
	return remote.WithRetry(counted, opts), nil
}

// s3Config checks the s3 options and turns them into the store's and the
// retries' configuration.
func (g *globals) s3Config() (s3.Config, remote.RetryOptions, error) {
	var none s3.Config
	switch {
	case g.bucket == "":
		return none, remote.RetryOptions{}, usagef("--bucket-name is required with --endpoint s3")
	case g.multipartMB < 5 || g.multipartMB > 5120:
		return none, remote.RetryOptions{}, usagef("--multipart-chunk-size-mb %d: want 5 to 5120 (S3's part limits)", g.multipartMB)
	case g.maxUploadMB < 1 || g.maxUploadMB > 5120:
		return none, remote.RetryOptions{}, usagef("--max-upload-size-mb %d: want 1 to 5120 (S3's single-PUT limit)", g.maxUploadMB)
	case g.retries < 0:
		return none, remote.RetryOptions{}, usagef("--retries %d: must be 0 or more", g.retries)
	case g.s3RequestTimeout <= 0:
		return none, remote.RetryOptions{}, usagef("--s3-request-timeout %v: must be positive", g.s3RequestTimeout)
	case (g.awsKey == "") != (g.awsSecret == ""):
		return none, remote.RetryOptions{}, usagef("--aws-key and --aws-secret go together; give both, or neither to use the AWS SDK's credential chain")
	case g.s3SSE != "" && !slices.Contains(s3.SSEValues(), g.s3SSE):
		return none, remote.RetryOptions{}, usagef("--s3-sse %q: want one of %s", g.s3SSE, strings.Join(s3.SSEValues(), ", "))
	case g.s3SSEKMSKeyID != "" && !strings.HasPrefix(g.s3SSE, "aws:kms"):
		return none, remote.RetryOptions{}, usagef("--s3-sse-kms-key-id needs --s3-sse aws:kms or aws:kms:dsse")
	case g.s3StorageClass != "" && !slices.Contains(s3.StorageClassValues(), g.s3StorageClass):
		why := ""
		if g.s3StorageClass == "GLACIER" || g.s3StorageClass == "DEEP_ARCHIVE" {
			why = " (archived objects cannot be read without a restore request; restore, validate and repack read packs)"
		}
		return none, remote.RetryOptions{}, usagef("--s3-storage-class %q%s: want one of %s", g.s3StorageClass, why, strings.Join(s3.StorageClassValues(), ", "))
	}
	cfg := s3.Config{
		Bucket: g.bucket, Prefix: g.keyPrefix, Endpoint: g.s3Endpoint, Region: g.s3Region,
		AccessKey: g.awsKey, SecretKey: g.awsSecret, CAFile: g.s3CAFile,
		MaxSinglePut: int64(g.maxUploadMB) << 20, PartSize: int64(g.multipartMB) << 20,
		RequestTimeout: g.s3RequestTimeout,
		SSE:            g.s3SSE, SSEKMSKeyID: g.s3SSEKMSKeyID,
		StorageClass: g.s3StorageClass, StorageClassPrefixes: []string{packPrefix},
	}
	opts := remote.RetryOptions{
		Attempts:       g.retries + 1,
		AttemptTimeout: max(2*time.Minute, 2*g.s3RequestTimeout),
		Log:            g.log,
		OnRetry:        g.onRetry, // counted with --metrics-addr
	}
	return cfg, opts, nil
}

// packPrefix is the key prefix of every pack ("packs/"), the only objects
// --s3-storage-class applies to.
var packPrefix = strings.SplitAfter(pack.Key(chunk.ID{}), "/")[0]

// logRequests logs what the command asked of the store: calls by kind
// (attempts included), bytes, failures, and the HTTP requests by S3
// operation, which is what the provider bills.
func logRequests(log *slog.Logger, c *remote.Counting, http map[string]int64, dur time.Duration) {
	if log == nil {
		return
	}
	var reqs []any
	var total int64
	for _, op := range slices.Sorted(maps.Keys(http)) {
		reqs = append(reqs, slog.Int64(op, http[op]))
		total += http[op]
	}
	log.Info("store requests", "endpoint", "s3", "calls", c, "http_requests", total,
		slog.Group("http", reqs...), "dur", dur.Round(time.Millisecond))
}
