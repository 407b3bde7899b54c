// Package s3test runs a real S3-compatible server for tests: versitygw
// (Apache-2.0) with its posix backend on a free 127.0.0.1 port and a fresh
// directory, and a fault-injecting HTTP proxy to put in front of it.
//
// The versitygw binary is found in $CASSBACK_VERSITYGW, else
// ~/.cache/cassback-tools/versitygw-v1.8.0/versitygw (where .ci/run builds
// it), else on PATH. Without it Start skips the test, or fails it when the
// environment variable CI is set, so CI can never pass by skipping. Build
// it with
//
//	GOBIN=$HOME/.cache/cassback-tools/versitygw-v1.8.0 go install -ldflags='-s -w' github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// A server starts in about a quarter of a second and uses about 60 MB; a
// test usually starts one and gives each subtest its own bucket.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/remote/s3"
)

// Version is the versitygw release the tests are written against.
const Version = "v1.8.0"

// Credentials of the server's root account.
const (
	AccessKey = "cassback-test-key"
	SecretKey = "cassback-test-secret"
)

// Binary returns the path of the versitygw binary, or an error saying
// where it looked.
func Binary() (string, error) {
	if p := os.Getenv("CASSBACK_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CASSBACK_VERSITYGW: %w", err)
		}
		return p, nil
	}
	var tried []string
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "cassback-tools", "versitygw-"+Version, "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("versitygw %s not found (CASSBACK_VERSITYGW unset; tried %s); build it with: "+
		"GOBIN=$HOME/.cache/cassback-tools/versitygw-%s go install -ldflags='-s -w' github.com/versity/versitygw/cmd/versitygw@%s",
		Version, strings.Join(tried, ", "), Version, Version)
}

// Server is a running versitygw.
type Server struct {
	URL string // http://127.0.0.1:PORT
	Dir string // the posix backend's directory: DIR/<bucket>/<key>

	bin, addr, log string
	mu             sync.Mutex
	cmd            *exec.Cmd
	exited         chan struct{}
}

var buckets atomic.Int64

// Start starts versitygw on a free port with a fresh directory, stopped
// when the test ends. Without a binary it skips the test, or fails it
// when CI is set.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the S3 test server is missing: %v", err)
		}
		t.Skipf("no S3 test server: %v", err)
	}
	dir := t.TempDir()
	s := &Server{Dir: filepath.Join(dir, "data"), bin: bin, log: filepath.Join(dir, "versitygw.log")}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A port found free may be taken before versitygw binds it; try again.
	for try := 0; ; try++ {
		s.addr, err = freeAddr()
		if err == nil {
			err = s.start()
		}
		if err == nil {
			break
		}
		if try == 2 {
			t.Fatalf("start versitygw: %v", err)
		}
	}
	s.URL = "http://" + s.addr
	t.Cleanup(s.Stop)
	return s
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logf, err := os.OpenFile(s.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "--port", s.addr, "--access", AccessKey, "--secret", SecretKey,
		"--health", "/health", "--quiet", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + s.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("versitygw exited at start: %s", lastLines(string(b), 5))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return errors.New("versitygw did not answer /health within 15s")
		}
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s); requests then
// find the port closed. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart starts a stopped server again on the same port and directory,
// with the buckets and objects it had.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("restart versitygw: %v", err)
	}
}

// NewBucket creates an empty bucket with a name unique in the process.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	return s.Config(t).Bucket
}

// Config returns a Config for a new, empty bucket on the server.
func (s *Server) Config(t testing.TB) s3.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := s.CreateBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// CreateBucket creates an empty bucket with a name unique in the process
// and returns its Config: for callers without a testing.TB (testscript's
// Setup).
func (s *Server) CreateBucket(ctx context.Context) (s3.Config, error) {
	cfg := s.config(fmt.Sprintf("cassback-test-%d", buckets.Add(1)))
	if err := s3.CreateBucket(ctx, cfg); err != nil {
		return s3.Config{}, fmt.Errorf("create bucket: %w", err)
	}
	return cfg, nil
}

func (s *Server) config(bucket string) s3.Config {
	return s3.Config{Bucket: bucket, Endpoint: s.URL, Region: "us-east-1", AccessKey: AccessKey, SecretKey: SecretKey}
}
