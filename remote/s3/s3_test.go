package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/s3test"
)

var quietLog = log.New(io.Discard, "", 0)

func open(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	st, err := s3.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

func TestConformance(t *testing.T) {
	server := s3test.Start(t)
	remotetest.Run(t, func(t *testing.T) remote.Store { return open(t, server.Config(t)) })
}

// TestConformancePrefix runs every subtest in its own prefix of one bucket,
// with a directory of the same name beside it; each store sees only its own.
// The prefixes are long (511 bytes, 512 with the '/'), so the suite's
// longest keys fill the 1,024 bytes of the object name only with them.
func TestConformancePrefix(t *testing.T) {
	server := s3test.Start(t)
	cfg := server.Config(t)
	var mu sync.Mutex
	n := 0
	remotetest.Run(t, func(t *testing.T) remote.Store {
		mu.Lock()
		n++
		c := cfg
		c.Prefix = fmt.Sprintf("/%s/s%04d/", remotetest.LongKey(s3.MaxPrefixLen-7), n)
		mu.Unlock()
		other := c
		other.Prefix = strings.TrimSuffix(c.Prefix, "/") + "x" // "stores/sNx": shares the first bytes of every key
		put(t, open(t, other), "noise", []byte("not mine"))
		return open(t, c)
	})
}

// TestConformanceMultipart sends every object above 1 MiB by multipart
// upload.
func TestConformanceMultipart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	server := s3test.Start(t)
	remotetest.Run(t, func(t *testing.T) remote.Store {
		cfg := server.Config(t)
		cfg.MaxSinglePut = 1 << 20
		cfg.PartSize = 5 << 20
		return open(t, cfg)
	})
}

// TestConformanceFaults runs the suite through a proxy that breaks 10% of
// the requests in every way it knows, with the retrying decorator.
func TestConformanceFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	// No reset-body: AtomicPut reads while it overwrites, and a body broken
	// then must fail rather than resume on the new version (TestResume).
	proxy.Set(s3test.Faults{Rate: 0.1, Seed: 1, Latency: 20 * time.Millisecond, Kinds: []s3test.Fault{
		s3test.Error500, s3test.SlowDown503, s3test.ResetBefore, s3test.ResetAfter, s3test.Latency}})
	opts := remote.RetryOptions{Attempts: 10, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}
	t.Cleanup(func() { t.Logf("%d requests, faults injected: %v", proxy.Requests(), proxy.Injected()) })
	remotetest.Run(t, func(t *testing.T) remote.Store {
		cfg := server.Config(t)
		cfg.Endpoint = proxy.URL
		var st *s3.Store
		err := remote.Retry(t.Context(), opts, "open", func(ctx context.Context) error {
			var err error
			st, err = s3.Open(ctx, cfg)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return remote.WithRetry(st, opts)
	})
}

func put(t *testing.T, s remote.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s remote.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}

// unseekable hides every method but Read.
type unseekable struct{ r io.Reader }

func (u unseekable) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestMultipart(t *testing.T) {
	server := s3test.Start(t)
	data := remotetest.Data(7, 12<<20+3) // 5 + 5 + 2 MiB and 3 bytes
	for _, tt := range []struct {
		name string
		r    func() io.Reader
	}{
		{"parallel", func() io.Reader { return bytes.NewReader(data) }},
		{"sequential", func() io.Reader { return unseekable{bytes.NewReader(data)} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.Config(t)
			cfg.MaxSinglePut, cfg.PartSize = 5<<20, 5<<20
			st := open(t, cfg)
			if err := st.Put(t.Context(), "big/obj", tt.r(), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if got := get(t, st, "big/obj"); !bytes.Equal(got, data) {
				t.Errorf("Get after multipart Put: got %d bytes, want the %d sent", len(got), len(data))
			}
			req := st.Requests()
			if req["CreateMultipartUpload"] != 1 || req["UploadPart"] != 3 || req["CompleteMultipartUpload"] != 1 || req["PutObject"] != 0 {
				t.Errorf("requests: got %v, want 1 create, 3 parts, 1 complete, no PutObject", req)
			}
			// Short and long data fail and store nothing.
			for _, n := range []int64{int64(len(data)) + 1, int64(len(data)) - 1} {
				if err := st.Put(t.Context(), "big/bad", tt.r(), n); err == nil {
					t.Errorf("Put of %d bytes claiming %d: got nil error", len(data), n)
				}
			}
			if _, err := st.Stat(t.Context(), "big/bad"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat after failed multipart Puts: got %v, want fs.ErrNotExist", err)
			}
			if n := uploadsLeft(t, server, cfg.Bucket); n != 0 {
				t.Errorf("multipart uploads left behind: %d", n)
			}
		})
	}
}

// uploadsLeft counts the unfinished multipart uploads versitygw keeps on
// disk (DIR/<bucket>/.sgwtmp/multipart/...).
func uploadsLeft(t *testing.T, server *s3test.Server, bucket string) int {
	t.Helper()
	n := 0
	root := filepath.Join(server.Dir, bucket, ".sgwtmp", "multipart")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestOpenErrors(t *testing.T) {
	server := s3test.Start(t)
	good := server.Config(t)
	stopped := s3test.Start(t)
	stopped.Stop()
	for _, tt := range []struct {
		name  string
		cfg   func(c s3.Config) s3.Config
		is    error
		trans bool
		want  string
	}{
		{"wrong-secret", func(c s3.Config) s3.Config { c.SecretKey = "wrong-secret-value"; return c }, s3.ErrCredentials, false, "credentials rejected by " + server.URL},
		{"wrong-key", func(c s3.Config) s3.Config { c.AccessKey = "nobody"; return c }, s3.ErrCredentials, false, "credentials rejected by " + server.URL},
		{"missing-bucket", func(c s3.Config) s3.Config { c.Bucket = "no-such-bucket"; return c }, s3.ErrNoBucket, false, `bucket "no-such-bucket" at ` + server.URL + " does not exist"},
		{"unreachable", func(c s3.Config) s3.Config { c.Endpoint = stopped.URL; return c }, nil, true, "cannot reach " + stopped.URL + ": dial tcp"},
		{"no-bucket-name", func(c s3.Config) s3.Config { c.Bucket = ""; return c }, nil, false, "s3: no bucket given"},
		{"half-credentials", func(c s3.Config) s3.Config { c.SecretKey = ""; return c }, nil, false, "s3: give both the access key and the secret key"},
		{"bad-endpoint", func(c s3.Config) s3.Config { c.Endpoint = "127.0.0.1:9"; return c }, nil, false, `endpoint "127.0.0.1:9": want a URL`},
		{"endpoint-password", func(c s3.Config) s3.Config {
			c.Endpoint = strings.Replace(c.Endpoint, "://", "://user:wrong-secret-value@", 1)
			return c
		}, nil, false, "endpoint " + server.URL + " with a user name or password: give credentials as the access and secret keys"},
		{"bad-endpoint-password", func(c s3.Config) s3.Config { c.Endpoint = "user:wrong-secret-value@127.0.0.1:9"; return c }, nil, false,
			"endpoint (not shown: it has an '@', maybe a password): want a URL"},
		{"small-parts", func(c s3.Config) s3.Config { c.PartSize = 1 << 20; return c }, nil, false, "part size 1048576 bytes"},
		{"bad-prefix", func(c s3.Config) s3.Config { c.Prefix = "a b"; return c }, remote.ErrInvalidKey, false, "key prefix"},
		{"long-prefix", func(c s3.Config) s3.Config { c.Prefix = strings.Repeat("p/", 256) + "p"; return c }, remote.ErrInvalidKey, false, "513 bytes, more than 512"},
		{"bad-ca", func(c s3.Config) s3.Config { c.CAFile = filepath.Join(t.TempDir(), "none.pem"); return c }, fs.ErrNotExist, false, "CA file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s3.Open(t.Context(), tt.cfg(good))
			if err == nil {
				t.Fatal("Open: got nil error")
			}
			msg := err.Error()
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Open: got %v, want one wrapping %v", err, tt.is)
			}
			if remote.IsTransient(err) != tt.trans {
				t.Errorf("Open: got %v, transient %v; want transient %v", err, remote.IsTransient(err), tt.trans)
			}
			if !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("Open: got %q, want one line containing %q", msg, tt.want)
			}
			if strings.Contains(msg, good.SecretKey) || strings.Contains(msg, "wrong-secret-value") {
				t.Errorf("Open: the error %q shows the secret", msg)
			}
		})
	}
	if s := fmt.Sprint(good) + fmt.Sprintf("%+v", good); strings.Contains(s, good.SecretKey) {
		t.Errorf("Config printed: %s shows the secret", s)
	}
}

// TestRequestTimeout checks that a request the server never answers is
// cancelled after RequestTimeout with a transient error, and that a body
// read slowly is not.
func TestRequestTimeout(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	cfg := server.Config(t)
	cfg.Endpoint = proxy.URL
	cfg.RequestTimeout = 300 * time.Millisecond
	st := open(t, cfg)
	put(t, st, "k", []byte("value"))

	proxy.Set(s3test.Faults{Rate: 1, Kinds: []s3test.Fault{s3test.Hang}})
	start := time.Now()
	_, err := st.Stat(t.Context(), "k")
	if !remote.IsTransient(err) || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("Stat of a hung server: got %v, want a transient stall error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stat of a hung server returned after %v, want about %v", d, cfg.RequestTimeout)
	}
	proxy.Set(s3test.Faults{})
	rc, err := st.Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * cfg.RequestTimeout)
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "value" {
		t.Errorf("reading a body %v after the answer: got %q, %v; want %q", 3*cfg.RequestTimeout, b, err, "value")
	}
}

// TestFaultsClassified checks each injected fault is transient, and that a
// retrying store gets through every kind.
func TestFaultsClassified(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	cfg := server.Config(t)
	cfg.Endpoint = proxy.URL
	st := open(t, cfg)
	data := remotetest.Data(3, 1<<20)
	put(t, st, "k", data)
	retrying := remote.WithRetry(st, remote.RetryOptions{Attempts: 3, BaseDelay: time.Millisecond})
	for _, f := range []s3test.Fault{s3test.Error500, s3test.SlowDown503, s3test.ResetBefore, s3test.ResetAfter, s3test.ResetBody} {
		t.Run(f.String(), func(t *testing.T) {
			proxy.Set(s3test.Faults{Rate: 1, Kinds: []s3test.Fault{f}})
			rc, err := st.Get(t.Context(), "k", 0, -1)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if !remote.IsTransient(err) {
				t.Errorf("Get with fault %v: got %v, want a transient error", f, err)
			}
			// A Put's answer has no body: reset-body comes after a whole answer.
			if err := st.Put(t.Context(), "k2", bytes.NewReader(data), int64(len(data))); f != s3test.ResetBody && !remote.IsTransient(err) {
				t.Errorf("Put with fault %v: got %v, want a transient error", f, err)
			}
			// Every other request fails: the retries get through.
			proxy.Set(s3test.Faults{Rate: 0.5, Kinds: []s3test.Fault{f}, Seed: 2})
			for range 4 {
				if err := retrying.Put(t.Context(), "k2", bytes.NewReader(data), int64(len(data))); err != nil && !strings.Contains(err.Error(), "gave up") {
					t.Errorf("retrying Put with fault %v: %v", f, err)
				}
			}
			proxy.Set(s3test.Faults{})
		})
	}
}

// TestServerVerifiesChecksum corrupts one byte of every upload on the way:
// the server must refuse it, so nothing is stored.
func TestServerVerifiesChecksum(t *testing.T) {
	server := s3test.Start(t)
	target, _ := url.Parse(server.URL)
	corrupter := httptest.NewServer(&httputil.ReverseProxy{
		ErrorLog: quietLog,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			if pr.In.Method == http.MethodPut && pr.In.ContentLength > 10 {
				b, _ := io.ReadAll(pr.In.Body)
				b[len(b)/2] ^= 1
				pr.Out.Body = io.NopCloser(bytes.NewReader(b))
			}
		},
	})
	defer corrupter.Close()
	for _, tt := range []struct {
		name string
		size int
	}{{"single", 100 << 10}, {"multipart", 6 << 20}} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.Config(t)
			cfg.Endpoint = corrupter.URL
			cfg.MaxSinglePut, cfg.PartSize = 5<<20, 5<<20
			st := open(t, cfg)
			data := remotetest.Data(4, tt.size)
			err := st.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)))
			if err == nil || remote.IsTransient(err) {
				t.Errorf("Put of corrupted data: got %v, want a permanent error", err)
			}
			if _, err := st.Stat(t.Context(), "k"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat after a corrupted upload: got %v, want fs.ErrNotExist", err)
			}
		})
	}
}

// TestPutVerified checks when a Put counts as verified (its pack needs no
// HEAD, remote.PutDurable): versitygw checks the CRC-32C a single
// PutObject carries and echoes it; an object sent in parts, a server that
// echoes no checksum and one that echoes another are not verified.
func TestPutVerified(t *testing.T) {
	server := s3test.Start(t)
	target, _ := url.Parse(server.URL)
	proxy := func(echo func(h http.Header)) string {
		rp := httptest.NewServer(&httputil.ReverseProxy{
			ErrorLog: quietLog,
			Rewrite:  func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
			ModifyResponse: func(r *http.Response) error {
				if r.Request.Method == http.MethodPut {
					echo(r.Header)
				}
				return nil
			},
		})
		t.Cleanup(rp.Close)
		return rp.URL
	}
	for _, tt := range []struct {
		name     string
		endpoint string
		size     int
		want     bool
	}{
		{"single", server.URL, 100 << 10, true},
		{"multipart", server.URL, 6 << 20, false},
		{"no echo", proxy(func(h http.Header) { h.Del("X-Amz-Checksum-Crc32c") }), 100 << 10, false},
		{"other echo", proxy(func(h http.Header) { h.Set("X-Amz-Checksum-Crc32c", "AAAAAA==") }), 100 << 10, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.Config(t)
			cfg.Endpoint = tt.endpoint
			cfg.MaxSinglePut, cfg.PartSize = 5<<20, 5<<20
			st := open(t, cfg)
			data := remotetest.Data(5, tt.size)
			got, err := st.PutVerified(t.Context(), "k", bytes.NewReader(data), int64(len(data)))
			if err != nil || got != tt.want {
				t.Errorf("PutVerified: got %v, %v; want %v, nil", got, err, tt.want)
			}
			if info, err := st.Stat(t.Context(), "k"); err != nil || info.Size != int64(len(data)) {
				t.Errorf("Stat: got %+v, %v; want %d bytes", info, err, len(data))
			}
		})
	}
}

// TestConditionalIgnored puts a proxy in front that answers every
// conditional PUT with 200 without storing anything, as a server that
// ignores the headers would: PutIf must report errors.ErrUnsupported.
func TestConditionalIgnored(t *testing.T) {
	server := s3test.Start(t)
	target, _ := url.Parse(server.URL)
	rp := &httputil.ReverseProxy{ErrorLog: quietLog, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host }}
	ignorer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && (r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Match") != "") {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("ETag", `"ignored"`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer ignorer.Close()
	cfg := server.Config(t)
	cfg.Endpoint = ignorer.URL
	st := open(t, cfg)
	if _, err := st.PutIf(t.Context(), "lease", []byte("x"), ""); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PutIf on a server that ignores conditions: got %v, want errors.ErrUnsupported", err)
	}
	if ok, err := st.SupportsConditional(t.Context()); ok || err != nil {
		t.Errorf("SupportsConditional: got %v, %v; want false, nil", ok, err)
	}
	if n := st.Requests()["PutObject"]; n != 2 {
		t.Errorf("the probe ran %d PutObject requests, want 2 (and only once)", n)
	}

	// The real server honours them; the probe leaves no object behind.
	st = open(t, server.Config(t))
	if ok, err := st.SupportsConditional(t.Context()); !ok || err != nil {
		t.Errorf("SupportsConditional on versitygw: got %v, %v; want true", ok, err)
	}
	entries, _ := os.ReadDir(filepath.Join(server.Dir, st.Config().Bucket))
	for _, e := range entries {
		if e.Name() != ".sgwtmp" { // versitygw's own
			t.Errorf("left in the bucket after the probe: %s", e.Name())
		}
	}
}

// TestManyKeys lists across pages and deletes in batches.
func TestManyKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	server := s3test.Start(t)
	cfg := server.Config(t)
	cfg.Prefix = "p"
	st := open(t, cfg)
	const n = 1100 // two pages, two batches
	var keys []string
	for i := range n {
		keys = append(keys, fmt.Sprintf("many/%02d/%05d", i%7, i))
	}
	var wg sync.WaitGroup
	work := make(chan string)
	for range 16 {
		wg.Go(func() {
			for k := range work {
				if err := st.Put(t.Context(), k, strings.NewReader(k), int64(len(k))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	var listed []string
	if err := st.List(t.Context(), "many/", func(info remote.Info) error { listed = append(listed, info.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != n {
		t.Fatalf("List: got %d keys, want %d", len(listed), n)
	}
	for i := 1; i < len(listed); i++ {
		if listed[i-1] >= listed[i] {
			t.Fatalf("List out of order: %q before %q", listed[i-1], listed[i])
		}
	}
	before := st.Requests()["ListObjectsV2"]
	dirs, err := st.ListDirs(t.Context(), "many/")
	if err != nil || len(dirs) != 7 {
		t.Errorf("ListDirs: got %v, %v; want 7 dirs", dirs, err)
	}
	if got := st.Requests()["ListObjectsV2"] - before; got != 1 {
		t.Errorf("ListDirs of 7 dirs over %d keys: %d requests, want 1", n, got)
	}
	if err := st.DeleteMany(t.Context(), append(keys, "many/missing")); err != nil {
		t.Fatal(err)
	}
	if got := st.Requests()["DeleteObjects"]; got != 2 {
		t.Errorf("DeleteMany of %d keys: %d requests, want 2", n+1, got)
	}
	listed = nil
	st.List(t.Context(), "", func(info remote.Info) error { listed = append(listed, info.Key); return nil })
	if len(listed) != 0 {
		t.Errorf("List after DeleteMany: got %d keys, want 0", len(listed))
	}
	if err := st.DeleteMany(t.Context(), []string{"ok", "not ok"}); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("DeleteMany with an invalid key: got %v, want ErrInvalidKey", err)
	}
}

// TestKeyLimitCountsPrefix checks that the 1,024-byte limit of S3 (and
// SeaweedFS) applies to the object name the server gets, prefix included:
// a key that fits alone but not after the prefix is refused by every
// method before any request is sent, with an error that gives both
// lengths, and the longest key that fits is stored whole.
func TestKeyLimitCountsPrefix(t *testing.T) {
	server := s3test.Start(t)
	cfg := server.Config(t)
	cfg.Prefix = "stores/one" // sent as "stores/one/": 11 bytes
	st := open(t, cfg)
	ctx := t.Context()
	room := remote.MaxKeyLen - len("stores/one/")
	fits, over := remotetest.LongKey(room), remotetest.LongKey(room+1)

	sent := func() (n int64) {
		for _, c := range st.Requests() {
			n += c
		}
		return n
	}
	before := sent()
	check := func(op string, err error) {
		t.Helper()
		want := fmt.Sprintf("%d bytes, %d with the store's key prefix \"stores/one/\" (11 bytes), more than %d", room+1, remote.MaxKeyLen+1, remote.MaxKeyLen)
		if !errors.Is(err, remote.ErrInvalidKey) || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("%s of a %d-byte key: got %v, want ErrInvalidKey saying %q", op, len(over), err, want)
			return
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || len(msg) > 300 {
			t.Errorf("%s: error %q is not one short line", op, msg)
		}
	}
	check("Put", st.Put(ctx, over, strings.NewReader("x"), 1))
	_, err := st.PutIf(ctx, over, []byte("x"), "")
	check("PutIf", err)
	_, err = st.Get(ctx, over, 0, -1)
	check("Get", err)
	_, err = st.Stat(ctx, over)
	check("Stat", err)
	check("Delete", st.Delete(ctx, over))
	check("DeleteMany", st.DeleteMany(ctx, []string{"ok", over}))
	check("List", st.List(ctx, over, func(remote.Info) error { return nil }))
	if n := sent() - before; n != 0 {
		t.Errorf("refused keys sent %d requests, want 0", n)
	}

	put(t, st, fits, []byte("longest"))
	if got := get(t, st, fits); string(got) != "longest" {
		t.Errorf("Get of the %d-byte key: got %q, want %q", len(fits), got, "longest")
	}
	cfg.Prefix = ""
	var names []string
	err = open(t, cfg).List(ctx, "", func(info remote.Info) error { names = append(names, info.Key); return nil })
	if err != nil || len(names) != 1 || names[0] != "stores/one/"+fits {
		t.Errorf("bucket after the refused writes: got %d keys %.60q, %v; want only the %d-byte key", len(names), names, err, remote.MaxKeyLen)
	}
}

// TestResume breaks GET bodies half-way: the retrying decorator reads the
// rest from where it stopped, unless the object changed meanwhile.
func TestResume(t *testing.T) {
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	cfg := server.Config(t)
	cfg.Endpoint = proxy.URL
	st := open(t, cfg)
	data := remotetest.Data(5, 4<<20)
	put(t, st, "k", data)
	r := remote.WithRetry(remote.NewCounting(st), remote.RetryOptions{Attempts: 4, BaseDelay: time.Millisecond})
	proxy.Set(s3test.Faults{Rate: 1, Kinds: []s3test.Fault{s3test.ResetBody}})
	rc, err := r.Get(t.Context(), "k", 1000, 3<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Two breaks, each after half of what was asked; then a whole answer.
	var got []byte
	buf := make([]byte, 64<<10)
	for reads := 0; ; reads++ {
		if proxy.Requests() == 3 {
			proxy.Set(s3test.Faults{})
		}
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(got), err)
		}
	}
	rc.Close()
	if !bytes.Equal(got, data[1000:1000+3<<20]) {
		t.Errorf("resumed Get: got %d bytes, want %d bytes from offset 1000", len(got), 3<<20)
	}
	if n := st.Requests()["GetObject"]; n < 2 {
		t.Errorf("GetObject requests: got %d, want at least 2 (a resume)", n)
	}

	// The object is replaced while it is read: the read fails rather than
	// mix two versions.
	proxy.Set(s3test.Faults{Rate: 1, Kinds: []s3test.Fault{s3test.ResetBody}})
	rc, err = r.Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	direct := server.Config(t)
	direct.Bucket = cfg.Bucket
	put(t, open(t, direct), "k", remotetest.Data(6, 4<<20))
	_, err = io.ReadAll(rc)
	rc.Close()
	if err == nil || !strings.Contains(err.Error(), "changed while it was read") {
		t.Errorf("reading an object replaced after its body broke: got %v, want %q", err, "changed while it was read")
	}
}

// TestNoCredentials empties the SDK's credential chain: Open says so.
func TestNoCredentials(t *testing.T) {
	server := s3test.Start(t)
	cfg := server.Config(t)
	cfg.AccessKey, cfg.SecretKey = "", ""
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_SHARED_CREDENTIALS_FILE": none, "AWS_CONFIG_FILE": none, "AWS_WEB_IDENTITY_TOKEN_FILE": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	_, err := s3.Open(t.Context(), cfg)
	if !errors.Is(err, s3.ErrCredentials) || !strings.Contains(err.Error(), "s3: no usable credentials: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Open without credentials: got %v, want one line wrapping ErrCredentials saying there are none", err)
	}
}
