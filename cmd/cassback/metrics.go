package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cassback/cassback"
)

// startMetrics, when --metrics-addr is set, makes the Stats the command's
// Repo updates and serves them on that address until the command ends:
// GET /metrics in the Prometheus text format, read from the Stats at each
// scrape (docs/metrics.md lists them), and GET /healthz. A second call
// does nothing.
func (g *globals) startMetrics() error {
	if g.metricsAddr == "" || g.stats != nil {
		return nil
	}
	if _, _, err := net.SplitHostPort(g.metricsAddr); err != nil {
		return usagef("--metrics-addr %q: want HOST:PORT", g.metricsAddr)
	}
	ln, err := net.Listen("tcp", g.metricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	st := cassback.NewStats()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStatsCollector(st, time.Now), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn), Timeout: 30 * time.Second,
	}))
	mux.Handle("GET /healthz", healthHandler(st, g.healthMaxRPO, time.Now))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)}
	go srv.Serve(ln)
	g.log.Info("serving metrics", "addr", ln.Addr().String())
	g.stats = st
	prev := g.closeLog
	g.closeLog = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // a scrape in progress gets 2 s to finish
		prev()
	}
	return nil
}

// onRetry counts a retry of a store request in the Stats, if any; it is
// the S3 store's remote.RetryOptions.OnRetry (the others do not retry).
func (g *globals) onRetry(op string, err error) {
	if g.stats != nil {
		g.stats.ObserveRetry(op, err)
	}
}

// healthSource is what /healthz looks at; *cassback.Stats is one.
type healthSource interface {
	RPO(now time.Time) time.Duration
	StoreReachable() (bool, error)
}

// healthHandler answers GET /healthz: 503 when the RPO exceeds maxRPO
// (0: not checked) or the last store request failed, else 200, with one
// line saying why.
func healthHandler(st healthSource, maxRPO time.Duration, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rpo := st.RPO(now()).Round(time.Millisecond)
		var bad []string
		if maxRPO > 0 && rpo > maxRPO {
			bad = append(bad, fmt.Sprintf("rpo %v exceeds --health-max-rpo %v", rpo, maxRPO))
		}
		reachable, err := st.StoreReachable()
		if !reachable {
			bad = append(bad, "store unreachable at the last request: "+oneLine(err))
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(bad) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(bad, "; "))
			return
		}
		limit := "not checked"
		if maxRPO > 0 {
			limit = "max " + maxRPO.String()
		}
		fmt.Fprintf(w, "ok: rpo %v (%s), store reachable\n", rpo, limit)
	})
}

// oneLine is err's message on one line.
func oneLine(err error) string {
	if err == nil {
		return "unknown error"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// statsCollector is a prometheus.Collector that reads a cassback.Stats
// at each scrape: the engine keeps plain atomic counters and never
// imports prometheus.
type statsCollector struct {
	st  *cassback.Stats
	now func() time.Time
}

func newStatsCollector(st *cassback.Stats, now func() time.Time) *statsCollector {
	return &statsCollector{st: st, now: now}
}

// A counter without labels, read from the Stats.
type plainCounter struct {
	desc *prometheus.Desc
	get  func(*cassback.Stats) int64
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("cassback_"+name, help, labels, nil)
}

var (
	plainCounters = []plainCounter{
		{desc("read_bytes_total", "Bytes read from data files by backups."), func(s *cassback.Stats) int64 { return s.BytesRead.Load() }},
		{desc("uploaded_bytes_total", "Bytes the store accepted (packs, index files, manifests, sessions)."), func(s *cassback.Stats) int64 { return s.BytesUploaded.Load() }},
		{desc("deduplicated_bytes_total", "Chunk bytes backups read but did not upload: the store had them."), func(s *cassback.Stats) int64 { return s.BytesDeduplicated.Load() }},
		{desc("backup_files_queued_total", "Component files backups set out to store."), func(s *cassback.Stats) int64 { return s.FilesQueued.Load() }},
		{desc("backup_files_done_total", "Component files backups stored (or found unchanged)."), func(s *cassback.Stats) int64 { return s.FilesDone.Load() }},
		{desc("backup_sstables_queued_total", "SSTables backups set out to store."), func(s *cassback.Stats) int64 { return s.SSTablesQueued.Load() }},
		{desc("backup_sstables_done_total", "SSTables backups stored."), func(s *cassback.Stats) int64 { return s.SSTablesDone.Load() }},
	}
	chunksDesc       = desc("chunks_total", "Chunks backups read, by status: new (uploaded) or known (the store had them).", "status")
	errorsDesc       = desc("errors_total", "Errors by kind: file, left_out, commit, store, restore, validate, revoked.", "kind")
	requestsDesc     = desc("store_requests_total", "Store requests by operation and outcome (ok, not_found, precondition, canceled, error).", "operation", "outcome")
	retriesDesc      = desc("store_retries_total", "Store requests retried after a transient failure, by operation.", "operation")
	requestDurDesc   = desc("store_request_duration_seconds", "Store request latency by operation, retries included; operation=\"put\" is the upload latency.", "operation")
	sstableDurDesc   = desc("sstable_backup_duration_seconds", "Continuous backup: from an SSTable reported complete to its files stored.")
	commitDurDesc    = desc("commit_duration_seconds", "Backup commits: open packs uploaded, index file, manifests and session written.")
	storeUpDesc      = desc("store_up", "1 when the last store request got an answer (or none was made yet), 0 when it failed.")
	rpoDesc          = desc("rpo_seconds", "Age of the oldest complete SSTable not yet in a committed manifest; 0 when none is pending.")
	lastCommitDesc   = desc("last_commit_timestamp_seconds", "When the newest committed manifest of the keyspace was committed (Unix time).", "keyspace")
	progFilesDesc    = desc("progress_done_files", "Files the running or last operation has done.", "operation")
	progFilesAllDesc = desc("progress_expected_files", "Files the running or last operation plans to do.", "operation")
	progBytesDesc    = desc("progress_done_bytes", "Bytes the running or last operation has done.", "operation")
	progBytesAllDesc = desc("progress_expected_bytes", "Bytes the running or last operation plans to do.", "operation")
)

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, pc := range plainCounters {
		ch <- pc.desc
	}
	for _, d := range []*prometheus.Desc{chunksDesc, errorsDesc, requestsDesc, retriesDesc, requestDurDesc, sstableDurDesc,
		commitDurDesc, storeUpDesc, rpoDesc, lastCommitDesc, progFilesDesc, progFilesAllDesc, progBytesDesc, progBytesAllDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.st
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, pc := range plainCounters {
		counter(pc.desc, pc.get(s))
	}
	counter(chunksDesc, s.ChunksNew.Load(), "new")
	counter(chunksDesc, s.ChunksKnown.Load(), "known")
	errs := s.Errors()
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		counter(errorsDesc, errs[k], k)
	}
	for _, rc := range s.Requests() {
		counter(requestsDesc, rc.N, strings.ToLower(rc.Kind), rc.Outcome)
	}
	retries := s.Retries()
	for _, op := range slices.Sorted(maps.Keys(retries)) {
		counter(retriesDesc, retries[op], strings.ToLower(op))
	}
	durs := s.RequestDurations()
	for _, k := range slices.Sorted(maps.Keys(durs)) {
		ch <- constHistogram(requestDurDesc, durs[k], strings.ToLower(k))
	}
	ch <- constHistogram(sstableDurDesc, s.SSTableDuration.Snapshot())
	ch <- constHistogram(commitDurDesc, s.CommitDuration.Snapshot())
	up := 1.0
	if ok, _ := s.StoreReachable(); !ok {
		up = 0
	}
	gauge(storeUpDesc, up)
	gauge(rpoDesc, s.RPO(c.now()).Seconds())
	for ks, at := range s.LastCommits() {
		gauge(lastCommitDesc, float64(at.UnixNano())/1e9, ks)
	}
	if p := s.Progress(); p != nil {
		gauge(progFilesDesc, float64(p.FilesDone.Load()), p.Operation)
		gauge(progFilesAllDesc, float64(p.FilesTotal.Load()), p.Operation)
		gauge(progBytesDesc, float64(p.BytesDone.Load()), p.Operation)
		gauge(progBytesAllDesc, float64(p.BytesTotal.Load()), p.Operation)
	}
}

// constHistogram turns a snapshot into a Prometheus histogram in seconds.
func constHistogram(d *prometheus.Desc, h cassback.HistogramSnapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b.Seconds()] = h.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}
