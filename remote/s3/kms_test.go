package s3_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/kmstest"
	"github.com/cassback/cassback/remote/s3/s3test"
)

var kmsSecret = []byte("kms-test-secret-0123456789abcdef") // 32 bytes

func TestKMSRoundTrip(t *testing.T) {
	srv := kmstest.Start(t)
	encCtx := map[string]string{"cassback-store": "store-1", "slot": "0123456789abcdef"}
	for _, keyID := range []string{kmstest.KeyAlias, kmstest.KeyID} {
		t.Run(keyID, func(t *testing.T) {
			k := srv.KMS(t, keyID)
			blob, err := k.Encrypt(t.Context(), kmsSecret, encCtx)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if bytes.Contains(blob, kmsSecret) {
				t.Fatal("ciphertext holds the plaintext")
			}
			got, err := k.Decrypt(t.Context(), blob, encCtx)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !bytes.Equal(got, kmsSecret) {
				t.Fatalf("Decrypt = %x, want %x", got, kmsSecret)
			}
		})
	}
}

func TestKMSRefusals(t *testing.T) {
	srv := kmstest.Start(t)
	encCtx := map[string]string{"cassback-store": "store-1", "slot": "0123456789abcdef"}
	k := srv.KMS(t, kmstest.KeyAlias)
	blob, err := k.Encrypt(t.Context(), kmsSecret, encCtx)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name   string
		k      *s3.KMS
		blob   []byte
		encCtx map[string]string
	}{
		{"other store", k, blob, map[string]string{"cassback-store": "store-2", "slot": "0123456789abcdef"}},
		{"other slot", k, blob, map[string]string{"cassback-store": "store-1", "slot": "fedcba9876543210"}},
		{"no context", k, blob, nil},
		{"other key", srv.KMS(t, kmstest.OtherKeyID), blob, encCtx},
		{"missing key", srv.KMS(t, "alias/no-such-key"), blob, encCtx},
		{"tampered", k, tampered, encCtx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.k.Decrypt(t.Context(), tc.blob, tc.encCtx)
			if err == nil {
				t.Fatalf("Decrypt = %x, want an error", got)
			}
			if remote.IsTransient(err) {
				t.Errorf("error %v is transient, want permanent", err)
			}
			checkNoSecret(t, err)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q has more than one line", err)
			}
		})
	}
}

func checkNoSecret(t *testing.T, err error) {
	t.Helper()
	for _, form := range []string{"%v", "%+v", "%#v", "%x", "%q"} {
		s := fmt.Sprintf(form, err)
		if strings.Contains(s, string(kmsSecret)) || strings.Contains(s, fmt.Sprintf("%x", kmsSecret)) {
			t.Errorf("error formatted with %s holds the secret: %s", form, s)
		}
	}
}

// TestKMSRetries sends every call through a proxy that fails half the
// requests with a 500 or a reset connection: the retries hide them.
func TestKMSRetries(t *testing.T) {
	srv := kmstest.Start(t)
	proxy := s3test.NewFaultProxy(t, srv.URL)
	proxy.Set(s3test.Faults{Rate: 0.5, Kinds: []s3test.Fault{s3test.Error500, s3test.ResetBefore, s3test.ResetAfter}, Seed: 7})
	cfg := srv.Config(kmstest.KeyAlias)
	cfg.Endpoint = proxy.URL
	cfg.Retry.Attempts = 20
	k, err := s3.NewKMS(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	encCtx := map[string]string{"cassback-store": "s", "slot": "0123456789abcdef"}
	for i := range 5 {
		blob, err := k.Encrypt(t.Context(), kmsSecret, encCtx)
		if err != nil {
			t.Fatalf("Encrypt %d: %v", i, err)
		}
		got, err := k.Decrypt(t.Context(), blob, encCtx)
		if err != nil || !bytes.Equal(got, kmsSecret) {
			t.Fatalf("Decrypt %d = %x, %v; want the secret", i, got, err)
		}
	}
	if n := len(proxy.Injected()); n == 0 {
		t.Error("no fault injected")
	}
}

func TestKMSUnreachable(t *testing.T) {
	srv := kmstest.Start(t)
	proxy := s3test.NewFaultProxy(t, srv.URL)
	proxy.SetDown(true)
	cfg := srv.Config(kmstest.KeyAlias)
	cfg.Endpoint = proxy.URL
	k, err := s3.NewKMS(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Encrypt(t.Context(), kmsSecret, nil)
	if !remote.IsTransient(err) {
		t.Fatalf("Encrypt with the server down: %v, want a transient error", err)
	}
	if got, want := proxy.Requests(), cfg.Retry.Attempts; got != want {
		t.Errorf("requests = %d, want %d (every attempt)", got, want)
	}
	checkNoSecret(t, err)
}

func TestNewKMSConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  s3.KMSConfig
		want string
	}{
		{"no key", s3.KMSConfig{}, "no key id"},
		{"half credentials", s3.KMSConfig{KeyID: "k", AccessKey: "a"}, "both the access key"},
		{"bad endpoint", s3.KMSConfig{KeyID: "k", Endpoint: "ftp://x"}, "endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s3.NewKMS(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewKMS = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	cfg := s3.KMSConfig{KeyID: "k", AccessKey: "a", SecretKey: "very-secret"}
	if s := cfg.String(); strings.Contains(s, "very-secret") {
		t.Errorf("String() = %s: holds the secret key", s)
	}
}
