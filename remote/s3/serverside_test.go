package s3_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote/remotetest"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/s3test"
)

// upload is one request that creates an object: a PutObject or a
// CreateMultipartUpload, with the key it names (the bucket taken off).
type upload struct {
	op, key string
	h       http.Header
}

// uploads picks the object-creating requests out of what the proxy
// recorded, and the UploadPart requests apart.
func uploads(t *testing.T, reqs []s3test.Request, bucket string) (puts, parts []upload) {
	t.Helper()
	for _, r := range reqs {
		key := strings.TrimPrefix(r.Path, "/"+bucket+"/")
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.Query, "uploadId="):
			parts = append(parts, upload{"UploadPart", key, r.Header})
		case r.Method == http.MethodPut && !strings.Contains(r.Query, "uploadId="):
			puts = append(puts, upload{"PutObject", key, r.Header})
		case r.Method == http.MethodPost && strings.Contains(r.Query, "uploads"):
			puts = append(puts, upload{"CreateMultipartUpload", key, r.Header})
		}
	}
	return puts, parts
}

// TestServerSideOptions records the headers of every upload through a
// proxy in front of versitygw: the encryption header on each PutObject
// (conditional ones and the conditional-write probe included) and each
// CreateMultipartUpload, the storage class only on keys under the
// configured prefixes, neither on UploadPart (S3 refuses them there), and
// no header at all without the options. The objects read back whole.
func TestServerSideOptions(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	small := []byte("metadata object")
	big := remotetest.Data(3, 6<<20) // two parts of 5 and 1 MiB
	for _, tt := range []struct {
		name              string
		sse, kmsKey, sc   string
		wantSSE, wantKMS  string
		wantClassOnPacks  string
		prefixes          []string
		wantClassOnOthers string
	}{
		{name: "none"},
		{name: "aes256-standard-ia", sse: "AES256", sc: "STANDARD_IA", prefixes: []string{"packs/"},
			wantSSE: "AES256", wantClassOnPacks: "STANDARD_IA"},
		{name: "kms-key-glacier-ir", sse: "aws:kms", kmsKey: "alias/cassback-test", sc: "GLACIER_IR", prefixes: []string{"packs/"},
			wantSSE: "aws:kms", wantKMS: "alias/cassback-test", wantClassOnPacks: "GLACIER_IR"},
		{name: "class-on-every-key", sc: "INTELLIGENT_TIERING",
			wantClassOnPacks: "INTELLIGENT_TIERING", wantClassOnOthers: "INTELLIGENT_TIERING"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.Config(t)
			cfg.Endpoint = proxy.URL
			cfg.MaxSinglePut, cfg.PartSize = 1<<20, 5<<20
			cfg.SSE, cfg.SSEKMSKeyID, cfg.StorageClass, cfg.StorageClassPrefixes = tt.sse, tt.kmsKey, tt.sc, tt.prefixes
			proxy.Record(true)
			st := open(t, cfg)
			put(t, st, "packs/ab/abcd", small)
			put(t, st, "packs/cd/cdef", big) // multipart
			put(t, st, "manifests/h/m1", small)
			if _, err := st.PutIf(t.Context(), "index/i1", small, ""); err != nil {
				t.Fatalf("PutIf: %v", err)
			}
			proxy.Record(false)
			recorded := proxy.Recorded()
			for key, want := range map[string][]byte{"packs/ab/abcd": small, "packs/cd/cdef": big, "manifests/h/m1": small, "index/i1": small} {
				if got := get(t, st, key); !bytes.Equal(got, want) {
					t.Errorf("Get(%q): %d bytes, want the %d put", key, len(got), len(want))
				}
			}

			puts, parts := uploads(t, recorded, cfg.Bucket)
			seen := map[string]bool{}
			for _, u := range puts {
				seen[u.key] = true
				wantClass := tt.wantClassOnOthers
				if strings.HasPrefix(u.key, "packs/") {
					wantClass = tt.wantClassOnPacks
				}
				for h, want := range map[string]string{
					"X-Amz-Server-Side-Encryption":                tt.wantSSE,
					"X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id": tt.wantKMS,
					"X-Amz-Storage-Class":                         wantClass,
				} {
					if got := u.h.Get(h); got != want {
						t.Errorf("%s %s: %s: %q, want %q", u.op, u.key, h, got, want)
					}
				}
			}
			for _, key := range []string{"packs/ab/abcd", "packs/cd/cdef", "manifests/h/m1", "index/i1"} {
				if !seen[key] {
					t.Errorf("no upload of %s recorded (recorded: %v)", key, puts)
				}
			}
			if !seen["packs/cd/cdef"] || len(parts) != 2 {
				t.Errorf("%d UploadPart requests recorded, want 2", len(parts))
			}
			for _, u := range parts {
				for _, h := range []string{"X-Amz-Server-Side-Encryption", "X-Amz-Storage-Class"} {
					if got := u.h.Get(h); got != "" {
						t.Errorf("UploadPart %s: %s: %q, want none", u.key, h, got)
					}
				}
			}
		})
	}
}

// TestServerSideOptionsChecked gives bad server-side options: Open refuses
// them, naming what it accepts, before it sends any request.
func TestServerSideOptionsChecked(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	for _, tt := range []struct {
		name            string
		sse, kmsKey, sc string
		want            string
	}{
		{"bad-sse", "AES128", "", "", `s3: server-side encryption "AES128": want one of AES256, aws:kms, aws:kms:dsse`},
		{"fsx", "aws:fsx", "", "", `s3: server-side encryption "aws:fsx": want one of`},
		{"key-without-kms", "AES256", "k", "", `s3: a KMS key ID needs server-side encryption aws:kms or aws:kms:dsse, not "AES256"`},
		{"bad-class", "", "", "standard", `s3: storage class "standard": want one of STANDARD, REDUCED_REDUNDANCY, STANDARD_IA`},
		{"glacier", "", "", "GLACIER", `s3: storage class GLACIER: objects in it cannot be read without a restore request first`},
		{"deep-archive", "", "", "DEEP_ARCHIVE", `s3: storage class DEEP_ARCHIVE: objects in it cannot be read`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.Config(t)
			cfg.Endpoint = proxy.URL
			cfg.SSE, cfg.SSEKMSKeyID, cfg.StorageClass = tt.sse, tt.kmsKey, tt.sc
			before := proxy.Requests()
			_, err := s3.Open(t.Context(), cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Open: %v\nwant one line starting %q", err, tt.want)
			}
			if n := proxy.Requests() - before; n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
		})
	}
}
