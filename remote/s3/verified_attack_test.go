package s3_test

// Attacks on remote.PutDurable over S3 (ff59fae): a pack's PUT counts as
// stored, with no HEAD, when the PutObject answer echoes the CRC-32C sent.
// The store is reached through the wrappers a process puts around it
// (cmd/cassback: throttle, retry, counting), which must keep the
// verification (else a HEAD per pack comes back) and must not invent it
// (else a phantom pack enters the index).

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/s3test"
	"github.com/cassback/cassback/remote/throttle"
)

// chain wraps st as cmd/cassback does with an upload limit: throttled,
// retried, counted.
func chain(st *s3.Store) remote.Store {
	opts := remote.RetryOptions{Attempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	lim := throttle.New(throttle.Config{Upload: 1 << 30})
	return lim.Wrap(remote.WithRetry(remote.NewCounting(st), opts))
}

// A pack PUT through the wrappers of a process: verified by the echoed
// CRC-32C, so no HEAD, when the server stores it; a PUT answered 200 by
// something that stored nothing (a proxy, a broken gateway: it echoes no
// checksum) is an error, caught by the HEAD PutDurable then makes — for
// a single PUT and for a multipart upload whose completion was answered
// without being done. A PutObject whose answer is lost after it landed is
// retried, and the retry's echo counts: no HEAD.
func TestVerifiedAttackThroughWrappers(t *testing.T) {
	server := s3test.Start(t)
	target, _ := url.Parse(server.URL)
	rp := &httputil.ReverseProxy{ErrorLog: quietLog, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host }}
	var mu sync.Mutex
	var lose int // answers of PUTs of objects to lose once forwarded
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		blackHole := strings.Contains(r.URL.Path, "hole")
		switch {
		case blackHole && r.Method == http.MethodPut && r.URL.Query().Get("uploadId") == "":
			io.Copy(io.Discard, r.Body)
			w.Header().Set("ETag", `"stored-nothing"`)
			return
		case blackHole && r.Method == http.MethodPost && r.URL.Query().Get("uploadId") != "":
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><ETag>"done-nothing"</ETag></CompleteMultipartUploadResult>`)
			return
		case strings.Contains(r.URL.Path, "lost") && r.Method == http.MethodPut:
			mu.Lock()
			l := lose > 0
			if l {
				lose--
			}
			mu.Unlock()
			if l {
				rec := httptest.NewRecorder()
				rp.ServeHTTP(rec, r) // landed
				if rec.Code != http.StatusOK {
					t.Errorf("forwarded PUT: %d", rec.Code)
				}
				http.Error(w, "answer lost", http.StatusBadGateway)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	for _, tt := range []struct {
		name    string
		key     string
		size    int
		lose    int
		wantErr string // "" for a success
		heads   int64
		puts    int64
	}{
		{"stored", "packs/ok", 100 << 10, 0, "", 0, 1},
		{"stored in parts", "packs/ok-parts", 6 << 20, 0, "", 1, 0},
		{"black hole", "packs/hole", 100 << 10, 0, "not seen stored", 1, 1},
		{"black hole in parts", "packs/hole-parts", 6 << 20, 0, "not seen stored", 1, 0},
		{"answer lost, retried", "packs/lost", 100 << 10, 1, "", 0, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := server.Config(t)
			cfg.Endpoint = front.URL
			cfg.MaxSinglePut, cfg.PartSize = 5<<20, 5<<20
			st := open(t, cfg)
			mu.Lock()
			lose = tt.lose
			mu.Unlock()
			data := remotetest.Data(9, tt.size)
			before := st.Requests()
			err := remote.PutDurable(t.Context(), chain(st), tt.key, bytes.NewReader(data), int64(len(data)))
			after := st.Requests()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("PutDurable: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("PutDurable of an object the server did not store: got %v, want an error saying %q", err, tt.wantErr)
			}
			if got := after["HeadObject"] - before["HeadObject"]; got != tt.heads {
				t.Errorf("HEADs: got %d, want %d", got, tt.heads)
			}
			if got := after["PutObject"] - before["PutObject"]; got != tt.puts {
				t.Errorf("PutObjects: got %d, want %d", got, tt.puts)
			}
			if tt.wantErr == "" {
				direct := cfg
				direct.Endpoint = server.URL
				if got := get(t, open(t, direct), tt.key); !bytes.Equal(got, data) {
					t.Errorf("stored %d bytes, want the %d sent", len(got), len(data))
				}
			}
		})
	}
}
