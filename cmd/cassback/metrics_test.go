package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/cassback/cassback"
	"github.com/cassback/cassback/internal/nodegen"
	"github.com/cassback/cassback/remote"
)

// needTool returns the path of a Prometheus tool, skipping the test
// without it, or failing it when CI is set (.ci/run installs Debian's
// prometheus package).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing (apt-get install prometheus): %v", name, err)
		}
		t.Skipf("%s not found (apt-get install prometheus): %v", name, err)
	}
	return p
}

// TestStatsCollector: what a scrape shows of a Stats, in Prometheus's
// names and units, and that the names pass Prometheus's own lint.
func TestStatsCollector(t *testing.T) {
	st := cassback.NewStats()
	st.BytesRead.Add(3 << 20)
	st.BytesDeduplicated.Add(1 << 20)
	st.ChunksNew.Add(2)
	st.ChunksKnown.Add(1)
	st.ObserveRequest(remote.Call{Kind: remote.KindPut, Bytes: 2 << 20, Dur: 30 * time.Millisecond})
	st.ObserveRequest(remote.Call{Kind: remote.KindPut, Dur: 2 * time.Second, Err: errors.New("connection reset")})
	st.ObserveRetry("put", errors.New("connection reset"))
	now := time.Unix(1_800_000_000, 0)
	c := newStatsCollector(st, func() time.Time { return now })
	want := `
# HELP cassback_read_bytes_total Bytes read from data files by backups.
# TYPE cassback_read_bytes_total counter
cassback_read_bytes_total 3.145728e+06
# HELP cassback_uploaded_bytes_total Bytes the store accepted (packs, index files, manifests, sessions).
# TYPE cassback_uploaded_bytes_total counter
cassback_uploaded_bytes_total 2.097152e+06
# HELP cassback_chunks_total Chunks backups read, by status: new (uploaded) or known (the store had them).
# TYPE cassback_chunks_total counter
cassback_chunks_total{status="known"} 1
cassback_chunks_total{status="new"} 2
# HELP cassback_store_retries_total Store requests retried after a transient failure, by operation.
# TYPE cassback_store_retries_total counter
cassback_store_retries_total{operation="put"} 1
# HELP cassback_store_up 1 when the last store request got an answer (or none was made yet), 0 when it failed.
# TYPE cassback_store_up gauge
cassback_store_up 0
`
	names := []string{"cassback_read_bytes_total", "cassback_uploaded_bytes_total", "cassback_chunks_total", "cassback_store_retries_total", "cassback_store_up"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Every pair of operation and outcome is present from the start, so
	// rate() sees the first failure.
	if n := testutil.CollectAndCount(c, "cassback_store_requests_total"); n != 7*5 {
		t.Errorf("store_requests_total: %d series, want 35", n)
	}
	for _, q := range []struct {
		name, labels string
		want         float64
	}{
		{"cassback_store_requests_total", `operation="put",outcome="ok"`, 1},
		{"cassback_store_requests_total", `operation="put",outcome="error"`, 1},
		{"cassback_errors_total", `kind="store"`, 1},
		{"cassback_store_request_duration_seconds_count", `operation="put"`, 2},
		{"cassback_store_request_duration_seconds_bucket", `operation="put",le="0.05"`, 1},
		{"cassback_store_request_duration_seconds_bucket", `operation="put",le="+Inf"`, 2},
		{"cassback_rpo_seconds", ``, 0},
	} {
		if got := scrapeValue(t, c, q.name, q.labels); got != q.want {
			t.Errorf("%s{%s}: got %v, want %v", q.name, q.labels, got, q.want)
		}
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// scrapeValue returns the value of one sample of the collector's text
// exposition (NaN if absent).
func scrapeValue(t *testing.T, c *statsCollector, name, labels string) float64 {
	t.Helper()
	text, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := name + " "
	if labels != "" {
		prefix = name + "{" + labels + "} "
	}
	for line := range strings.SplitSeq(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Errorf("no sample %s in:\n%s", prefix, text)
	return -1
}

// TestHealthz: 200 normally, 503 when the RPO is over the threshold or
// the last store request failed, with a one-line body saying why.
func TestHealthz(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name    string
		maxRPO  time.Duration
		pending time.Duration // 0: nothing pending
		fail    bool          // the last store request failed
		code    int
		body    string
	}{
		{"idle", 15 * time.Minute, 0, false, 200, "ok: rpo 0s (max 15m0s), store reachable"},
		{"pending under the limit", 15 * time.Minute, 10 * time.Minute, false, 200, "ok: rpo 10m0s (max 15m0s), store reachable"},
		{"pending over the limit", 15 * time.Minute, 16 * time.Minute, false, 503, "rpo 16m0s exceeds --health-max-rpo 15m0s"},
		{"limit not checked", 0, 48 * time.Hour, false, 200, "ok: rpo 48h0m0s (not checked), store reachable"},
		{"store down", 15 * time.Minute, 0, true, 503, "store unreachable at the last request: put packs/ab: connection refused"},
		{"both", time.Minute, 2 * time.Minute, true, 503, "rpo 2m0s exceeds --health-max-rpo 1m0s; store unreachable at the last request: put packs/ab: connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeHealth{rpo: tc.pending}
			if tc.fail {
				st.err = errors.New("put packs/ab:\nconnection refused")
			}
			rec := httptest.NewRecorder()
			healthHandler(st, tc.maxRPO, func() time.Time { return now }).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != tc.code || rec.Body.String() != tc.body+"\n" {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.code, tc.body+"\n")
			}
		})
	}
	// With Stats: a request that succeeds after one that failed makes the
	// store healthy again.
	st := cassback.NewStats()
	st.ObserveRequest(remote.Call{Kind: remote.KindGet, Err: errors.New("timeout")})
	st.ObserveRequest(remote.Call{Kind: remote.KindGet})
	rec := httptest.NewRecorder()
	healthHandler(st, 0, time.Now).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("after a success: got %d %q, want 200", rec.Code, rec.Body.String())
	}
}

// fakeHealth is a healthSource with a given RPO and last store error.
type fakeHealth struct {
	rpo time.Duration
	err error
}

func (f *fakeHealth) RPO(time.Time) time.Duration   { return f.rpo }
func (f *fakeHealth) StoreReachable() (bool, error) { return f.err == nil, f.err }

func TestMetricsAddrUsage(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--backup-base", dir, "--log-file", "-", "--metrics-addr", "no-port", "list", "--hosts"}, nil, &stdout, &stderr)
	if !isUsage(err) || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("got %v, want a usage error naming --metrics-addr", err)
	}
	err = run(t.Context(), []string{"--health-max-rpo", "-1s", "--backup-base", dir, "list", "--hosts"}, nil, &stdout, &stderr)
	if !isUsage(err) || !strings.Contains(err.Error(), "--health-max-rpo") {
		t.Errorf("got %v, want a usage error naming --health-max-rpo", err)
	}
}

// TestAlertRules: the example alert rules load in Prometheus's own checker
// and fire in promtool's unit tests when, and only when, they should.
func TestAlertRules(t *testing.T) {
	promtool := needTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "../../docs/examples/alerts.yml"},
		{"test", "rules", "testdata/alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// freeAddr returns a 127.0.0.1 address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHTTP polls url until it answers (any status) or the deadline.
func waitHTTP(t *testing.T, url string, within time.Duration) *http.Response {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %v: %v", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// promSample is one sample of a Prometheus instant query.
type promSample struct {
	labels map[string]string
	value  float64
}

// promQuery runs an instant query through Prometheus's HTTP API.
func promQuery(t *testing.T, base, q string) []promSample {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Status != "success" {
		t.Fatalf("query %s: %v %s %s", q, err, out.Status, out.Error)
	}
	var res []promSample
	for _, r := range out.Data.Result {
		v, err := strconv.ParseFloat(fmt.Sprint(r.Value[1]), 64)
		if err != nil {
			t.Fatalf("query %s: value %v: %v", q, r.Value[1], err)
		}
		res = append(res, promSample{r.Metric, v})
	}
	return res
}

// TestPrometheusScrape runs a continuous backup with --metrics-addr and a
// real Prometheus server scraping it every second, flushes SSTables into
// the node, waits for a scrape showing the backup caught up, and checks
// through Prometheus's query API what an operator would look at: bytes
// uploaded, every keyspace's last commit, the RPO (above 0 while the node
// was not backed up, 0 once caught up), store requests, the upload
// latency histogram, and that the example alert rules are loaded and
// quiet. Then /healthz answers 200 and SIGTERM stops the backup cleanly.
func TestPrometheusScrape(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns cassback and prometheus; skipped with -short")
	}
	promBin := needTool(t, "prometheus")
	base := t.TempDir()
	data := filepath.Join(base, "data")
	kss := []string{"ks_a", "ks_b"}
	node, err := nodegen.Generate(data, nodegen.Config{Seed: 51, TotalBytes: 8 << 20, Keyspaces: []nodegen.KeyspaceSpec{
		{Name: kss[0], Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}},
		{Name: kss[1], Tables: []nodegen.TableSpec{{Name: "t", Weight: 1}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr, promAddr := freeAddr(t), freeAddr(t)
	// Prometheus first, so that it scrapes the backup from its start: the
	// first commit comes a manifest interval (3 s) after the start-up
	// scan, and until then the RPO grows (the node is not backed up yet).
	promURL := startPrometheus(t, promBin, base, metricsAddr, promAddr)
	// Prometheus applies its targets some seconds after it is ready: wait
	// for its first scrape (up == 0, nothing listens yet).
	deadline := time.Now().Add(60 * time.Second)
	for len(promQuery(t, promURL, `up{job="cassback"}`)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("prometheus did not scrape within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	backup := exec.Command(copyExe(t, base), "--backup-base", filepath.Join(base, "store"), "--log-file", filepath.Join(base, "cassback.log"),
		"--cache-dir", filepath.Join(base, "cache"), "--metrics-addr", metricsAddr, "--health-max-rpo", "10m",
		"backup", "--cassandra_data_dir", data, "--host", "n1", "--manifest-interval-secs", "3")
	var stdout, stderr bytes.Buffer
	backup.Stdout, backup.Stderr = &stdout, &stderr
	if err := backup.Start(); err != nil {
		t.Fatal(err)
	}
	defer backup.Process.Kill()
	waitHTTP(t, "http://"+metricsAddr+"/healthz", 30*time.Second).Body.Close()
	for i := range 6 {
		if _, err := node.Flush(kss[i%2], "t", 256<<10); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Wait for a scrape, a second after the last flush (the watcher has
	// reported it), that shows the backup caught up: every SSTable queued
	// is stored and nothing is pending (RPO 0).
	caughtUp := fmt.Sprintf(`cassback_rpo_seconds == 0 and on() (cassback_backup_sstables_done_total == cassback_backup_sstables_queued_total) and on() (timestamp(cassback_rpo_seconds) > %d)`,
		time.Now().Add(time.Second).Unix())
	deadline = time.Now().Add(120 * time.Second)
	for len(promQuery(t, promURL, caughtUp)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no scrape shows the backup caught up within 120 s: rpo %v, queued %v, done %v", promQuery(t, promURL, `cassback_rpo_seconds`),
				promQuery(t, promURL, `cassback_backup_sstables_queued_total`), promQuery(t, promURL, `cassback_backup_sstables_done_total`))
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkScraped(t, promURL, kss, start)

	resp := waitHTTP(t, "http://"+metricsAddr+"/healthz", time.Second)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "ok: rpo") {
		t.Errorf("/healthz: got %d %q, want 200 ok", resp.StatusCode, body)
	}
	backup.Process.Signal(syscall.SIGTERM)
	if err := backup.Wait(); err != nil {
		log, _ := os.ReadFile(filepath.Join(base, "cassback.log"))
		t.Fatalf("backup after SIGTERM: %v\nstderr: %s\nlog:\n%s", err, stderr.String(), log)
	}
	if _, err := http.Get("http://" + metricsAddr + "/metrics"); err == nil {
		t.Error("the metrics server still answers after the command ended")
	}
}

// startPrometheus starts prometheus scraping target every second, with
// the example alert rules, and returns its URL once it is ready.
func startPrometheus(t *testing.T, bin, dir, target, addr string) string {
	t.Helper()
	rules, err := filepath.Abs("../../docs/examples/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: cassback
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	prom := exec.CommandContext(ctx, bin, "--config.file", cfg, "--storage.tsdb.path", filepath.Join(dir, "tsdb"),
		"--web.listen-address", addr, "--log.level", "warn")
	prom.Cancel = func() error { return prom.Process.Signal(syscall.SIGTERM) }
	prom.WaitDelay = 10 * time.Second
	var log bytes.Buffer
	prom.Stdout, prom.Stderr = &log, &log
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		prom.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	u := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get(u + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return u
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 60 s:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkScraped checks what Prometheus has scraped from the running
// continuous backup, started at start, of the keyspaces kss.
func checkScraped(t *testing.T, promURL string, kss []string, start time.Time) {
	t.Helper()
	one := func(q string) float64 {
		t.Helper()
		s := promQuery(t, promURL, q)
		if len(s) != 1 {
			t.Fatalf("%s: got %d samples, want 1: %v", q, len(s), s)
		}
		t.Logf("%s = %v", q, s[0].value)
		return s[0].value
	}
	if v := one(`up{job="cassback"}`); v != 1 {
		t.Errorf("up: got %v, want 1", v)
	}
	if v := one(`cassback_uploaded_bytes_total`); v < 8<<20 {
		t.Errorf("uploaded bytes: got %v, want at least the node's 8 MiB", v)
	}
	if v := one(`cassback_read_bytes_total`); v < 8<<20 {
		t.Errorf("read bytes: got %v, want at least the node's 8 MiB", v)
	}
	if v := one(`cassback_store_requests_total{operation="put",outcome="ok"}`); v < 1 {
		t.Errorf("PUT requests: got %v, want some", v)
	}
	if v := one(`cassback_store_request_duration_seconds_count{operation="put"}`); v < 1 {
		t.Errorf("upload latency histogram: %v observations, want some", v)
	}
	if v := one(`histogram_quantile(0.99, cassback_store_request_duration_seconds_bucket{operation="put"})`); !(v > 0 && v <= 300) {
		t.Errorf("p99 upload latency: got %v s, want a duration", v)
	}
	if q, d := one(`cassback_backup_sstables_queued_total`), one(`cassback_backup_sstables_done_total`); q < 6 || d != q {
		t.Errorf("sstables queued %v, done %v: want at least the 6 flushed, all done", q, d)
	}
	// The RPO is 0 now (caught up); before the first commit, 3 s after
	// the start-up scan, and after each flush it was the age of the
	// oldest SSTable waiting: the 3 s interval plus the upload, well under
	// a minute even with -race on a loaded machine.
	if v := one(`max_over_time(cassback_rpo_seconds[5m])`); v <= 0 || v > 60 {
		t.Errorf("largest rpo scraped: got %v s, want above 0 and at most 60", v)
	}
	if v := one(`sum(cassback_errors_total)`); v != 0 {
		t.Errorf("errors: got %v, want 0", v)
	}
	commits := promQuery(t, promURL, `cassback_last_commit_timestamp_seconds`)
	got := map[string]float64{}
	for _, s := range commits {
		got[s.labels["keyspace"]] = s.value
	}
	for _, ks := range kss {
		at, ok := got[ks]
		if !ok || at < float64(start.Unix()) || at > float64(time.Now().Unix()+1) {
			t.Errorf("last commit of %s: got %v (present %v), want between %d and now", ks, at, ok, start.Unix())
		}
	}
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct{ Name, State, Health string }
			}
		}
	}
	resp, err := http.Get(promURL + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.State != "inactive" || (r.Health != "ok" && r.Health != "unknown") {
				t.Errorf("alert %s: state %s, health %s; want inactive and ok", r.Name, r.State, r.Health)
			}
		}
	}
	if n != 5 {
		t.Errorf("prometheus loaded %d alert rules, want the 5 of docs/examples/alerts.yml", n)
	}
}
