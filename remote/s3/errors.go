package s3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"syscall"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cassback/cassback/remote"
)

// Errors that Open and every operation may wrap, besides the remote
// sentinels; test them with errors.Is.
var (
	// ErrNoBucket: the bucket does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrCredentials: the server rejected the access key or the signature
	// (InvalidAccessKeyId, SignatureDoesNotMatch; versitygw answers an
	// unknown key with XAdminUserNotFound), or no credentials were found.
	ErrCredentials = errors.New("credentials rejected")
	// ErrAccessDenied: the credentials are valid but lack a permission.
	ErrAccessDenied = errors.New("access denied")
)

// opError is what every operation returns on failure: the operation, the
// store key and a one-line reason, wrapping the class of the error (a
// remote or package sentinel, if any) and the SDK's error.
type opError struct {
	op, key string
	msg     string
	class   error // fs.ErrNotExist, remote.ErrPrecondition, ErrNoBucket, …; may be nil
	err     error // the SDK's error
}

func (e *opError) Error() string {
	if e.key == "" {
		return e.op + ": " + e.msg
	}
	return e.op + " " + e.key + ": " + e.msg
}

func (e *opError) Unwrap() []error {
	var errs []error
	if e.class != nil {
		errs = append(errs, e.class)
	}
	if e.class == ErrAccessDenied {
		errs = append(errs, fs.ErrPermission) // what a read-only process meets on any store
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// responseInfo extracts the HTTP status and the S3 error code and message.
func responseInfo(err error) (status int, code, msg string) {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
	}
	return status, code, oneLine(msg)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// opError classifies err from an SDK call: the caller's cancellation stays
// itself; not found, precondition and range errors map to the remote
// sentinels; throttling, server errors, stalls, broken connections and
// truncated answers are marked transient; everything else is permanent.
func (s *Store) opError(ctx context.Context, op, key string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s %s: %w", op, key, ctxErr)
	}
	e := &opError{op: op, key: key, err: err}
	var stall *stalledError
	if errors.As(err, &stall) {
		e.err = nil // it may wrap context.Canceled, which is not the caller's
		e.msg = fmt.Sprintf("request to %s stalled: %v", s.cfg.endpointName(), stall)
		return remote.Transient(e)
	}
	var ce *credentialsError
	var se *v4.SigningError
	switch {
	case errors.As(err, &ce):
		e.class = ErrCredentials
		e.msg = "no usable credentials: " + oneLine(ce.Error()) +
			" (give an access key and secret, or set up the AWS SDK's credential chain)"
		return e
	case errors.As(err, &se):
		e.class = ErrCredentials
		e.msg = "cannot sign the request: " + oneLine(se.Error())
		return e
	}
	status, code, msg := responseInfo(err)
	if status == 0 {
		var send *smithyhttp.RequestSendError
		var de *smithy.DeserializationError
		switch {
		case errors.As(err, &send):
			e.msg = fmt.Sprintf("cannot reach %s: %s", s.cfg.endpointName(), oneLine(sendCause(send).Error()))
			return remote.Transient(e)
		case errors.As(err, &de), errors.Is(err, io.ErrUnexpectedEOF):
			e.msg = "truncated answer: " + oneLine(err.Error())
			return remote.Transient(e)
		}
		e.msg = oneLine(err.Error())
		return e
	}
	var de *smithy.DeserializationError
	if status < 300 && (errors.As(err, &de) || errors.Is(err, io.ErrUnexpectedEOF)) {
		// A success whose body broke off or does not parse (a connection
		// reset mid-answer): the request is worth repeating.
		e.msg = fmt.Sprintf("truncated answer (s3 %d): %s", status, oneLine(err.Error()))
		return remote.Transient(e)
	}
	e.msg = fmt.Sprintf("s3 %d %s", status, code)
	if msg != "" {
		e.msg += ": " + msg
	}
	switch {
	case code == "NoSuchBucket":
		e.class, e.msg = ErrNoBucket, fmt.Sprintf("%s does not exist", s.where)
	case code == "NoSuchKey" || code == "NotFound" || (status == 404 && code == ""):
		e.class = fs.ErrNotExist
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "XAdminUserNotFound" ||
		code == "InvalidToken" || code == "ExpiredToken" || code == "InvalidClientTokenId":
		e.class = ErrCredentials
		e.msg = fmt.Sprintf("credentials rejected by %s (%s)", s.cfg.endpointName(), code)
		if msg != "" {
			e.msg += ": " + msg
		}
	case status == 403:
		e.class = ErrAccessDenied
		e.msg = fmt.Sprintf("access denied to %s (%s)", s.where, cmp.Or(code, "403"))
	case status == 412 || code == "ConditionalRequestConflict":
		e.class = remote.ErrPrecondition
	case status == 416:
		e.class = remote.ErrInvalidRange
	case code == "AuthorizationHeaderMalformed" || code == "PermanentRedirect" || status == 301:
		e.msg += " (is the region right? give the bucket's region)"
	case status >= 500, status == 429, status == 408,
		code == "SlowDown", code == "RequestTimeout", code == "Throttling", code == "ThrottlingException",
		code == "RequestLimitExceeded", code == "OperationAborted", code == "InternalError":
		return remote.Transient(e)
	}
	return e
}

// openError explains a failure of Open's check in one line: "s3: bucket
// "x" at URL does not exist", "s3: credentials rejected by URL (code):
// …", "s3: cannot reach URL: …", or else "s3: open bucket "x" at URL: …".
func (s *Store) openError(ctx context.Context, err error) error {
	err = s.opError(ctx, "s3", "", err)
	var e *opError
	if !errors.As(err, &e) {
		return err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// NoSuchKey or a bare 404 on a LIST: only the bucket can be missing.
		e.class, e.msg = ErrNoBucket, s.where+" does not exist"
	case errors.Is(err, ErrNoBucket), errors.Is(err, ErrCredentials), errors.Is(err, ErrAccessDenied), remote.IsTransient(err):
	default:
		e.msg = "open " + s.where + ": " + e.msg
	}
	return err
}

func (c Config) endpointName() string {
	if c.Endpoint != "" {
		return c.Endpoint
	}
	return "AWS S3"
}

// sendCause returns the network error inside a send error, without the
// url.Error's method and URL.
func sendCause(e *smithyhttp.RequestSendError) error {
	err := e.Err
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err
}

// bodyError classifies an error from reading a GET body: a broken or
// stalled connection is transient; anything else (the SDK's checksum
// mismatch) is permanent.
func (s *Store) bodyError(ctx context.Context, key string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("get %s: %w", key, ctxErr)
	}
	var stall *stalledError
	if errors.As(err, &stall) {
		return remote.Transient(&opError{op: "get", key: key, msg: fmt.Sprintf("read body from %s: stalled: %v", s.cfg.endpointName(), stall)})
	}
	e := &opError{op: "get", key: key, msg: "read body: " + oneLine(err.Error()), err: err}
	var ne net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE) || strings.Contains(err.Error(), "http2:") {
		return remote.Transient(e)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// Not the caller's context (checked above): the transport's own.
		e.err = nil
		return remote.Transient(e)
	}
	return e
}
