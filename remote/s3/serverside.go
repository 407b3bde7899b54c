package s3

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// SSEValues returns the values Config.SSE accepts: the SDK's server-side
// encryption algorithms a client may ask for (aws:fsx and aws:backup are
// set by those services, never in a request).
func SSEValues() []string {
	var vs []string
	for _, v := range types.ServerSideEncryption("").Values() {
		switch v {
		case types.ServerSideEncryptionAes256, types.ServerSideEncryptionAwsKms, types.ServerSideEncryptionAwsKmsDsse:
			vs = append(vs, string(v))
		}
	}
	return vs
}

// StorageClassValues returns the values Config.StorageClass accepts: the
// SDK's storage classes but GLACIER and DEEP_ARCHIVE, whose objects a GET
// refuses until a restore request has copied them back (hours), which
// would break restore, validate and repack.
func StorageClassValues() []string {
	var vs []string
	for _, v := range types.StorageClass("").Values() {
		if !archived(v) {
			vs = append(vs, string(v))
		}
	}
	return vs
}

func archived(c types.StorageClass) bool {
	return c == types.StorageClassGlacier || c == types.StorageClassDeepArchive
}

// checkServerSide checks the server-side options of c.
func (c Config) checkServerSide() error {
	if c.SSE != "" && !slices.Contains(SSEValues(), c.SSE) {
		return fmt.Errorf("server-side encryption %q: want one of %s", c.SSE, strings.Join(SSEValues(), ", "))
	}
	if c.SSEKMSKeyID != "" && !strings.HasPrefix(c.SSE, "aws:kms") {
		return fmt.Errorf("a KMS key ID needs server-side encryption aws:kms or aws:kms:dsse, not %q", c.SSE)
	}
	if c.StorageClass != "" && !slices.Contains(StorageClassValues(), c.StorageClass) {
		if archived(types.StorageClass(c.StorageClass)) {
			return fmt.Errorf("storage class %s: objects in it cannot be read without a restore request first (restore, validate and repack read packs); want one of %s",
				c.StorageClass, strings.Join(StorageClassValues(), ", "))
		}
		return fmt.Errorf("storage class %q: want one of %s", c.StorageClass, strings.Join(StorageClassValues(), ", "))
	}
	return nil
}

// storageClass returns the storage class of key's object: "" (no header,
// STANDARD) unless Config.StorageClass applies to it.
func (s *Store) storageClass(key string) types.StorageClass {
	if s.cfg.StorageClass == "" {
		return ""
	}
	if s.cfg.StorageClassPrefixes == nil {
		return types.StorageClass(s.cfg.StorageClass)
	}
	for _, p := range s.cfg.StorageClassPrefixes {
		if strings.HasPrefix(key, p) {
			return types.StorageClass(s.cfg.StorageClass)
		}
	}
	return ""
}

// sse returns the encryption headers' values of every upload: the
// algorithm ("" for none) and the KMS key ID (nil for none).
func (s *Store) sse() (types.ServerSideEncryption, *string) {
	var id *string
	if s.cfg.SSEKMSKeyID != "" {
		id = &s.cfg.SSEKMSKeyID
	}
	return types.ServerSideEncryption(s.cfg.SSE), id
}
