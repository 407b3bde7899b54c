package sim

import (
	"context"
	"math"
	"strings"
	"time"
)

// Sleep waits d of virtual time in the actor ctx carries: the actor parks,
// as on a store request, and Step makes it runnable once the World's
// virtual time has reached its wake time, Now at the call plus d. A d of
// zero or less is a yield, a scheduling point that is runnable at once.
// Sleep returns nil when woken; an error wrapping ErrCrashed (and
// context.Canceled) at once if the actor is crashed, asleep or not; and
// ctx's own error, unwrapped, if ctx is done when Sleep is called or is
// cancelled while it sleeps, as a sleep on a real clock does.
//
// A cancelled context does not wake the sleeper on the spot, which would
// run it beside the actor or test that cancelled: it makes the sleeper
// runnable, and Step picks it like any runnable actor, so the run stays a
// function of the seed. That needs the cancellation to happen within a
// step or between steps, by a CancelFunc called by an actor or the test;
// the standard library's contexts pass it to their children before the
// call returns. A cancellation forwarded by a goroutine (go func() {
// <-done; cancel() }(), context.AfterFunc) or a real-time deadline lands
// at a step that depends on real time, and the run is not reproducible.
//
// Called with a context that carries no actor, Sleep returns ctx's error
// at once, without waiting: only actors live in virtual time. Like a store
// request, a sleep is made from the actor's one goroutine that may make
// requests; a second goroutine sleeping or requesting at the same time is
// an ErrOverlap. The watchdog does not time a sleeping actor.
func (w *World) Sleep(ctx context.Context, d time.Duration) error {
	a := w.store.actorOf(ctx)
	r := &request{op: opSleep, key: d.String()}
	if err := ctx.Err(); err != nil {
		if a != nil && a.crashed.Load() {
			return crashError(r.op, r.key)
		}
		return err
	}
	if a == nil {
		return nil
	}
	r.ctx = ctx
	r.since = time.Duration(w.elapsed.Load())
	r.until = r.since
	if d > 0 {
		// A sleep "forever" saturates instead of wrapping into the past.
		r.until += min(d, math.MaxInt64-r.since)
	}
	return a.call(r)
}

// Clock is an actor's clock, for code under test that takes one with Now
// and Sleep methods (a heartbeat loop's). Get one from Actor.Clock.
type Clock struct{ a *Actor }

// Clock returns the actor's clock: Now is Actor.Now, skewed, and Sleep is
// World.Sleep, whose wake time is virtual (store) time, so skew does not
// change how long a sleep lasts.
func (a *Actor) Clock() Clock { return Clock{a} }

// Now returns the actor's clock: the virtual time plus its skew.
func (c Clock) Now() time.Time { return c.a.Now() }

// Sleep is World.Sleep: it parks the actor ctx carries, normally the
// clock's own, for d of virtual time.
func (c Clock) Sleep(ctx context.Context, d time.Duration) error { return c.a.w.Sleep(ctx, d) }

// due reports whether the request can be served at virtual time now: a
// store request always, a sleep once its wake time has come or its
// context is done.
func (r *request) due(now int64) bool {
	return r.op != opSleep || int64(r.until) <= now || r.ctx.Err() != nil
}

// nextWakeLocked returns the earliest wake time of an unpaused sleeper, if
// it is within Options.Horizon.
func (w *World) nextWakeLocked() (time.Duration, bool) {
	var next time.Duration
	found := false
	for _, a := range w.actors {
		if a.state != stateWaiting || a.paused || a.pending.op != opSleep {
			continue
		}
		if !found || a.pending.until < next {
			next, found = a.pending.until, true
		}
	}
	if !found || w.opts.Horizon > 0 && next > w.opts.Horizon {
		return 0, false
	}
	return next, true
}

// jumpLocked moves virtual time to the earliest wake time of an unpaused
// sleeper within the horizon, and reports whether there was one. It is
// called when no actor can run, so every sleeper's wake time is ahead.
func (w *World) jumpLocked() bool {
	next, ok := w.nextWakeLocked()
	if !ok {
		return false
	}
	// Add, not Store: Advance may add concurrently, and time must not
	// move back.
	d := max(0, next-time.Duration(w.elapsed.Load()))
	w.elapsed.Add(int64(d))
	var names []string
	for _, a := range w.actors {
		if a.state == stateWaiting && !a.paused && a.pending.op == opSleep && a.pending.until == next {
			names = append(names, a.name)
		}
	}
	w.noteLocked(event{kind: evJump, dur: d, key: strings.Join(names, ", ")})
	return true
}
