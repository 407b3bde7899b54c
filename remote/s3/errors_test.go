package s3

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cassback/cassback/remote"
)

// A success whose body breaks off or does not parse (a LIST answer cut by
// a connection reset after its 200 status) is transient, so it is retried:
// TestS3Faults' restore failed on one with "s3 200".
func TestTruncatedSuccessIsTransient(t *testing.T) {
	s := &Store{}
	resp := &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 200}},
		Err: &smithy.DeserializationError{Err: io.ErrUnexpectedEOF}}
	err := s.opError(context.Background(), "list", "commits/", resp)
	if !remote.IsTransient(err) {
		t.Errorf("%v: not transient", err)
	}
	resp.Response.StatusCode = 400
	if err := s.opError(context.Background(), "list", "commits/", resp); remote.IsTransient(err) {
		t.Errorf("%v: a 400 is transient", err)
	}
}
