package s3

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cassback/cassback/remote"
)

// List implements remote.Store with ListObjectsV2, 1,000 keys a page, in
// the byte order S3 lists in. Objects whose names are not valid keys (left
// by other tools, or the probe's hidden objects) are skipped. fn runs
// between pages, so it may take as long as it likes.
func (s *Store) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if err := remote.BeginListUnder(ctx, s.prefix, prefix); err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: s.bucket, Prefix: aws.String(s.prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.opError(ctx, "list", prefix, err)
		}
		for _, o := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix)
			if !ok || remote.ValidKey(key) != nil {
				continue
			}
			err := fn(remote.Info{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified), ETag: etag(o.ETag)})
			if errors.Is(err, remote.ErrStop) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// ListDirs implements remote.Store with ListObjectsV2 and the delimiter
// '/': one request per 1,000 directories, however many keys lie below them.
// S3 orders the directories with their '/' ("x-y/" before "x/"); ListDirs
// sorts the names.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := remote.BeginListDirsUnder(ctx, s.prefix, prefix); err != nil {
		return nil, err
	}
	full := s.prefix + prefix
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: s.bucket, Prefix: aws.String(full), Delimiter: aws.String("/")})
	var dirs []string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.opError(ctx, "list-dirs", prefix, err)
		}
		for _, cp := range page.CommonPrefixes {
			d, ok := strings.CutPrefix(aws.ToString(cp.Prefix), full)
			d, slash := strings.CutSuffix(d, "/")
			if ok && slash && remote.ValidKey(d) == nil && !strings.Contains(d, "/") {
				dirs = append(dirs, d)
			}
		}
	}
	slices.Sort(dirs)
	return dirs, nil
}

// Delete implements remote.Store with DeleteObject; S3 answers a missing
// key with success, and Delete treats a not-found answer as success too.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := remote.BeginUnder(ctx, "delete", s.prefix, key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: s.bucket, Key: s.full(key)})
	if err != nil {
		if err = s.opError(ctx, "delete", key, err); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// DeleteMany deletes keys with DeleteObjects, 1,000 keys a request: the
// purge's way to drop thousands of packs in a few requests. Missing keys
// are not an error. Every key is checked before any request. The error
// joins the keys the server would not delete; it is transient when every
// such refusal is (throttling, internal errors), so the whole call may be
// retried (deleting again is harmless).
//
// DeleteMany is not part of remote.Store; find it with a type assertion
// (interface{ DeleteMany(context.Context, []string) error }). The remote
// decorators (remote.WithRetry, remote.Counting) forward it.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if err := remote.BeginUnder(ctx, "delete-many", s.prefix, k); err != nil {
			return err
		}
	}
	for start := 0; start < len(keys); start += maxBatch {
		batch := keys[start:min(start+maxBatch, len(keys))]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: s.full(k)}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return s.opError(ctx, "delete-many", batch[0], err)
		}
		var errs []error
		transient := true
		for _, e := range out.Errors {
			code := aws.ToString(e.Code)
			if code == "NoSuchKey" {
				continue
			}
			key := strings.TrimPrefix(aws.ToString(e.Key), s.prefix)
			errs = append(errs, fmt.Errorf("delete %s: s3 %s: %s", key, code, oneLine(aws.ToString(e.Message))))
			if code != "InternalError" && code != "SlowDown" && code != "ServiceUnavailable" {
				transient = false
			}
		}
		if len(errs) > 0 {
			err := fmt.Errorf("delete-many: %d of %d keys not deleted: %w", len(errs), len(batch), remote.JoinErrors(errs))
			if transient {
				return remote.Transient(err)
			}
			return err
		}
	}
	return nil
}
