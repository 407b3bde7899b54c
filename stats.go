package cassback

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cassback/cassback/remote"
)

// Stats counts what the engine does, for metrics, health checks and
// progress reports. A Repo whose Stats is set updates it as it works
// (Repo.Stats nil: nothing is counted, at the cost of one nil check per
// update); anyone may read it at any time, from any goroutine, without
// stopping the work. The counters only grow, for the life of the process,
// across every operation run with this Stats.
//
// What it costs: an atomic add or two per chunk, file, SSTable and store
// call, and a clock read per store call and commit; nothing per byte. The
// last commit times take a mutex once per committed manifest.
//
// The store's requests are counted only when the Repo's store is wrapped
// by remote.NewObserved(st, stats.ObserveRequest), and its retries only
// when RetryOptions.OnRetry is stats.ObserveRetry; the command line does
// both.
type Stats struct {
	BytesRead         atomic.Int64 // read from data files by backups
	BytesUploaded     atomic.Int64 // accepted by the store (Put, PutIf): packs, index files, manifests, sessions
	BytesDeduplicated atomic.Int64 // chunk bytes a backup read but did not upload: the store had them
	ChunksNew         atomic.Int64 // chunks added to packs to upload
	ChunksKnown       atomic.Int64 // chunks the store already had (or another worker was storing)

	// Component files and SSTables backups set out to store, and stored
	// (a file unchanged since the last backup is done without being read).
	// A continuous backup counts an SSTable when the watcher reports it
	// complete; a one-shot backup counts them all after its scan, and
	// marks them done when it has stored every file.
	FilesQueued, FilesDone       atomic.Int64
	SSTablesQueued, SSTablesDone atomic.Int64

	// SSTableDuration is, in continuous backup, from an SSTable reported
	// complete to its files stored: the queue, reading, chunking, and the
	// packs it filled uploaded. CommitDuration is each commit: the open
	// packs uploaded, the index file, the manifests and the session's
	// compare-and-swap.
	SSTableDuration, CommitDuration Histogram

	errs     [len(errorKinds)]atomic.Int64
	requests [len(requestKinds)][len(outcomes)]atomic.Int64
	reqDur   [len(requestKinds)]Histogram

	// pending is the watcher time (Unix ns) of the oldest complete SSTable
	// not yet in a committed manifest; 0 when there is none.
	pending atomic.Int64
	// lastOK and lastFailed are when (Unix ns) the last store request that
	// succeeded and the last that failed returned; failure says why.
	lastOK, lastFailed atomic.Int64
	failure            atomic.Pointer[error]

	progress atomic.Pointer[Progress]

	mu      sync.Mutex
	retries map[string]int64     // by retried operation
	commits map[string]time.Time // by keyspace
}

// Kinds of error, as Errors names them.
const (
	ErrorFile     = "file"     // a data file could not be read or stored by a backup
	ErrorLeftOut  = "left_out" // an SSTable or entry left out of a backup (vanished, incomplete, not a regular file)
	ErrorCommit   = "commit"   // manifests that could not be committed
	ErrorStore    = "store"    // a store request that failed (after its retries)
	ErrorRestore  = "restore"  // a file restore could not write
	ErrorValidate = "validate" // a problem validate found in the store
	ErrorRevoked  = "revoked"  // a session revoked under a running operation
)

var errorKinds = [...]string{ErrorFile, ErrorLeftOut, ErrorCommit, ErrorStore, ErrorRestore, ErrorValidate, ErrorRevoked}

// Outcomes of a store request, as Requests names them.
const (
	OutcomeOK           = "ok"
	OutcomeNotFound     = "not_found"    // the key is not there: an answer, not a failure
	OutcomePrecondition = "precondition" // a conditional write lost: an answer, not a failure
	OutcomeCanceled     = "canceled"     // the caller gave up (shutdown, timeout)
	OutcomeError        = "error"        // anything else: the store failed or could not be reached
)

var outcomes = [...]string{OutcomeOK, OutcomeNotFound, OutcomePrecondition, OutcomeCanceled, OutcomeError}

var requestKinds = [...]string{remote.KindPut, remote.KindPutIf, remote.KindGet, remote.KindHead, remote.KindList, remote.KindDelete, remote.KindDeleteMany}

// NewStats returns a Stats with every counter at zero (so is the zero
// value).
func NewStats() *Stats { return &Stats{} }

// chunk counts one chunk of n bytes a backup read, and whether it was
// added to a pack to upload or the store had it.
func (s *Stats) chunk(added bool, n int) {
	s.BytesRead.Add(int64(n))
	if added {
		s.ChunksNew.Add(1)
		return
	}
	s.ChunksKnown.Add(1)
	s.BytesDeduplicated.Add(int64(n))
}

// Errors returns the errors counted so far by kind (every kind present).
func (s *Stats) Errors() map[string]int64 {
	m := make(map[string]int64, len(errorKinds))
	for i, k := range errorKinds {
		m[k] = s.errs[i].Load()
	}
	return m
}

// addError counts n errors of a kind (one of errorKinds).
func (s *Stats) addError(kind string, n int) {
	if s == nil || n == 0 {
		return
	}
	for i, k := range errorKinds {
		if k == kind {
			s.errs[i].Add(int64(n))
			return
		}
	}
}

// RequestCount is the number of store requests of one kind with one
// outcome.
type RequestCount struct {
	Kind    string // remote.KindPut, ...
	Outcome string // OutcomeOK, ...
	N       int64
}

// Requests returns the store requests counted so far by kind and outcome,
// every pair present, in a fixed order.
func (s *Stats) Requests() []RequestCount {
	var out []RequestCount
	for i, k := range requestKinds {
		for j, o := range outcomes {
			out = append(out, RequestCount{Kind: k, Outcome: o, N: s.requests[i][j].Load()})
		}
	}
	return out
}

// RequestDurations returns the distribution of store request durations
// by kind (every kind present).
func (s *Stats) RequestDurations() map[string]HistogramSnapshot {
	m := make(map[string]HistogramSnapshot, len(requestKinds))
	for i, k := range requestKinds {
		m[k] = s.reqDur[i].Snapshot()
	}
	return m
}

// ObserveRequest counts one store request; remote.NewObserved calls it.
func (s *Stats) ObserveRequest(c remote.Call) {
	k := -1
	for i, name := range requestKinds {
		if name == c.Kind {
			k = i
			break
		}
	}
	if k < 0 {
		return
	}
	o := outcome(c.Err)
	s.requests[k][o].Add(1)
	s.reqDur[k].Observe(c.Dur)
	now := time.Now().UnixNano()
	switch outcomes[o] {
	case OutcomeOK, OutcomeNotFound, OutcomePrecondition:
		s.BytesUploaded.Add(c.Bytes)
		s.lastOK.Store(now)
	case OutcomeError:
		err := c.Err
		s.failure.Store(&err)
		s.lastFailed.Store(now)
		s.errs[errIndex(ErrorStore)].Add(1)
	}
}

// outcome classifies a store request's error (an index in outcomes).
func outcome(err error) int {
	switch {
	case err == nil, errors.Is(err, remote.ErrStop):
		return 0
	case errors.Is(err, fs.ErrNotExist):
		return 1
	case errors.Is(err, remote.ErrPrecondition):
		return 2
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 3
	}
	return 4
}

func errIndex(kind string) int {
	for i, k := range errorKinds {
		if k == kind {
			return i
		}
	}
	panic("cassback: unknown error kind " + kind)
}

// retryKinds names the retrying decorator's operations by request kind,
// so that retries and requests are counted under the same names.
var retryKinds = map[string]string{
	"put": remote.KindPut, "put-if": remote.KindPutIf, "get": remote.KindGet, "stat": remote.KindHead,
	"list": remote.KindList, "list-dirs": remote.KindList, "delete": remote.KindDelete, "delete-many": remote.KindDeleteMany,
}

// ObserveRetry counts one retry of a store operation, by request kind
// (remote.KindPut, ...; an operation of another name, such as opening the
// store, under its own); it fits remote.RetryOptions.OnRetry.
func (s *Stats) ObserveRetry(op string, _ error) {
	if k, ok := retryKinds[op]; ok {
		op = k
	}
	s.mu.Lock()
	if s.retries == nil {
		s.retries = map[string]int64{}
	}
	s.retries[op]++
	s.mu.Unlock()
}

// Retries returns the retries counted so far by request kind (only kinds
// retried at least once).
func (s *Stats) Retries() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retries == nil {
		return map[string]int64{}
	}
	return maps.Clone(s.retries)
}

// StoreReachable reports whether the last store request answered: true
// before any request, and after one that succeeded, found nothing or lost
// a conditional write; false with its error when the last one that
// returned failed otherwise (after its retries, when counted above them).
// Cancelled requests do not count.
func (s *Stats) StoreReachable() (bool, error) {
	if s.lastFailed.Load() <= s.lastOK.Load() {
		return true, nil
	}
	if p := s.failure.Load(); p != nil {
		return false, *p
	}
	return false, errors.New("store request failed")
}

// committed notes that keyspace ks has a committed manifest as of at.
func (s *Stats) committed(ks string, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.commits == nil {
		s.commits = map[string]time.Time{}
	}
	if at.After(s.commits[ks]) {
		s.commits[ks] = at
	}
	s.mu.Unlock()
}

// LastCommits returns, by keyspace, when its newest committed manifest
// was committed: by this process (its clock, when the commit returned), or
// the time of the newest manifest a backup found at its start.
func (s *Stats) LastCommits() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commits == nil {
		return map[string]time.Time{}
	}
	return maps.Clone(s.commits)
}

// pendingSince notes that an SSTable complete since t (watcher time)
// awaits a committed manifest: the oldest such time is kept.
func (s *Stats) pendingSince(t time.Time) {
	if s == nil {
		return
	}
	n := t.UnixNano()
	for {
		old := s.pending.Load()
		if old != 0 && old <= n || s.pending.CompareAndSwap(old, n) {
			return
		}
	}
}

// setPending records the oldest complete SSTable still awaiting a
// committed manifest after a commit; the zero time means none.
func (s *Stats) setPending(t time.Time) {
	if s == nil {
		return
	}
	if t.IsZero() {
		s.pending.Store(0)
		return
	}
	s.pending.Store(t.UnixNano())
}

// OldestPending returns since when the oldest complete SSTable not yet in
// a committed manifest has been complete (the watcher's clock), or the
// zero time when every SSTable reported is committed.
func (s *Stats) OldestPending() time.Time {
	if n := s.pending.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// RPO is the recovery point objective at now: the age of the oldest
// complete SSTable a continuous backup knows of that is not yet in a
// committed manifest, so what losing the node now would lose at most of
// what the watcher has seen; 0 when nothing is pending (always, outside
// continuous backup).
func (s *Stats) RPO(now time.Time) time.Duration {
	t := s.OldestPending()
	if t.IsZero() {
		return 0
	}
	return max(0, now.Sub(t))
}

// Progress returns the progress of the latest restore, validate, purge or
// one-shot backup begun with this Stats, or nil.
func (s *Stats) Progress() *Progress { return s.progress.Load() }

// begin starts the progress of an operation; nil when s is nil.
func (s *Stats) begin(op string) *Progress {
	if s == nil {
		return nil
	}
	p := &Progress{Operation: op}
	s.progress.Store(p)
	return p
}

// Progress is how far one operation has got: the files and bytes it has
// done out of those it plans to do. Totals are set once the operation
// knows them (after its plan) and may be 0 before. Fields are updated
// atomically. A nil *Progress ignores updates.
//
//   - backup (one-shot): files to store (unchanged ones are done at once)
//     and bytes to read;
//   - restore: files to write and their bytes (bytes count as each chunk
//     is written; files as each batch of files ends);
//   - validate: files to check, and with --checksum their bytes (as read);
//   - purge: backups to remove; the garbage collection's deletions show
//     in the store requests (DELETE, DELETEMANY).
type Progress struct {
	Operation             string // "backup", "restore", "validate" or "purge"
	FilesDone, FilesTotal atomic.Int64
	BytesDone, BytesTotal atomic.Int64
}

func (p *Progress) plan(files, bytes int64) {
	if p != nil {
		p.FilesTotal.Add(files)
		p.BytesTotal.Add(bytes)
	}
}

func (p *Progress) done(files, bytes int64) {
	if p != nil {
		p.FilesDone.Add(files)
		p.BytesDone.Add(bytes)
	}
}

// durationBuckets are the upper bounds of a Histogram's buckets: from
// 5 ms (a request to a local disk) to 5 minutes (a pack upload on a slow
// link).
var durationBuckets = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute,
}

// Histogram counts durations in fixed buckets, atomically: an Observe is
// a scan of 15 bounds and three atomic adds.
type Histogram struct {
	counts [len(durationBuckets) + 1]atomic.Int64 // the last: above every bound
	sum    atomic.Int64                           // nanoseconds
	max    atomic.Int64                           // nanoseconds
}

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(durationBuckets) && d > durationBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// HistogramSnapshot is a Histogram's state at one moment.
type HistogramSnapshot struct {
	Bounds     []time.Duration // upper bounds of the buckets
	Cumulative []uint64        // observations at or below each bound
	Count      uint64          // every observation
	Sum, Max   time.Duration
}

// Snapshot reads the histogram. Read while observations go on, its parts
// may disagree by the observations made meanwhile.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: durationBuckets[:], Cumulative: make([]uint64, len(durationBuckets))}
	for i := range h.counts {
		s.Count += uint64(h.counts[i].Load())
		if i < len(durationBuckets) {
			s.Cumulative[i] = s.Count
		}
	}
	s.Sum, s.Max = time.Duration(h.sum.Load()), time.Duration(h.max.Load())
	return s
}
