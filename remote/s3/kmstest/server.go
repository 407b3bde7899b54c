// Package kmstest runs a real AWS KMS emulator for tests: local-kms
// (github.com/nsmithuk/local-kms, MIT) on a free port with a fresh data
// directory and a seed file holding one AES key with the alias KeyAlias.
//
// The binary is found in $CASSBACK_LOCALKMS, else
// ~/.cache/cassback-tools/local-kms-<Version>/local-kms (where test.sh
// installs it), else on PATH. Without it Start skips the test, or fails it
// when the environment variable CI is set, so CI can never pass by
// skipping. Install it with
//
//	GOBIN=$HOME/.cache/cassback-tools/local-kms-v0.0.0-20260228092603-2a5e92d09ab6 go install github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6
//
// local-kms listens on every interface (it takes only a port); clients
// here only ever connect to 127.0.0.1. It does not check signatures, so
// any credentials do. A server starts in well under a second.
package kmstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/remote/s3"
)

// Version is the local-kms pseudo-version the tests are written against.
const Version = "v0.0.0-20260228092603-2a5e92d09ab6"

// The seeded key: an AES-256 key with a fixed id, backing key and alias.
const (
	KeyID    = "9c3f5a7e-1d2b-4c6a-8e0f-2a4b6c8d0e1f"
	KeyAlias = "alias/cassback-test"
	// OtherKeyID is a second seeded AES key, for "wrong key" tests.
	OtherKeyID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
	Region     = "us-east-1"
)

const seed = `Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: ` + KeyID + `
        BackingKeys:
          - 5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9
      - Metadata:
          KeyId: ` + OtherKeyID + `
        BackingKeys:
          - 34743777217a25432a46294a404e635266556a586e3272357538782f413f4428
Aliases:
  - AliasName: ` + KeyAlias + `
    TargetKeyId: ` + KeyID + `
`

// Binary returns the path of the local-kms binary, or an error saying
// where it looked.
func Binary() (string, error) {
	if p := os.Getenv("CASSBACK_LOCALKMS"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CASSBACK_LOCALKMS: %w", err)
		}
		return p, nil
	}
	var tried []string
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "cassback-tools", "local-kms-"+Version, "local-kms")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("local-kms"); err == nil {
		return p, nil
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("local-kms not found (CASSBACK_LOCALKMS unset; tried %s); install it with: "+
		"GOBIN=$HOME/.cache/cassback-tools/local-kms-%s go install github.com/nsmithuk/local-kms@%s",
		strings.Join(tried, ", "), Version, Version)
}

// Server is a running local-kms.
type Server struct {
	URL string // http://127.0.0.1:PORT

	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts local-kms on a free port with a fresh data directory,
// stopped when the test ends. Without a binary it skips the test, or fails
// it when CI is set.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the KMS emulator is missing: %v", err)
		}
		t.Skipf("no KMS emulator: %v", err)
	}
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seedPath, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	// A port found free may be taken before local-kms binds it; try again.
	for try := 0; ; try++ {
		var s *Server
		s, err = start(bin, dir, try)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		if try == 2 {
			t.Fatalf("start local-kms: %v", err)
		}
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func start(bin, dir string, try int) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, fmt.Sprintf("data-%d", try))
	if err := os.Mkdir(data, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("local-kms-%d.log", try))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "KMS_DATA_PATH="+data,
		"KMS_SEED_PATH="+filepath.Join(dir, "seed.yaml"), "KMS_REGION="+Region, "KMS_ACCOUNT_ID=111122223333")
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{URL: "http://127.0.0.1:" + port, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		// Ready when it answers ListAliases with the seeded alias: that is
		// local-kms, not another process that took the port, and seeded.
		if s.ready() {
			return s, nil
		}
		select {
		case <-s.exited:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("local-kms exited at start: %s", lastLines(string(b), 5))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("local-kms did not answer within 15s")
		}
	}
}

func (s *Server) ready() bool {
	req, err := http.NewRequest(http.MethodPost, s.URL+"/", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.ListAliases")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(KeyAlias))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// stop stops the server: SIGTERM, then SIGKILL after 5 s.
func (s *Server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// Config returns a KMSConfig for keyID (KeyAlias, KeyID or OtherKeyID) on
// the server, with any credentials (local-kms checks none) and retries
// that give up quickly.
func (s *Server) Config(keyID string) s3.KMSConfig {
	cfg := s3.KMSConfig{KeyID: keyID, Endpoint: s.URL, Region: Region, AccessKey: "cassback-kms-test", SecretKey: "cassback-kms-test-secret"}
	cfg.Retry.Attempts = 3
	cfg.Retry.BaseDelay = 10 * time.Millisecond
	return cfg
}

// KMS returns a client for keyID on the server.
func (s *Server) KMS(t testing.TB, keyID string) *s3.KMS {
	t.Helper()
	k, err := s3.NewKMS(context.Background(), s.Config(keyID))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
