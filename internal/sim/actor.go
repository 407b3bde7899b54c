package sim

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// actorKey is the context key under which an actor's context carries it.
type actorKey struct{}

type actorState uint8

const (
	stateRunning actorState = iota // its code runs (or it is stuck)
	stateWaiting                   // a request (or sleep) of its waits for the scheduler
	stateDone                      // its function returned
)

// Actor is one simulated process: a goroutine whose store requests the
// World schedules. Its methods are for the test, between steps, and for
// actors while they run.
type Actor struct {
	w      *World
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	skew    atomic.Int64 // nanoseconds added to the virtual time by Now
	crashed atomic.Bool
	// calls counts goroutines inside call: more than one is an overlap,
	// even when the two happen to take turns with the scheduler.
	calls atomic.Int32

	// The handoff. Both hold at most one token: the scheduler sends wake
	// once per request it completes, the actor sends parked once per
	// request it makes and once when it returns.
	wake   chan struct{}
	parked chan struct{}
	done   chan struct{}
	// watchdog belongs to whoever waits for this actor; only one does.
	watchdog *time.Timer

	// Guarded by w.mu.
	state   actorState
	paused  bool
	weight  int
	pending *request
	err     error
}

// Spawn starts an actor that runs fn in its own goroutine with a context
// that routes its store requests through the scheduler, and whose clock
// (Now) is the virtual time plus skew. fn runs at once, until its first
// store request or sleep (World.Sleep) or its return, and Spawn returns
// then; from there on the actor runs only when Step picks it.
//
// fn must make store requests and sleeps from one goroutine at a time, and
// no other goroutine of the actor may run while it waits on one, or the
// schedule stops being a function of the seed. The World detects the
// overlap it can see (two goroutines of the actor inside store requests or
// sleeps at once) and fails with ErrOverlap. Work that runs beside fn, such
// as a heartbeat, is a second actor.
// Spawn may be called from a running actor.
func (w *World) Spawn(name string, skew time.Duration, fn func(ctx context.Context) error) *Actor {
	a := &Actor{
		w:      w,
		name:   name,
		weight: 1,
		wake:   make(chan struct{}, 1),
		parked: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	a.skew.Store(int64(skew))
	a.ctx, a.cancel = context.WithCancel(context.WithValue(context.Background(), actorKey{}, a))
	w.mu.Lock()
	w.spawned++
	w.actors = append(w.actors, a)
	w.noteLocked(event{kind: evSpawn, actor: a, dur: skew})
	w.mu.Unlock()

	go a.run(fn)
	if err := w.await(a, a.parked); err != nil {
		panic(err)
	}
	return a
}

func (a *Actor) run(fn func(context.Context) error) {
	var err error
	returned := false
	defer func() {
		if !returned {
			// A panic or a Goexit in code under test is a bug the run
			// must report, with the seed that shows it.
			if p := recover(); p != nil {
				err = fmt.Errorf("actor %s panicked: %v\n%s", a.name, p, debug.Stack())
			} else {
				err = fmt.Errorf("actor %s called runtime.Goexit (t.FailNow or t.Fatal from an actor?)", a.name)
			}
			a.w.fail(err)
		}
		a.finish(err)
	}()
	err = fn(a.ctx)
	returned = true
}

func (a *Actor) finish(err error) {
	w := a.w
	w.mu.Lock()
	a.state = stateDone
	a.err = err
	stray := a.pending
	a.pending = nil
	if stray != nil {
		stray.err = w.failLocked(fmt.Errorf("%w: actor %s returned while its %s %s, made from another goroutine, was pending",
			ErrOverlap, a.name, stray.op, stray.key))
	}
	w.noteLocked(event{kind: evReturn, actor: a, err: err})
	w.mu.Unlock()

	a.cancel()
	close(a.done)
	if stray != nil {
		a.wake <- struct{}{}
	}
	select {
	case a.parked <- struct{}{}:
	default: // a stray request's token is there already; it wakes the waiter as well
	}
}

// call hands r to the scheduler and waits for its result.
func (a *Actor) call(r *request) error {
	w := a.w
	defer a.calls.Add(-1)
	overlap := a.calls.Add(1) > 1
	w.mu.Lock()
	switch {
	case a.crashed.Load():
		w.mu.Unlock()
		return crashError(r.op, r.key)
	case w.failed != nil:
		err := w.failed
		w.mu.Unlock()
		return fmt.Errorf("%s %s: %w", r.op, r.key, err)
	case overlap || a.state != stateRunning:
		what := "while another was pending"
		switch {
		case a.pending != nil:
			what = fmt.Sprintf("while its %s %s was pending", a.pending.op, a.pending.key)
		case a.state == stateDone:
			what = "after its function returned"
		}
		err := w.failLocked(fmt.Errorf("%w: actor %s made a %s %s request %s; "+
			"an actor must make store requests and sleeps from one goroutine at a time", ErrOverlap, a.name, r.op, r.key, what))
		w.mu.Unlock()
		return err
	}
	a.pending = r
	a.state = stateWaiting
	w.mu.Unlock()

	a.parked <- struct{}{}
	<-a.wake
	return r.err
}

// ActorOf returns the actor whose context ctx is (or derives from), or nil.
// An actor's function uses it to find itself before Spawn has returned,
// for instance to hand ActorOf(ctx).Clock() to the code under test.
func ActorOf(ctx context.Context) *Actor {
	a, _ := ctx.Value(actorKey{}).(*Actor)
	return a
}

// Name returns the name given to Spawn.
func (a *Actor) Name() string { return a.name }

// Now returns the actor's clock: the virtual time plus its skew. Pass it
// (a.Now) to the code under test as its clock.
func (a *Actor) Now() time.Time { return a.w.Now().Add(time.Duration(a.skew.Load())) }

// SetSkew changes the actor's clock skew: a clock stepped by NTP or an
// operator.
func (a *Actor) SetSkew(d time.Duration) { a.skew.Store(int64(d)) }

// SetWeight makes the actor n times as likely to be picked as an actor of
// weight 1, the default. n must be at least 1.
func (a *Actor) SetWeight(n int) {
	if n < 1 {
		panic(fmt.Sprintf("sim: SetWeight(%d) for actor %s: want at least 1 (Pause stops an actor)", n, a.name))
	}
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	a.weight = n
}

// Pause stops the scheduler from picking the actor; a request it has
// pending stays pending, and a sleep goes on past its wake time, however
// far time advances, until Resume; Step does not move time to wake a
// paused sleeper. This is a process stopped by SIGSTOP, a VM suspend or a
// long GC pause.
func (a *Actor) Pause() { a.setPaused(true) }

// Resume lets the scheduler pick the actor again.
func (a *Actor) Resume() { a.setPaused(false) }

// Paused reports whether the actor is paused.
func (a *Actor) Paused() bool {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	return a.paused
}

func (a *Actor) setPaused(p bool) {
	w := a.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if a.paused == p || a.state == stateDone {
		return
	}
	a.paused = p
	kind := evResume
	if p {
		kind = evPause
	}
	w.noteLocked(event{kind: kind, actor: a})
}

// Crash kills the actor as kill -9 would: its pending request is not
// applied, and it and every later request fail at once with an error
// wrapping ErrCrashed, as does a sleep it is in or starts; its context is
// cancelled. Requests it sent earlier that were delayed still land. Crash
// returns once the actor's function has returned, which code under test
// must do when its requests fail; it panics with ErrStuck if that takes
// longer than Options.Watchdog. An actor that crashes itself goes on until
// it returns.
func (a *Actor) Crash() {
	if err := a.crash(); err != nil {
		panic(err)
	}
}

func (a *Actor) crash() error {
	w := a.w
	w.mu.Lock()
	if a.state == stateDone || a.crashed.Load() {
		w.mu.Unlock()
		return nil
	}
	a.crashed.Store(true)
	a.cancel()
	r := a.pending
	ev := event{kind: evCrash, actor: a}
	if r != nil {
		ev.op, ev.key = r.op, r.key
	}
	w.noteLocked(ev)
	if r == nil {
		// Running: the actor crashes itself (or is stuck after a failure).
		w.mu.Unlock()
		return nil
	}
	a.pending = nil
	a.state = stateRunning
	r.err = crashError(r.op, r.key)
	w.mu.Unlock()

	a.wake <- struct{}{}
	return w.await(a, a.done)
}

// Done is closed when the actor's function has returned.
func (a *Actor) Done() <-chan struct{} { return a.done }

// Err returns what the actor's function returned, once it has; a panic in
// it is returned as an error (and also fails the World).
func (a *Actor) Err() error {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	return a.err
}
