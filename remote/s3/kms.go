package s3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cassback/cassback/remote"
)

// KMSConfig says which AWS KMS key wraps a store's master key and how to
// reach it. Zero values mean defaults; only KeyID is required.
type KMSConfig struct {
	// KeyID is the key's id, ARN, alias ("alias/name") or alias ARN. It is
	// sent with every Encrypt and Decrypt, so a blob made under another
	// key is refused rather than opened with it.
	KeyID string
	// Endpoint is the URL of a KMS-compatible server (http:// for loopback
	// tests). "" means AWS, or AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL when
	// set (the SDK reads them).
	Endpoint string
	// Region, AccessKey, SecretKey, CAFile and RequestTimeout mean what
	// they do in Config: the same credentials chain, the same secrecy of
	// the secret key.
	Region               string
	AccessKey, SecretKey string
	CAFile               string
	RequestTimeout       time.Duration
	// Retry retries transient failures (throttling, server errors, stalls,
	// broken connections) as remote.WithRetry does for the store; zero
	// means remote's defaults.
	Retry remote.RetryOptions
}

// LogValue logs the configuration without the secret key.
func (c KMSConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("kms_key_id", c.KeyID), slog.String("endpoint", c.Endpoint), slog.String("region", c.Region),
		slog.String("access_key", c.AccessKey), slog.Bool("secret_key_set", c.SecretKey != ""),
		slog.String("ca_file", c.CAFile))
}

// String describes the configuration without the secret key.
func (c KMSConfig) String() string { return c.LogValue().String() }

// KMS encrypts and decrypts small secrets (a store's master key) with one
// AWS KMS key: it implements keyslot.KeyWrapper. It is safe for concurrent
// use.
type KMS struct {
	cfg    KMSConfig
	client *kms.Client
	http   *httpClient
	where  string // the key and endpoint, for errors
}

// NewKMS returns a client for cfg.KeyID. It sends no request.
func NewKMS(ctx context.Context, cfg KMSConfig) (*KMS, error) {
	if cfg.KeyID == "" {
		return nil, errors.New("kms: no key id given")
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, errors.New("kms: give both the access key and the secret key, or neither")
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("kms: endpoint %q: want a URL like https://host:port", cfg.Endpoint)
		}
		cfg.Endpoint = strings.TrimSuffix(cfg.Endpoint, "/")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = defTimeout
	}
	awsCfg, err := loadAWS(ctx, awshttp.NewBuildableClient(), cfg.CAFile, cfg.Region, cfg.AccessKey, cfg.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("kms: %w", err)
	}
	hc := &httpClient{inner: awsCfg.HTTPClient, timeout: cfg.RequestTimeout}
	client := kms.NewFromConfig(awsCfg, func(o *kms.Options) {
		o.HTTPClient = hc
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Logger = logging.Nop{}
	})
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "AWS KMS in " + awsCfg.Region
		if o := client.Options(); o.BaseEndpoint != nil {
			endpoint = *o.BaseEndpoint
		}
	}
	return &KMS{cfg: cfg, client: client, http: hc, where: fmt.Sprintf("KMS key %s at %s", cfg.KeyID, endpoint)}, nil
}

// KeyID returns the key the client uses.
func (k *KMS) KeyID() string { return k.cfg.KeyID }

// Requests returns the HTTP requests sent so far by operation (Encrypt,
// Decrypt), failed attempts included.
func (k *KMS) Requests() map[string]int64 { return k.http.counts() }

// Encrypt encrypts plaintext (at most 4 KiB) under the key with encCtx as
// the encryption context, retrying transient failures.
func (k *KMS) Encrypt(ctx context.Context, plaintext []byte, encCtx map[string]string) ([]byte, error) {
	var blob []byte
	err := remote.Retry(ctx, k.cfg.Retry, "kms encrypt", func(ctx context.Context) error {
		out, err := k.client.Encrypt(ctx, &kms.EncryptInput{
			KeyId: aws.String(k.cfg.KeyID), Plaintext: plaintext, EncryptionContext: encCtx,
		})
		if err != nil {
			return k.error(ctx, "encrypt", err)
		}
		blob = out.CiphertextBlob
		return nil
	})
	return blob, err
}

// Decrypt decrypts blob with the key and encCtx, which must be the context
// it was encrypted with, retrying transient failures. A blob made under
// another key or context is refused by KMS (InvalidCiphertextException,
// IncorrectKeyException) with a permanent error.
func (k *KMS) Decrypt(ctx context.Context, blob []byte, encCtx map[string]string) ([]byte, error) {
	var plain []byte
	err := remote.Retry(ctx, k.cfg.Retry, "kms decrypt", func(ctx context.Context) error {
		out, err := k.client.Decrypt(ctx, &kms.DecryptInput{
			KeyId: aws.String(k.cfg.KeyID), CiphertextBlob: blob, EncryptionContext: encCtx,
		})
		if err != nil {
			return k.error(ctx, "decrypt", err)
		}
		plain = out.Plaintext
		return nil
	})
	return plain, err
}

// kmsError is a failed KMS call: one line, wrapping the class (ErrCredentials,
// ErrAccessDenied or nil) and the SDK's error. Its text never holds the
// plaintext: a server's message is dropped where it could quote the input.
type kmsError struct {
	op, where, msg string
	class, err     error
}

func (e *kmsError) Error() string { return "kms " + e.op + " with " + e.where + ": " + e.msg }

func (e *kmsError) Unwrap() []error {
	var errs []error
	if e.class != nil {
		errs = append(errs, e.class)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// error classifies an SDK error as opError does for S3: the caller's
// cancellation stays itself; throttling, server errors, stalls and broken
// connections are transient; everything else is permanent.
func (k *KMS) error(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("kms %s: %w", op, ctxErr)
	}
	e := &kmsError{op: op, where: k.where, err: err}
	var stall *stalledError
	if errors.As(err, &stall) {
		e.err = nil
		e.msg = fmt.Sprintf("request stalled: %v", stall)
		return remote.Transient(e)
	}
	var ce *credentialsError
	if errors.As(err, &ce) {
		e.class = ErrCredentials
		e.msg = "no usable credentials: " + oneLine(ce.Error())
		return e
	}
	var re *smithyhttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	code, msg := "", ""
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), oneLine(ae.ErrorMessage())
	}
	if status == 0 {
		var send *smithyhttp.RequestSendError
		if errors.As(err, &send) {
			e.msg = "cannot reach the server: " + oneLine(sendCause(send).Error())
			return remote.Transient(e)
		}
		var de *smithy.DeserializationError
		if errors.As(err, &de) {
			e.msg = "truncated answer: " + oneLine(err.Error())
			return remote.Transient(e)
		}
		e.msg = oneLine(err.Error())
		return e
	}
	e.msg = fmt.Sprintf("kms %d %s", status, code)
	// A validation message may quote the plaintext (local-kms does when it
	// is too long): keep only the code then.
	if msg != "" && code != "ValidationException" && code != "SerializationException" {
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		e.msg += ": " + msg
	}
	switch {
	case code == "UnrecognizedClientException" || code == "InvalidSignatureException" ||
		code == "InvalidClientTokenId" || code == "ExpiredTokenException" || code == "IncompleteSignature":
		e.class = ErrCredentials
	case code == "AccessDeniedException" || status == 403:
		e.class = ErrAccessDenied
	case status >= 500, status == 429, status == 408,
		code == "ThrottlingException", code == "KMSInternalException", code == "DependencyTimeoutException",
		code == "LimitExceededException", code == "KeyUnavailableException", code == "RequestTimeout":
		return remote.Transient(e)
	}
	return e
}
