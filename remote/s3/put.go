package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/cassback/cassback/remote"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c returns the base64 CRC-32C of n bytes of r, as S3's
// x-amz-checksum-crc32c header wants it.
func crc32c(r io.Reader) (string, error) {
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], h.Sum32())
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// source is Put's data, checked to hold exactly size bytes. With ra set the
// bytes are read at offsets from base (each part or retry reads its own
// section, several at once); otherwise they come from r in order, once.
type source struct {
	ra   io.ReaderAt
	base int64
	r    io.Reader
	size int64
}

// newSource checks what it can of data before anything is sent: the length
// of readers that can seek and read at offsets (os.File, bytes.Reader).
func newSource(data io.Reader, size int64) (*source, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative size %d", size)
	}
	ra, okRA := data.(io.ReaderAt)
	sk, okSk := data.(io.Seeker)
	if okRA && okSk {
		pos, err := sk.Seek(0, io.SeekCurrent)
		if err == nil {
			end, err := sk.Seek(0, io.SeekEnd)
			if err != nil {
				return nil, err
			}
			if _, err := sk.Seek(pos+min(size, end-pos), io.SeekStart); err != nil {
				return nil, err
			}
			if end-pos != size {
				return nil, fmt.Errorf("data is %d bytes, want %d", end-pos, size)
			}
			return &source{ra: ra, base: pos, size: size}, nil
		}
	}
	return &source{r: data, size: size}, nil
}

// section returns n bytes from off as a reader the SDK can rewind, reading
// sequential data into buf (grown as needed). For sequential data the
// sections must be taken in order.
func (s *source) section(off, n int64, buf []byte) (io.ReadSeeker, []byte, error) {
	if s.ra != nil {
		return io.NewSectionReader(s.ra, s.base+off, n), buf, nil
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(s.r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, buf, fmt.Errorf("data shorter than %d bytes: %w", s.size, err)
	}
	if off+n == s.size {
		switch _, err := io.ReadFull(s.r, make([]byte, 1)); {
		case err == nil:
			return nil, buf, fmt.Errorf("data longer than %d bytes", s.size)
		case !errors.Is(err, io.EOF):
			return nil, buf, err
		}
	}
	return bytes.NewReader(buf), buf, nil
}

// Put implements remote.Store. Objects up to Config.MaxSinglePut go in one
// PutObject; larger ones, and data that can only be read once and is larger
// than a part, go by multipart upload. Every request carries the CRC-32C of
// its body, which the server checks before it stores anything; S3 makes
// the object visible only once complete, so Put is atomic. A failed
// multipart upload is aborted.
func (s *Store) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	_, err := s.PutVerified(ctx, key, data, size)
	return err
}

// PutVerified implements remote.Verifying: an object sent in one PutObject
// is verified when the server's answer echoes the CRC-32C the request
// carried, which S3 (and the servers that support checksums) computes over
// the bytes it received and refuses the request on a mismatch. A server
// that ignores checksums echoes none, and an object sent in parts is not
// verified here: the caller then checks it with a Stat.
func (s *Store) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	if err := remote.BeginUnder(ctx, "put", s.prefix, key); err != nil {
		return false, err
	}
	src, err := newSource(data, size)
	if err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	if size > s.cfg.MaxSinglePut || (src.ra == nil && size > s.cfg.PartSize) {
		return false, s.putMultipart(ctx, key, src)
	}
	body, _, err := src.section(0, size, nil)
	if err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	out, sum, err := s.putObject(ctx, "put", key, body, size, nil)
	if err != nil {
		return false, err
	}
	return out.ChecksumCRC32C != nil && *out.ChecksumCRC32C == sum, nil
}

// putObject sends one PutObject, with the body's CRC-32C and the
// conditions in cond (may be nil), and returns the answer and the CRC-32C
// sent.
func (s *Store) putObject(ctx context.Context, op, key string, body io.ReadSeeker, size int64, cond func(*s3.PutObjectInput)) (*s3.PutObjectOutput, string, error) {
	sum, err := crc32c(body)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: read data: %w", op, key, err)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", op, key, err)
	}
	in := &s3.PutObjectInput{
		Bucket: s.bucket, Key: s.full(key), Body: body, ContentLength: aws.Int64(size),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(sum),
		StorageClass: s.storageClass(key),
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
	if cond != nil {
		cond(in)
	}
	for try := 1; ; try++ {
		out, err := s.client.PutObject(ctx, in)
		if err == nil {
			return out, sum, nil
		}
		// versitygw's posix backend answers 409 ExistingObjectIsDirectory
		// when a Delete removes the object's emptied parent folder between
		// its mkdir and its link: a race on the server, over at once.
		if _, code, _ := responseInfo(err); code != "ExistingObjectIsDirectory" || try == 3 || ctx.Err() != nil {
			return nil, "", s.opError(ctx, op, key, err)
		}
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return nil, "", fmt.Errorf("%s %s: %w", op, key, err)
		}
	}
}

// putMultipart uploads src in parts, several at once when it can be read at
// offsets, and aborts the upload if any step fails.
func (s *Store) putMultipart(ctx context.Context, key string, src *source) (err error) {
	partSize := s.cfg.PartSize
	if n := (src.size + maxParts - 1) / maxParts; n > partSize {
		partSize = (n + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	nParts := int((src.size + partSize - 1) / partSize)
	if nParts == 0 {
		nParts = 1
	}
	create := &s3.CreateMultipartUploadInput{
		Bucket: s.bucket, Key: s.full(key), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		StorageClass: s.storageClass(key),
	}
	create.ServerSideEncryption, create.SSEKMSKeyId = s.sse()
	created, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return s.opError(ctx, "put", key, err)
	}
	upload := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx is cancelled: parts left behind cost money
		// until a lifecycle rule removes them.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: s.bucket, Key: s.full(key), UploadId: upload})
	}()

	parts := make([]types.CompletedPart, nParts)
	uploadPart := func(ctx context.Context, i int, body io.ReadSeeker, n int64) error {
		sum, err := crc32c(body)
		if err != nil {
			return fmt.Errorf("put %s: read data: %w", key, err)
		}
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: s.bucket, Key: s.full(key), UploadId: upload, PartNumber: aws.Int32(int32(i + 1)),
			Body: body, ContentLength: aws.Int64(n),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(sum),
		})
		if err != nil {
			return s.opError(ctx, "put", key, fmt.Errorf("part %d of %d: %w", i+1, nParts, err))
		}
		parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1)), ChecksumCRC32C: aws.String(sum)}
		return nil
	}
	partLen := func(i int) int64 { return min(partSize, src.size-int64(i)*partSize) }

	if src.ra == nil {
		// Read once, in order: one part in memory at a time.
		var buf []byte
		for i := range nParts {
			var body io.ReadSeeker
			if body, buf, err = src.section(int64(i)*partSize, partLen(i), buf); err != nil {
				return fmt.Errorf("put %s: %w", key, err)
			}
			if err = uploadPart(ctx, i, body, partLen(i)); err != nil {
				return err
			}
		}
	} else if err = s.parallel(ctx, nParts, func(ctx context.Context, i int) error {
		body, _, _ := src.section(int64(i)*partSize, partLen(i), nil)
		return uploadPart(ctx, i, body, partLen(i))
	}); err != nil {
		return err
	}

	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: s.bucket, Key: s.full(key), UploadId: upload,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return s.opError(ctx, "put", key, err)
	}
	return nil
}

// parallel runs fn(0) … fn(n-1) on Config.PartConcurrency goroutines and
// returns the first error, cancelling the others.
func (s *Store) parallel(ctx context.Context, n int, fn func(context.Context, int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, s.cfg.PartConcurrency))
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(gctx, i) })
	}
	return g.Wait()
}

// condSupport records what the probe found about conditional writes.
type condSupport int

const (
	condUnknown condSupport = iota
	condYes
	condNo
)

// PutIf implements remote.Conditional with PutObject and If-None-Match: *
// or If-Match. The first call probes once whether the server honours those
// headers (some S3-compatible servers ignore them and would overwrite): it
// writes a hidden object ".cassback-probe-<random>" under the prefix,
// tries to overwrite it with each condition that must fail, and deletes it.
// If the server ignores either, this and every later PutIf return an error
// wrapping errors.ErrUnsupported. A probe that fails transiently is tried
// again by the next PutIf.
//
// A failed condition is remote.ErrPrecondition, whether the server answers
// 412, 409 ConditionalRequestConflict (a concurrent write of the key) or
// 404 (If-Match on a missing key).
func (s *Store) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	if err := remote.BeginUnder(ctx, "put-if", s.prefix, key); err != nil {
		return "", err
	}
	if err := s.checkConditional(ctx); err != nil {
		return "", err
	}
	out, _, err := s.putObject(ctx, "put-if", key, bytes.NewReader(data), int64(len(data)), condition(ifMatch))
	if err != nil {
		if ifMatch != "" && errors.Is(err, fs.ErrNotExist) {
			var e *opError
			if errors.As(err, &e) {
				e.class = remote.ErrPrecondition
			}
		}
		return "", err
	}
	return etag(out.ETag), nil
}

func condition(ifMatch string) func(*s3.PutObjectInput) {
	return func(in *s3.PutObjectInput) {
		if ifMatch == "" {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(quoteETag(ifMatch))
		}
	}
}

// SupportsConditional reports whether the server honours conditional
// writes, probing it if no PutIf has yet.
func (s *Store) SupportsConditional(ctx context.Context) (bool, error) {
	err := s.checkConditional(ctx)
	if errors.Is(err, errors.ErrUnsupported) {
		return false, nil
	}
	return err == nil, err
}

func (s *Store) checkConditional(ctx context.Context) error {
	s.condMu.Lock()
	defer s.condMu.Unlock()
	if s.cond == condUnknown {
		ok, err := s.probeConditional(ctx)
		if err != nil {
			return err
		}
		s.cond = condNo
		if ok {
			s.cond = condYes
		}
	}
	if s.cond == condNo {
		return fmt.Errorf("put-if: %s ignores conditional writes (If-None-Match, If-Match): %w", s.cfg.endpointName(), errors.ErrUnsupported)
	}
	return nil
}

func (s *Store) probeConditional(ctx context.Context) (bool, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	// A dot-name is never a valid key, so it cannot collide with one, and
	// List skips it if a crash leaves it behind.
	key := ".cassback-probe-" + hex.EncodeToString(rnd[:])
	put := func(cond func(*s3.PutObjectInput)) (*s3.PutObjectOutput, error) {
		out, _, err := s.putObject(ctx, "probe conditional writes", key, bytes.NewReader(nil), 0, cond)
		return out, err
	}
	first, err := put(condition(""))
	if err != nil {
		if status, code, _ := responseInfo(err); status == 501 || code == "NotImplemented" {
			return false, nil
		}
		return false, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_, _ = s.client.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: s.bucket, Key: s.full(key)})
	}()
	for _, ifMatch := range []string{"", "cassback-no-such-etag-" + etag(first.ETag)} {
		_, err := put(condition(ifMatch))
		switch {
		case err == nil:
			return false, nil // the condition was ignored
		case errors.Is(err, remote.ErrPrecondition):
		default:
			if status, code, _ := responseInfo(err); status == 501 || code == "NotImplemented" {
				return false, nil
			}
			return false, err
		}
	}
	return true, nil
}
