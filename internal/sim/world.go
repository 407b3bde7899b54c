package sim

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cassback/cassback/remote"
)

// Errors the World gives. Faults are wrapped with remote.Transient, so
// remote.IsTransient accepts them and remote.WithRetry retries them, as it
// would a real timeout or a 503.
var (
	// ErrCrashed is wrapped by the error every request of a crashed actor
	// gets, the one pending at the crash included.
	ErrCrashed = errors.New("sim: actor crashed")
	// ErrTimeout is wrapped by the error of a request whose response was
	// lost or that was delayed: it may have been applied, or may still be.
	ErrTimeout = errors.New("sim: request timed out")
	// ErrUnavailable is wrapped by the error of a request that failed
	// without being applied (Faults.PError).
	ErrUnavailable = errors.New("sim: service unavailable")
	// ErrStuck reports an actor that neither issued a store request, nor
	// slept (World.Sleep), nor returned within Options.Watchdog of real
	// time.
	ErrStuck = errors.New("sim: actor stuck")
	// ErrOverlap reports an actor that issued a request while another of
	// its requests was pending, from a second goroutine.
	ErrOverlap = errors.New("sim: overlapping requests from one actor")
)

// Faults are the probabilities, each from 0 to 1, that a request an actor
// makes is hit by each fault. At most one fault hits a request. Requests
// made without an actor are never hit.
type Faults struct {
	// PError: the request fails without being applied (a 503, a refused
	// connection). The error wraps ErrUnavailable.
	PError float64
	// PLostResponse: the request is applied but its response is lost, so
	// the caller sees an error wrapping ErrTimeout; a retry repeats it.
	PLostResponse float64
	// PDelay: Put, PutIf, Delete and DeleteMany only. The caller gets an
	// error wrapping ErrTimeout at once, and the request is applied at a
	// later step, from 1 to Options.MaxDelay steps on: a slow request the
	// client gave up on that still lands. A delayed PutIf checks its
	// condition when it lands. Other requests are not delayed.
	PDelay float64
}

func (f Faults) any() bool { return f.PError > 0 || f.PLostResponse > 0 || f.PDelay > 0 }

// Options configures a World. The zero value is a fault-free world with
// seed 0.
type Options struct {
	// Seed determines every choice the World makes: the schedule, the
	// faults, the delays, Options.StepTime's and Rand's numbers.
	Seed uint64
	// Start is the virtual time before the first Advance. Zero means
	// 2026-01-01T00:00:00Z.
	Start time.Time
	// Faults are the initial fault probabilities; see also World.SetFaults.
	Faults
	// MaxDelay is the most steps a delayed request waits before it lands;
	// 0 means 16.
	MaxDelay int
	// StepTime, if set, is how much virtual time passes after each step,
	// drawn from the World's own random source: requests take time.
	StepTime func(r *rand.Rand) time.Duration
	// WriterClock makes a write's ModTime the writing actor's clock (the
	// virtual time plus its skew) instead of the store's, as a local store
	// on a shared filesystem records a writer host's mtime.
	WriterClock bool
	// NoConditional makes PutIf fail with errors.ErrUnsupported: a store
	// without conditional writes.
	NoConditional bool
	// NonAtomicConditional splits an actor's PutIf into two steps, the
	// check and then an unconditional write, so other requests can come
	// between them: a server whose conditional writes race, as some
	// S3-compatible servers' did. Faults hit the write step only. Requests
	// without an actor stay atomic.
	NonAtomicConditional bool
	// ListPage is the number of keys one List request returns; each page
	// is a step. 0 means 1000, as on S3.
	ListPage int
	// TraceLimit is how many of the latest trace lines Trace keeps; 0
	// means 10,000 and a negative number all of them.
	TraceLimit int
	// Watchdog is how long, in real time, a step waits for the actor it
	// woke to make its next request or sleep, or return, before it reports
	// ErrStuck; 0 means 10 seconds. A parked actor, asleep or waiting on a
	// request, is not timed.
	Watchdog time.Duration
	// Horizon bounds how far Step moves virtual time to wake a sleeping
	// actor (World.Sleep), as a duration past Start: when no actor can
	// run, Step jumps to the earliest wake time only if that is at most
	// Start+Horizon; past it the World counts as idle, so RunUntilIdle
	// returns while a heartbeat loop still sleeps (Close then crashes
	// it). Advance and StepTime are not bounded by it: a sleeper whose
	// wake time they reach is runnable, horizon or not. 0 means no bound,
	// and then an actor that sleeps in a loop forever keeps RunUntilIdle
	// busy until its maxSteps.
	Horizon time.Duration
}

// World is one seeded, reproducible simulation: a virtual clock, a random
// source, a Store and the actors that use it, and the trace of every step.
// Its methods are meant for one goroutine, the test's, and for actors while
// they run (which the scheduler makes the same thing, one at a time); Now,
// Advance and the Store are also safe from other goroutines.
type World struct {
	opts     Options
	start    time.Time
	elapsed  atomic.Int64 // virtual nanoseconds since start
	store    *Store
	testRand *rand.Rand

	mu      sync.Mutex
	rng     *rand.Rand // the schedule's, the faults' and StepTime's
	faults  Faults
	actors  []*Actor // not yet returned, in spawn order
	ready   []*Actor // runnableLocked's result, kept to reuse its array
	spawned int
	steps   int
	delayed []*delayedRequest // by due step, then by step sent
	trace   ring
	failed  error
}

// delayedRequest is a request an actor was told had timed out, on its way
// to the store.
type delayedRequest struct {
	r     request
	actor *Actor
	from  int // the step that sent it
	due   int // the step at which it lands, at the latest
}

// New returns an empty World.
func New(opts Options) *World {
	if opts.Start.IsZero() {
		opts.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 16
	}
	if opts.ListPage <= 0 {
		opts.ListPage = 1000
	}
	if opts.TraceLimit == 0 {
		opts.TraceLimit = 10_000
	}
	if opts.Watchdog <= 0 {
		opts.Watchdog = 10 * time.Second
	}
	w := &World{
		opts:   opts,
		start:  opts.Start,
		faults: opts.Faults,
		// Two streams, so that a test drawing more or fewer numbers from
		// Rand does not change the schedule of the same seed.
		rng:      rand.New(rand.NewPCG(opts.Seed, 0x5c4ed01e)),
		testRand: rand.New(rand.NewPCG(opts.Seed, 0x7e57)),
		trace:    ring{limit: opts.TraceLimit},
	}
	w.store = newStore(w)
	return w
}

// Store returns the World's store.
func (w *World) Store() *Store { return w.store }

// Rand returns a random source seeded from Options.Seed for the test and
// its actors (while they run), separate from the one the scheduler uses.
func (w *World) Rand() *rand.Rand { return w.testRand }

// Seed returns Options.Seed.
func (w *World) Seed() uint64 { return w.opts.Seed }

// Now returns the virtual time: the store's clock.
func (w *World) Now() time.Time { return w.start.Add(time.Duration(w.elapsed.Load())) }

// Advance moves virtual time forward by d, which must not be negative.
func (w *World) Advance(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("sim: Advance(%v): virtual time only moves forward", d))
	}
	w.elapsed.Add(int64(d))
	w.mu.Lock()
	w.noteLocked(event{kind: evAdvance, dur: d})
	w.mu.Unlock()
}

// Steps returns the number of steps taken so far.
func (w *World) Steps() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.steps
}

// SetFaults changes the fault probabilities from the next step on, for a
// test that wants a fault-free setup phase or a fault at one point.
func (w *World) SetFaults(f Faults) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.faults = f
}

// Step takes one step and returns the actor whose request it applied (or
// whose sleep it ended), or false when there is nothing to do: no unpaused
// actor waits on a request or a sleep that is due, no delayed request is
// in flight, and no unpaused actor sleeps until a time within
// Options.Horizon.
//
// A step either lands a delayed request that is due (or any delayed request
// when no actor can run), or picks one runnable actor at random, weighted
// by SetWeight, applies its request (or the fault the random source chose)
// or ends its sleep, and then lets that actor run until it makes its next
// request or sleep, or returns. Only then does Step return, so exactly one
// actor runs at a time. An actor is runnable when it is not paused and
// waits on a request, or on a sleep whose wake time has come or whose
// context is cancelled. When none is and no delayed request is in flight,
// Step first moves virtual time to the earliest wake time of an unpaused
// sleeper (if within Options.Horizon), a jump the trace records.
//
// Step panics with an error naming the seed, the step and the actor if the
// actor gets stuck (ErrStuck), breaks the one-goroutine rule (ErrOverlap)
// or panics; RunUntilIdle returns such errors instead.
func (w *World) Step() (*Actor, bool) {
	a, ok, err := w.step()
	if err != nil {
		panic(err)
	}
	return a, ok
}

// RunUntilIdle steps until Step would return false, calling check (if not
// nil) after every step. It returns check's first error, or the World's
// failure, wrapped with the seed and the step so the run can be replayed,
// or an error if the World is still busy after maxSteps steps (a livelock;
// maxSteps <= 0 means no limit). Since Step moves virtual time to wake
// sleepers, an actor that sleeps in a loop keeps the World busy up to
// Options.Horizon, or forever without one.
func (w *World) RunUntilIdle(maxSteps int, check func() error) error {
	for n := 0; ; n++ {
		if maxSteps > 0 && n == maxSteps {
			if busy, err := w.busy(); err != nil || busy {
				return cmp.Or(err, fmt.Errorf("sim: seed %d: still busy after %d steps", w.opts.Seed, n))
			}
		}
		a, ok, err := w.step()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if check == nil {
			continue
		}
		if err := check(); err != nil {
			return fmt.Errorf("sim: seed %d, step %d (actor %s): %w", w.opts.Seed, w.Steps(), a.name, err)
		}
	}
}

// busy reports whether Step would take a step, or the World's failure.
func (w *World) busy() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	total := w.runnableLocked()
	_, wakes := w.nextWakeLocked()
	return total > 0 || len(w.delayed) > 0 || wakes, w.failed
}

// Close crashes, one at a time, every actor that has not returned, so that
// no goroutine is left waiting on a request. An actor stuck outside a
// request is left alone. The error names the first actor that did not
// return after its crash (see Actor.Crash).
func (w *World) Close() error {
	w.mu.Lock()
	actors := slices.Clone(w.actors)
	w.mu.Unlock()
	var first error
	for _, a := range actors {
		if err := a.crash(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runnableLocked drops returned actors from w.actors, puts the runnable
// ones in w.ready, in spawn order, and returns their total weight. An
// actor is runnable when it is not paused and waits on a request, or on a
// sleep that is due or whose context is cancelled. The one list serves
// both the total and the pick, so the two cannot disagree.
func (w *World) runnableLocked() (total int) {
	now := w.elapsed.Load()
	live := w.actors[:0]
	ready := w.ready[:0]
	for _, a := range w.actors {
		if a.state == stateDone {
			continue
		}
		live = append(live, a)
		if a.state == stateWaiting && !a.paused && a.pending.due(now) {
			ready = append(ready, a)
			total += a.weight
		}
	}
	clear(w.actors[len(live):])
	w.actors = live
	clear(ready[len(ready):cap(ready)])
	w.ready = ready
	return total
}

func (w *World) step() (*Actor, bool, error) {
	w.mu.Lock()
	if w.failed != nil {
		defer w.mu.Unlock()
		return nil, false, w.failed
	}
	total := w.runnableLocked()
	if len(w.delayed) > 0 && (w.delayed[0].due <= w.steps+1 || total == 0) {
		d := w.delayed[0]
		w.delayed = slices.Delete(w.delayed, 0, 1)
		w.steps++
		w.landLocked(d)
		w.afterStepLocked()
		w.mu.Unlock()
		return d.actor, true, nil
	}
	if total == 0 && w.jumpLocked() {
		total = w.runnableLocked()
	}
	if total == 0 {
		w.mu.Unlock()
		return nil, false, nil
	}
	var a *Actor
	x := w.rng.IntN(total)
	for _, c := range w.ready {
		if x -= c.weight; x < 0 {
			a = c
			break
		}
	}
	w.steps++
	if !w.serveLocked(a, a.pending) {
		w.afterStepLocked()
		w.mu.Unlock()
		return a, true, nil
	}
	a.pending = nil
	a.state = stateRunning
	w.mu.Unlock()

	a.wake <- struct{}{}
	err := w.await(a, a.parked)

	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		err = w.failed
	}
	w.afterStepLocked()
	return a, err == nil, err
}

func (w *World) afterStepLocked() {
	if w.opts.StepTime != nil {
		if d := w.opts.StepTime(w.rng); d > 0 {
			w.elapsed.Add(int64(d))
		}
	}
}

// await waits for a, which was just started or woken, to signal on ch
// (a.parked: it made its next request or returned; a.done: it returned).
func (w *World) await(a *Actor, ch <-chan struct{}) error {
	if a.watchdog == nil {
		a.watchdog = time.NewTimer(w.opts.Watchdog)
	} else {
		// A timer from an earlier wait may still be armed; since Go 1.23
		// Reset also discards a value it sent that nobody received.
		a.watchdog.Reset(w.opts.Watchdog)
	}
	select {
	case <-ch:
		return nil
	case <-a.watchdog.C:
		return w.fail(fmt.Errorf("%w: actor %s neither made a store request nor slept nor returned within %v of real time; "+
			"it waits on something other than the store (a channel, a lock, a real-time sleep, another actor)",
			ErrStuck, a.name, w.opts.Watchdog))
	}
}

// fail records the World's first failure, naming the seed and the step.
func (w *World) fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failLocked(err)
}

func (w *World) failLocked(err error) error {
	if w.failed == nil {
		w.failed = fmt.Errorf("sim: seed %d, step %d: %w", w.opts.Seed, w.steps, err)
	}
	return w.failed
}

// serveLocked carries out a's request r as this step and reports whether
// the request is complete; it is not when it was the check half of a
// non-atomic PutIf.
func (w *World) serveLocked(a *Actor, r *request) bool {
	ev := w.requestEvent(a, r)
	defer func() { w.noteLocked(ev) }()
	switch {
	case r.op == opSleep:
		// Woken or cancelled; never faulted, so a sleep draws nothing
		// from the random source beyond its pick.
		if r.err = r.ctx.Err(); r.err != nil {
			ev.out = outCanceled
		}
		return true
	case r.ctx.Err() != nil:
		r.err = check(a, r.op, r.key, fmt.Errorf("%s %s: %w", r.op, r.key, r.ctx.Err()))
		ev.out = outCanceled
		return true
	case r.op == opPutIf && w.opts.NoConditional:
		r.err = unsupported(r.key)
		ev.out = outUnsupported
		return true
	case r.op == opPutIf && w.opts.NonAtomicConditional && r.phase == 0:
		w.store.mu.Lock()
		r.err = w.store.checkLocked(r.key, r.ifMatch)
		w.store.mu.Unlock()
		if r.err != nil {
			ev.out = outcomeOf(r.err)
			return true
		}
		r.phase = 1
		ev.out = outChecked
		return false
	}
	switch w.drawFaultLocked(r.op) {
	case faultError:
		r.err = remote.Transient(fmt.Errorf("%s %s: %w", r.op, r.key, ErrUnavailable))
		ev.out = outUnavailable
	case faultLost:
		w.applyLocked(a, r)
		ev.setResult(r)
		ev.lost = true
		r.err = remote.Transient(fmt.Errorf("%s %s: %w", r.op, r.key, ErrTimeout))
	case faultDelay:
		d := &delayedRequest{r: *r, actor: a, from: w.steps, due: w.steps + 1 + w.rng.IntN(w.opts.MaxDelay)}
		d.r.ctx = nil // the client has given up; the request lands regardless
		i, _ := slices.BinarySearchFunc(w.delayed, d, func(x, y *delayedRequest) int {
			if x.due != y.due {
				return x.due - y.due
			}
			return x.from - y.from
		})
		w.delayed = slices.Insert(w.delayed, i, d)
		r.err = remote.Transient(fmt.Errorf("%s %s: %w", r.op, r.key, ErrTimeout))
		ev.out, ev.n = outDelayed, d.due
	default:
		w.applyLocked(a, r)
		ev.setResult(r)
	}
	return true
}

type fault uint8

const (
	faultNone fault = iota
	faultError
	faultLost
	faultDelay
)

func (w *World) drawFaultLocked(o op) fault {
	f := w.faults
	if !f.any() {
		// Draw nothing: a fault-free world's schedule does not depend on
		// how many requests could have been hit.
		return faultNone
	}
	u := w.rng.Float64()
	if u < f.PError {
		return faultError
	}
	if u -= f.PError; u < f.PLostResponse {
		return faultLost
	}
	if u -= f.PLostResponse; u < f.PDelay && o.writes() {
		return faultDelay
	}
	return faultNone
}

// applyLocked applies r to the store with the ModTime a write by a gets now.
func (w *World) applyLocked(a *Actor, r *request) {
	now := w.Now()
	if w.opts.WriterClock {
		now = a.Now()
	}
	w.store.mu.Lock()
	w.store.applyLocked(r, now, r.phase == 0)
	w.store.mu.Unlock()
}

// landLocked applies a delayed request as this step.
func (w *World) landLocked(d *delayedRequest) {
	ev := w.requestEvent(d.actor, &d.r)
	ev.from = d.from
	w.applyLocked(d.actor, &d.r)
	ev.setResult(&d.r)
	w.noteLocked(ev)
}
