package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cassback/cassback/remote"
)

// Get implements remote.Store with one GetObject, with a Range header
// unless the whole object is asked for. S3 clips a range that runs past the
// end, and answers 416 to one that starts at or past it; Get then reads the
// size with a HEAD so that offset == size gives an empty body and only a
// larger offset remote.ErrInvalidRange. A zero length costs a HEAD only.
//
// Errors reading the body are classified too: a broken or stalled
// connection is transient, so a retrying decorator can resume the read.
// Whole-object reads are checked against the checksum stored with the
// object when the server returns one (the SDK does this as the body ends).
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := remote.BeginUnder(ctx, "get", s.prefix, key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: %w: offset %d", key, remote.ErrInvalidRange, offset)
	}
	if length == 0 {
		return s.emptyAt(ctx, key, offset)
	}
	in := &s3.GetObjectInput{Bucket: s.bucket, Key: s.full(key)}
	if offset > 0 || length > 0 {
		r := "bytes=" + strconv.FormatInt(offset, 10) + "-"
		if length > 0 {
			r += strconv.FormatInt(offset+length-1, 10)
		}
		in.Range = aws.String(r)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		err = s.opError(ctx, "get", key, err)
		if errors.Is(err, remote.ErrInvalidRange) {
			return s.emptyAt(ctx, key, offset)
		}
		return nil, err
	}
	var body io.Reader = out.Body
	if in.Range != nil && out.ContentRange == nil {
		// The server ignored the range and sent the whole object.
		if _, err := io.CopyN(io.Discard, body, offset); err != nil {
			out.Body.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("get %s: %w: offset %d past the end", key, remote.ErrInvalidRange, offset)
			}
			return nil, s.bodyError(ctx, key, err)
		}
		if length > 0 {
			body = io.LimitReader(body, length)
		}
	}
	return &getBody{r: body, c: out.Body, s: s, ctx: ctx, key: key, etag: etag(out.ETag)}, nil
}

// emptyAt answers a Get at offset that needs no bytes: an empty body if
// offset is at most the object's size.
func (s *Store) emptyAt(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	info, err := s.stat(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	if offset > info.Size {
		return nil, fmt.Errorf("get %s: %w: offset %d, object size %d", key, remote.ErrInvalidRange, offset, info.Size)
	}
	return io.NopCloser(eof{}), nil
}

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// getBody classifies the errors of a GET body, and names the version it
// reads (remote.ETagger) so that a retrying decorator can resume it.
type getBody struct {
	r    io.Reader
	c    io.Closer
	s    *Store
	ctx  context.Context
	key  string
	etag string
}

func (b *getBody) ETag() string { return b.etag }

func (b *getBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = b.s.bodyError(b.ctx, b.key, err)
	}
	return n, err
}

func (b *getBody) Close() error { return b.c.Close() }

// Stat implements remote.Store with a HeadObject. ModTime is the server's
// Last-Modified (whole seconds).
func (s *Store) Stat(ctx context.Context, key string) (remote.Info, error) {
	if err := remote.BeginUnder(ctx, "stat", s.prefix, key); err != nil {
		return remote.Info{}, err
	}
	return s.stat(ctx, "stat", key)
}

func (s *Store) stat(ctx context.Context, op, key string) (remote.Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: s.bucket, Key: s.full(key)})
	if err != nil {
		return remote.Info{}, s.opError(ctx, op, key, err)
	}
	return remote.Info{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
		ETag:    etag(out.ETag),
	}, nil
}
