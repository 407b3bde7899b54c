package s3test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Fault is a failure the proxy can inject into one request.
type Fault int

const (
	// Error500 answers 500 InternalError without forwarding the request.
	Error500 Fault = iota
	// SlowDown503 answers 503 SlowDown (S3's throttling) without
	// forwarding the request.
	SlowDown503
	// ResetBefore resets the connection before forwarding the request.
	ResetBefore
	// ResetAfter forwards the request and resets the connection instead of
	// answering: the server has done the work, the client learns nothing
	// (a lost reply).
	ResetAfter
	// ResetBody forwards the request, sends the answer's headers and half
	// its body, then resets the connection.
	ResetBody
	// Latency delays the request by Faults.Latency, then forwards it.
	Latency
	// Hang holds the request, unanswered, until the client gives up.
	Hang
)

var faultNames = [...]string{"500", "503-slowdown", "reset-before", "reset-after", "reset-body", "latency", "hang"}

func (f Fault) String() string {
	if f < 0 || int(f) >= len(faultNames) {
		return "Fault(" + strconv.Itoa(int(f)) + ")"
	}
	return faultNames[f]
}

// AllFaults are the faults a client must survive by retrying; Hang is left
// out (it needs a short request timeout).
var AllFaults = []Fault{Error500, SlowDown503, ResetBefore, ResetAfter, ResetBody, Latency}

// Faults says what the proxy injects.
type Faults struct {
	// Rate is the probability that a request gets a fault, 0 to 1.
	Rate float64
	// Kinds are the faults to choose from, uniformly; nil means AllFaults.
	Kinds []Fault
	// Latency is the delay of the Latency fault; 0 means 200ms.
	Latency time.Duration
	// Seed seeds the choices; runs with one seed and one request order
	// inject the same faults.
	Seed uint64
}

// FaultProxy is an HTTP proxy on 127.0.0.1 that forwards requests to an S3
// server and injects faults into some of them. Point Config.Endpoint at its
// URL. It keeps the Host header, so SigV4 signatures made for the proxy's
// address still verify. It is safe for concurrent use.
type FaultProxy struct {
	URL string

	rp  *httputil.ReverseProxy
	srv *httptest.Server

	mu       sync.Mutex
	faults   Faults
	rng      *rand.Rand
	down     bool
	downIn   int // requests until down; 0: no countdown
	requests int
	injected map[Fault]int
	record   bool
	recorded []Request
}

// Request is what the proxy received of one request, for tests that check
// the headers a client sends.
type Request struct {
	Method string
	Path   string // as sent: /bucket/key with path-style addressing
	Query  string
	Header http.Header
}

// Record starts (true) or stops recording every request the proxy
// receives, faulty or not. Starting forgets what was recorded before.
func (p *FaultProxy) Record(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record = on
	if on {
		p.recorded = nil
	}
}

// Recorded returns the requests recorded so far, in arrival order.
func (p *FaultProxy) Recorded() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.recorded)
}

// NewFaultProxy starts a proxy to target (an http:// URL) that injects no
// faults until Set is called; it stops when the test ends.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{injected: make(map[Fault]int), rng: rand.New(rand.NewPCG(0, 0))}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The server is unreachable or the client went away: act like
			// the server, as far as the client can tell.
			reset(w)
		},
	}
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// Set replaces the faults to inject.
func (p *FaultProxy) Set(f Faults) {
	if f.Kinds == nil {
		f.Kinds = AllFaults
	}
	if f.Latency == 0 {
		f.Latency = 200 * time.Millisecond
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults, p.rng = f, rand.New(rand.NewPCG(f.Seed, 0x5eed))
}

// SetDown makes every request fail with a connection reset, as if the
// server were down, until SetDown(false).
func (p *FaultProxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.downIn = down, 0
}

// SetDownAfter lets the next n requests through (or fail as Set says) and
// then acts as SetDown(true): the server going down in the middle of a run.
func (p *FaultProxy) SetDownAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.downIn = n <= 0, n
}

// Requests returns how many requests reached the proxy.
func (p *FaultProxy) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// Injected returns how many faults of each kind were injected.
func (p *FaultProxy) Injected() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[Fault]int, len(p.injected))
	for k, v := range p.injected {
		m[k] = v
	}
	return m
}

// pick decides the fate of one request: a fault, or -1 to forward it.
func (p *FaultProxy) pick(r *http.Request) (Fault, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if p.record {
		p.recorded = append(p.recorded, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()})
	}
	if p.downIn > 0 {
		p.downIn--
		p.down = p.downIn == 0
	}
	if p.down {
		p.injected[ResetBefore]++
		return ResetBefore, 0
	}
	f := p.faults
	if f.Rate <= 0 || p.rng.Float64() >= f.Rate {
		return -1, 0
	}
	k := f.Kinds[p.rng.IntN(len(f.Kinds))]
	p.injected[k]++
	return k, f.Latency
}

func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fault, latency := p.pick(r)
	switch fault {
	case Error500:
		s3Error(w, r, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	case SlowDown503:
		s3Error(w, r, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case ResetBefore:
		reset(w)
	case ResetAfter:
		p.rp.ServeHTTP(&discard{h: http.Header{}}, r)
		reset(w)
	case ResetBody:
		p.rp.ServeHTTP(&halfWriter{w: w}, r)
		http.NewResponseController(w).Flush()
		reset(w)
	case Latency:
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
		p.rp.ServeHTTP(w, r)
	case Hang:
		<-r.Context().Done()
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// s3Error answers like S3, after reading the request body as S3 would.
func s3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>fault</RequestId></Error>`, code, msg)
	}
}

// reset closes the client's connection with a TCP RST.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server drops the connection
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// discard is a ResponseWriter that throws the answer away.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// halfWriter passes the headers and the first half of the body (by
// Content-Length) and swallows the rest.
type halfWriter struct {
	w       http.ResponseWriter
	left    int64
	started bool
}

func (h *halfWriter) Header() http.Header { return h.w.Header() }

func (h *halfWriter) WriteHeader(code int) {
	if h.started {
		return
	}
	h.started = true
	n, _ := strconv.ParseInt(h.w.Header().Get("Content-Length"), 10, 64)
	h.left = n / 2
	h.w.WriteHeader(code)
}

func (h *halfWriter) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	if k := min(int64(len(b)), h.left); k > 0 {
		h.w.Write(b[:k])
		h.left -= k
		if h.left == 0 {
			http.NewResponseController(h.w).Flush()
		}
	}
	return len(b), nil
}

// Flush is what ReverseProxy calls; it flushes only what was passed.
func (h *halfWriter) Flush() { http.NewResponseController(h.w).Flush() }
