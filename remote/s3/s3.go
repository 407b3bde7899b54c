package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"

	"github.com/cassback/cassback/remote"
)

// Limits of S3 itself.
const (
	minPartSize  = 5 << 20     // every part but the last
	maxPartSize  = 5 << 30     // any part
	maxSinglePut = 5 << 30     // one PutObject
	maxParts     = 10000       // parts of one upload
	maxBatch     = 1000        // keys of one DeleteObjects
	defRegion    = "us-east-1" // when neither Config nor the SDK's chain names one
	defPartSize  = 64 << 20    // Config.PartSize zero value
	defTimeout   = time.Minute // Config.RequestTimeout zero value
	abortTimeout = 2 * time.Minute
)

// MaxPrefixLen bounds Config.Prefix, so that keys keep at least 511 of
// the 1,024 bytes S3 allows an object name: cassback's longest keys (a
// manifest's, under 500 bytes) and the store's own probe object fit under
// any prefix Open accepts.
const MaxPrefixLen = 512

// Config says which bucket to use and how to reach it. Zero values mean
// defaults; only Bucket is required.
type Config struct {
	// Bucket must exist; Open does not create it (CreateBucket does).
	Bucket string
	// Prefix is put, followed by '/', before every key, so that several
	// stores (or other data) can share a bucket. It follows the key grammar
	// (remote.ValidKey) and has at most MaxPrefixLen bytes; a leading or
	// trailing '/' is dropped. "" stores keys at the top of the bucket.
	// S3's 1,024-byte limit is on the whole object name, so the prefix and
	// its '/' leave keys that much less room (Store.KeyPrefix).
	Prefix string
	// Endpoint is the URL of an S3-compatible server ("https://minio:9000";
	// http:// is allowed for loopback tests). Requests then use path-style
	// addressing (https://host/bucket/key), which every such server serves.
	// "" means AWS, with virtual-hosted addressing and the region's endpoint.
	Endpoint string
	// Region signs the requests. "" means the SDK's chain (AWS_REGION,
	// AWS_DEFAULT_REGION, the shared config file), else us-east-1, which
	// S3-compatible servers accept.
	Region string
	// AccessKey and SecretKey are static credentials. Give both or neither;
	// neither means the SDK's default chain: environment variables, the
	// shared credentials and config files (profiles, SSO, web identity for
	// EKS pod roles), then the ECS and EC2 instance roles. The secret never
	// appears in errors or logs (see LogValue).
	AccessKey, SecretKey string
	// CAFile names a PEM file of certificates to trust besides the system's,
	// for a server whose certificate a private CA signed. The SDK's
	// AWS_CA_BUNDLE variable is honoured too.
	CAFile string
	// MaxSinglePut is the largest object sent in one PutObject; larger ones
	// go by multipart upload. 0 means 5 GiB, S3's limit.
	MaxSinglePut int64
	// PartSize is the size of multipart parts, at least 5 MiB. 0 means
	// 64 MiB. It grows when an object would need more than 10,000 parts.
	PartSize int64
	// PartConcurrency is how many parts of one object are uploaded at once
	// when the data can be read at offsets (os.File, bytes.Reader). 0 means
	// 4. Other readers send one part at a time, buffering it.
	PartConcurrency int
	// RequestTimeout cancels a request that makes no progress for that long:
	// no answer, no body bytes read or written. Such a request fails with a
	// transient error, so a retrying decorator tries again. 0 means 1 minute.
	RequestTimeout time.Duration

	// SSE asks S3 to encrypt every object this store writes (the
	// x-amz-server-side-encryption header on every PutObject, conditional
	// ones included, and CreateMultipartUpload): "AES256" (SSE-S3),
	// "aws:kms" or "aws:kms:dsse" (SSE-KMS). "" sends no header, so the
	// bucket's default encryption applies. Reads need nothing more: S3
	// decrypts for any caller the key policy allows. SSEValues lists the
	// accepted values.
	SSE string
	// SSEKMSKeyID is the KMS key (ID, ARN or alias) of "aws:kms" and
	// "aws:kms:dsse"; "" means the bucket's default key, else the
	// account's AWS-managed aws/s3 key. It needs one of those SSE values.
	SSEKMSKeyID string
	// StorageClass is the storage class of the objects whose key starts
	// with one of StorageClassPrefixes (x-amz-storage-class); every other
	// object gets no header, which is STANDARD. "" sends none at all.
	// StorageClassValues lists the accepted values: the SDK's, less the
	// archive classes whose objects cannot be read without a restore
	// request first.
	StorageClass string
	// StorageClassPrefixes are the key prefixes StorageClass applies to;
	// nil means every key.
	StorageClassPrefixes []string
}

// LogValue logs the configuration without the secret key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("bucket", c.Bucket), slog.String("prefix", c.Prefix),
		slog.String("endpoint", c.Endpoint), slog.String("region", c.Region),
		slog.String("access_key", c.AccessKey), slog.Bool("secret_key_set", c.SecretKey != ""),
		slog.String("ca_file", c.CAFile), slog.String("sse", c.SSE), slog.String("sse_kms_key_id", c.SSEKMSKeyID),
		slog.String("storage_class", c.StorageClass))
}

// String describes the configuration without the secret key.
func (c Config) String() string { return c.LogValue().String() }

// check validates c and fills in the defaults.
func (c Config) check() (Config, error) {
	if c.Bucket == "" {
		return c, errors.New("no bucket given")
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	if c.Prefix != "" {
		if err := remote.ValidKey(c.Prefix); err != nil {
			return c, fmt.Errorf("key prefix: %w", err)
		}
		if len(c.Prefix) > MaxPrefixLen {
			return c, fmt.Errorf("key prefix %.40q...: %w: %d bytes, more than %d (keys need the rest of the %d bytes S3 allows an object name)",
				c.Prefix, remote.ErrInvalidKey, len(c.Prefix), MaxPrefixLen, remote.MaxKeyLen)
		}
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return c, errors.New("give both the access key and the secret key, or neither")
	}
	if c.Endpoint != "" {
		// A URL with a user name and password would put the secret in
		// every error and log line that names the endpoint: refused, and
		// not repeated back.
		u, err := url.Parse(c.Endpoint)
		switch {
		case err == nil && u.User != nil:
			u.User = nil
			return c, fmt.Errorf("endpoint %s with a user name or password: give credentials as the access and secret keys, not in the URL", u)
		case strings.Contains(c.Endpoint, "@"):
			return c, errors.New("endpoint (not shown: it has an '@', maybe a password): want a URL like https://host:port")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return c, fmt.Errorf("endpoint %q: want a URL like https://host:port", c.Endpoint)
		}
		c.Endpoint = strings.TrimSuffix(c.Endpoint, "/")
	}
	switch {
	case c.MaxSinglePut == 0:
		c.MaxSinglePut = maxSinglePut
	case c.MaxSinglePut < 0 || c.MaxSinglePut > maxSinglePut:
		return c, fmt.Errorf("largest single upload %d bytes: want 0 to %d", c.MaxSinglePut, int64(maxSinglePut))
	}
	switch {
	case c.PartSize == 0:
		c.PartSize = defPartSize
	case c.PartSize < minPartSize || c.PartSize > maxPartSize:
		return c, fmt.Errorf("part size %d bytes: want %d (5 MiB) to %d (5 GiB)", c.PartSize, minPartSize, int64(maxPartSize))
	}
	if err := c.checkServerSide(); err != nil {
		return c, err
	}
	if c.PartConcurrency <= 0 {
		c.PartConcurrency = 4
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defTimeout
	}
	return c, nil
}

// Store is a remote.Store and remote.Conditional on an S3 bucket. It is safe
// for concurrent use, and any number of processes and hosts may share the
// bucket.
type Store struct {
	cfg    Config
	client *s3.Client
	http   *httpClient
	bucket *string
	prefix string // "" or Config.Prefix + "/"
	where  string // the bucket and endpoint, for errors

	condMu sync.Mutex
	cond   condSupport
}

var (
	_ remote.Store       = (*Store)(nil)
	_ remote.Conditional = (*Store)(nil)
	_ remote.KeyPrefixer = (*Store)(nil)
)

// Open returns the store in cfg.Bucket under cfg.Prefix after one LIST
// request under the prefix has checked the endpoint, the credentials and
// the bucket. It writes nothing, so read-only credentials can restore.
// The error says which check failed in one line ("bucket "x" does not exist
// at http://…", "credentials rejected by …", "cannot reach …"); a server
// that cannot be reached gives a transient error (remote.IsTransient), so
// the caller may retry Open.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := newStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	_, err = s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: s.bucket, Prefix: aws.String(s.prefix), MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return nil, s.openError(ctx, err)
	}
	return s, nil
}

// CreateBucket creates cfg.Bucket; a bucket that exists and is the caller's
// already is not an error. It is meant for tests and first-time setup:
// cassback itself never creates buckets.
func CreateBucket(ctx context.Context, cfg Config) error {
	s, err := newStore(ctx, cfg)
	if err != nil {
		return err
	}
	in := &s3.CreateBucketInput{Bucket: s.bucket}
	if r := s.client.Options().Region; r != defRegion && s.cfg.Endpoint == "" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
	}
	_, err = s.client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return nil
	}
	if err != nil {
		return s.opError(ctx, "create bucket", cfg.Bucket, err)
	}
	return nil
}

func newStore(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	buildable := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		// Every worker of a backup or restore keeps its connection.
		tr.MaxIdleConnsPerHost = 64
	})
	awsCfg, err := loadAWS(ctx, buildable, cfg.CAFile, cfg.Region, cfg.AccessKey, cfg.SecretKey,
		// Checksums are computed here and sent as headers (see put.go), so
		// the SDK adds none of its own to uploads.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired))
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	hc := &httpClient{inner: awsCfg.HTTPClient, timeout: cfg.RequestTimeout}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.HTTPClient = hc
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			o.UsePathStyle = true
		}
		// Objects uploaded in parts have no whole-object checksum to
		// validate; do not log that about every such GET.
		o.DisableLogOutputChecksumValidationSkipped = true
		o.Logger = logging.Nop{}
	})
	s := &Store{cfg: cfg, client: client, http: hc, bucket: aws.String(cfg.Bucket)}
	if cfg.Prefix != "" {
		s.prefix = cfg.Prefix + "/"
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "AWS region " + awsCfg.Region
	}
	s.where = fmt.Sprintf("bucket %q at %s", cfg.Bucket, endpoint)
	return s, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// Config returns the configuration the store was opened with, defaults
// filled in.
func (s *Store) Config() Config { return s.cfg }

// Requests returns the HTTP requests sent so far by S3 operation name
// (PutObject, GetObject, HeadObject, ListObjectsV2, UploadPart, …): what a
// bill counts, including list pages, multipart steps and failed attempts.
func (s *Store) Requests() map[string]int64 { return s.http.counts() }

// KeyPrefix implements remote.KeyPrefixer: Config.Prefix and '/', or "".
// Every method refuses a key that would make the object name longer than
// remote.MaxKeyLen with it, before sending any request.
func (s *Store) KeyPrefix() string { return s.prefix }

// full returns the object key of a store key.
func (s *Store) full(key string) *string { return aws.String(s.prefix + key) }

// etag strips the quotes S3 puts around ETags; quoteETag puts them back for
// If-Match.
func etag(s *string) string     { return strings.Trim(aws.ToString(s), `"`) }
func quoteETag(e string) string { return `"` + e + `"` }

// markedCredentials marks the errors of a credentials provider, so that
// "no credentials found" is told apart from what the server answers (the
// chain's own requests, to STS or the instance metadata service, have HTTP
// statuses too).
type markedCredentials struct{ aws.CredentialsProvider }

// credentialsError is a failure to get credentials.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

func (m markedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, &credentialsError{err}
	}
	return c, nil
}

// loadAWS loads the SDK's configuration as the store and the KMS client
// both want it: the HTTP client (trusting caFile's CAs too, when given),
// no SDK retries (remote.WithRetry's are the ones, knowing which errors are
// worth it), no SDK logging (errors reach the caller instead), the region
// and static credentials when given (else the SDK's chain), us-east-1 when
// nothing names a region, and credentials marked so they never print.
func loadAWS(ctx context.Context, buildable *awshttp.BuildableClient, caFile, region, accessKey, secretKey string, extra ...func(*config.LoadOptions) error) (aws.Config, error) {
	if caFile != "" {
		pool, err := loadCA(caFile)
		if err != nil {
			return aws.Config{}, err
		}
		buildable = buildable.WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = pool
		})
	}
	opts := append([]func(*config.LoadOptions) error{
		config.WithHTTPClient(buildable),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithLogger(logging.Nop{}),
	}, extra...)
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if accessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = defRegion
	}
	if awsCfg.Credentials != nil {
		awsCfg.Credentials = markedCredentials{awsCfg.Credentials}
	}
	return awsCfg, nil
}
