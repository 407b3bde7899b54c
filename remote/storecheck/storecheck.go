package storecheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cassback/cassback/remote"
)

// Check names, in the order Run reports them.
const (
	CheckCreate         = "conditional create"
	CheckReplace        = "conditional replace"
	CheckCreateRace     = "create-only race"
	CheckMatchRace      = "If-Match race"
	CheckReadAfterWrite = "read-after-write"
	CheckListAfterWrite = "list-after-write"
	CheckDelete         = "delete visibility"
	CheckRange          = "ranged reads"
	CheckClock          = "store clock"
)

// conditionalChecks are the checks that need remote.Conditional; the others
// are the consistency checks.
var conditionalChecks = []string{CheckCreate, CheckReplace, CheckCreateRace, CheckMatchRace}

// The verdicts Report.Verdict returns. The CLI prints them and docs/s3.md
// quotes them, so they are the one place their wording lives.
const (
	// VerdictLockFree: every check passed.
	VerdictLockFree = "purge may run lock-free on this store: its conditional writes are atomic and its reads, lists and deletes consistent"
	// VerdictExclusive: the consistency checks passed, but conditional
	// writes are missing or not atomic.
	VerdictExclusive = "purge needs --exclusive on this store: its conditional writes are missing or not atomic, so run purge only when no other cassback process uses the store"
	// VerdictUnsafe: a consistency check failed; --exclusive cannot help,
	// because purge itself must see what the backups wrote.
	VerdictUnsafe = "this store is not safe for cassback, even with --exclusive: it fails a consistency check that backup, restore and purge rely on"
	// VerdictIncomplete: Run stopped before every check had run.
	VerdictIncomplete = "no verdict: the checks did not all run"
)

// Defaults of Options' zero values. Against versitygw v1.8.0 made
// non-atomic again as before its fix (see racerBytes), 5 rounds found the
// bug in 17 of 20 runs and 20 rounds in 20 of 20; with only the publish lock
// removed, which leaves a window of microseconds between the re-check and
// the rename, 5 rounds found it in 3 of 20 runs and 20 rounds in 13 of 20.
// The unmodified server passed every run. A round costs about 80 requests.
const (
	DefaultRounds = 20
	DefaultRacers = 32
)

// Status is the outcome of one check.
type Status string

// The outcomes. NotSupported is for conditional writes only: the store has
// none, which is allowed but rules out lock-free purge.
const (
	Pass         Status = "pass"
	Fail         Status = "FAIL"
	NotSupported Status = "not supported"
)

// Result is one check's outcome.
type Result struct {
	Check  string // one of the Check* constants
	Status Status
	Detail string // one line: what was shown, or what went wrong
}

// Report is what Run found.
type Report struct {
	// Prefix is the scratch prefix the checks wrote under,
	// "check-store/<16 hex>/".
	Prefix string
	// Results has one entry per check that ran, in the order of the Check*
	// constants; all of them unless Run returned an error.
	Results []Result
	// Leftover lists keys under Prefix that cleanup could not remove
	// (normally none; Run's error then says why).
	Leftover []string
}

// Options tunes Run. The zero value means the defaults.
type Options struct {
	// Rounds is how many times each race is run, and how many overwrites
	// and new keys the consistency checks try. 0 means DefaultRounds.
	Rounds int
	// Racers is how many PutIf calls race for one key. 0 means
	// DefaultRacers; at least 2.
	Racers int
}

func (o Options) withDefaults() (Options, error) {
	if o.Rounds == 0 {
		o.Rounds = DefaultRounds
	}
	if o.Racers == 0 {
		o.Racers = DefaultRacers
	}
	switch {
	case o.Rounds < 1:
		return o, fmt.Errorf("rounds %d: want at least 1", o.Rounds)
	case o.Racers < 2:
		return o, fmt.Errorf("racers %d: want at least 2", o.Racers)
	}
	return o, nil
}

// Result returns the result of the named check, and whether it ran.
func (r Report) Result(check string) (Result, bool) {
	for _, res := range r.Results {
		if res.Check == check {
			return res, true
		}
	}
	return Result{}, false
}

// complete reports whether every check ran.
func (r Report) complete() bool { return len(r.Results) == len(checks) }

// LockFree reports whether purge may run without --exclusive: every check
// ran and passed, so conditional create and replace work, both races had
// exactly one winner each round, and the consistency checks hold.
func (r Report) LockFree() bool {
	if !r.complete() {
		return false
	}
	for _, res := range r.Results {
		if res.Status != Pass {
			return false
		}
	}
	return true
}

// Failed reports whether any check failed. NotSupported is not a failure.
func (r Report) Failed() bool {
	for _, res := range r.Results {
		if res.Status == Fail {
			return true
		}
	}
	return false
}

// Verdict says in one sentence whether purge may run lock-free on the
// store: one of the Verdict* constants.
func (r Report) Verdict() string {
	for _, res := range r.Results {
		if res.Status != Pass && !slices.Contains(conditionalChecks, res.Check) {
			return VerdictUnsafe
		}
	}
	switch {
	case !r.complete():
		return VerdictIncomplete
	case r.LockFree():
		return VerdictLockFree
	}
	return VerdictExclusive
}

// cleanupTimeout bounds the removal of the scratch objects, which runs even
// when Run's context is cancelled.
const cleanupTimeout = 2 * time.Minute

// Run runs every check against st under a fresh scratch prefix, then
// removes what it wrote there. The error is non-nil when the checks could
// not all run (the store refused the first write, or ctx ended; the Report
// then holds the checks that finished) or when cleanup left objects behind
// (Report.Leftover names them). A check that fails is not an error: it is
// a Result with Status Fail.
func Run(ctx context.Context, st remote.Store, opts Options) (rep Report, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return rep, err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	c := &checker{st: st, opts: opts, prefix: "check-store/" + hex.EncodeToString(rnd[:]) + "/", written: map[string]bool{}}
	rep.Prefix = c.prefix
	defer func() {
		rep.Leftover, err = c.cleanup(ctx, err)
	}()

	// One plain write first: without it every check would fail for the
	// same reason (no permission, no space, a read-only bucket policy).
	c.startKey = c.key("start")
	before := time.Now()
	if err := c.put(ctx, c.startKey, []byte("cassback check-store\n")); err != nil {
		return rep, fmt.Errorf("cannot write under %s: %w", c.prefix, err)
	}
	c.startTime = before.Add(time.Since(before) / 2)

	c.cond, c.condErr = c.conditionalOf()
	for _, ch := range checks {
		detail, err := ch.run(c, ctx)
		if ctx.Err() != nil {
			return rep, fmt.Errorf("check-store interrupted during %s: %w", ch.name, context.Cause(ctx))
		}
		res := Result{Check: ch.name, Status: Pass, Detail: detail}
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			res.Status, res.Detail = NotSupported, err.Error()
		case err != nil:
			res.Status, res.Detail = Fail, err.Error()
		}
		res.Detail = oneLine(res.Detail)
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// checks are run in this order; each uses keys of its own.
var checks = []struct {
	name string
	run  func(*checker, context.Context) (string, error)
}{
	{CheckCreate, (*checker).checkCreate},
	{CheckReplace, (*checker).checkReplace},
	{CheckCreateRace, (*checker).checkCreateRace},
	{CheckMatchRace, (*checker).checkMatchRace},
	{CheckReadAfterWrite, (*checker).checkReadAfterWrite},
	{CheckListAfterWrite, (*checker).checkListAfterWrite},
	{CheckDelete, (*checker).checkDelete},
	{CheckRange, (*checker).checkRange},
	{CheckClock, (*checker).checkClock},
}

// checker holds the state of one Run.
type checker struct {
	st     remote.Store
	opts   Options
	prefix string

	cond     remote.Conditional // nil when the store has no conditional writes
	condErr  error              // why cond is nil, wrapping errors.ErrUnsupported
	matchErr error              // set when PutIf has If-None-Match but not If-Match

	startKey  string
	startTime time.Time // this host's clock when startKey was written

	written map[string]bool // every key a check may have written
}

// key returns prefix + name and remembers it for cleanup, so that even a
// key that a broken List would not show is deleted. Only Run's goroutine
// calls it: racers get their key from it before they start.
func (c *checker) key(name string) string {
	k := c.prefix + name
	c.written[k] = true
	return k
}

// cleanup deletes every key Run may have written and every key listed
// under the prefix, with a context of its own so that a cancelled Run
// still cleans up. It returns the keys still there afterwards, and err
// joined with what went wrong.
func (c *checker) cleanup(ctx context.Context, err error) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	keys := maps.Clone(c.written)
	var errs []error
	if listed, lerr := c.list(ctx, c.prefix); lerr != nil {
		errs = append(errs, lerr)
	} else {
		for _, info := range listed {
			keys[info.Key] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if derr := c.st.Delete(ctx, k); derr != nil {
			errs = append(errs, derr)
		}
	}
	var left []string
	listed, lerr := c.list(ctx, c.prefix)
	if lerr != nil {
		errs = append(errs, lerr)
	}
	for _, info := range listed {
		left = append(left, info.Key)
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("%d objects left under %s", len(left), c.prefix))
	}
	if len(errs) == 0 {
		return left, err
	}
	// One line: the CLI prints errors on one line.
	cerr := fmt.Errorf("cleanup of %s: %w", c.prefix, errs[0])
	if len(errs) > 1 {
		cerr = fmt.Errorf("%w (and %d more errors)", cerr, len(errs)-1)
	}
	if err != nil {
		return left, fmt.Errorf("%w; %w", err, cerr)
	}
	return left, cerr
}

// oneLine keeps a detail to one line: server messages may hold newlines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
