// Package sim runs processes that share one object store as a deterministic
// simulation, in the manner of FoundationDB's simulator: the interleaving of
// their store requests, the faults that hit them and the passage of time are
// all chosen by one seeded random source, so a run that breaks an invariant
// can be replayed exactly from its seed.
//
// It is infrastructure for protocol tests: real backup writers, purgers,
// restorers and validators run as actors against one Store, and the test
// checks after every step that nothing a backup needs has been deleted. The
// package knows nothing of backups; like remote, it sees opaque keys and
// bytes.
//
// # Pieces
//
// A World owns a virtual clock, a random source, a Store and the actors. The
// Store is an in-memory remote.Store and remote.Conditional with DeleteMany;
// it passes remotetest.Run. Requests made with an actor's context go through
// the scheduler; requests made with any other context are applied at once
// and never faulted, which is how a test seeds the store. Store.Peek and
// Store.Snapshot read it without any request, for invariant checks that
// must not disturb the schedule; they share the stored bytes, not copy them.
//
// # Scheduling
//
// World.Spawn starts an actor: a function run in its own goroutine with a
// context that identifies it. Each store request the actor makes with that
// context (or one derived from it) parks the actor until World.Step picks
// it. Step picks one parked, unpaused actor with the seeded source (weighted
// by Actor.SetWeight), applies its request, hands it the result and waits
// until the actor parks on its next request or returns. So exactly one actor
// runs at a time, and between steps none does: the test may inspect
// anything. Step costs about 3µs, 20µs under the race detector (see
// BenchmarkStep): two channel handoffs, no polling.
//
// The rule that makes this deterministic: an actor makes store requests from
// one goroutine at a time, and while it waits on one no other goroutine of
// it runs. Code under test that uploads in parallel must be configured with
// a parallelism of one, or split into several actors. The World detects the
// overlaps it can see (two goroutines of one actor inside requests at once)
// and fails with ErrOverlap; it cannot see a goroutine that runs without
// making requests. A run is also a function of the seed only if the code
// under test is: its clock must be Actor.Now (or Actor.Clock), not
// time.Now; it must not draw from the global math/rand or iterate a map in
// an order that reaches the store; and it must not wait on real time
// (time.Sleep, real-time context deadlines, a retry decorator's backoff),
// which at best makes the run slow and at worst changes it: it sleeps with
// World.Sleep. An actor blocked on anything but a store request or a sleep
// is a bug in the test: after Options.Watchdog of real time (10 s by
// default) the World fails with ErrStuck, naming the actor, instead of
// hanging.
//
// # Time
//
// Virtual time moves only when the test calls World.Advance, or by
// Options.StepTime after every step. Each actor's clock (Actor.Now) is the
// virtual time plus its skew. ModTime of a write is the virtual time, the
// store's clock, or with Options.WriterClock the writer's clock, as a store
// on a shared filesystem records it. Actor.Pause keeps an actor from being
// scheduled while time passes, the way SIGSTOP, a VM suspend or a GC pause
// holds a process past its lease; its pending request waits.
//
// # Sleeping
//
// World.Sleep(ctx, d) parks the actor ctx carries, like a store request,
// until virtual time reaches its wake time (Now at the call plus d); code
// under test gets it as Actor.Clock, whose Now is the actor's skewed clock
// and whose Sleep is World.Sleep, so a heartbeat loop
// "for { clock.Sleep(ctx, 5*time.Minute); renew() }" runs in virtual time.
// A sleeper is runnable once its wake time has come, by Advance, StepTime
// or a jump, and is then picked like any actor, subject to pause and
// weights. When no actor is runnable and no delayed request is in flight,
// Step moves virtual time to the earliest wake time of an unpaused sleeper
// and wakes it; the trace records the jump ("advance 5m0s to wake hb"). So
// time runs as far as the sleepers need and no further, and a run with
// sleepers is still a function of the seed: wake times are virtual, ties
// are broken by the seeded pick, and nothing waits on real time. A
// cancelled context makes its sleeper runnable rather than waking it on
// the spot, so the sleeper runs in a step of its own, never beside the
// actor that cancelled; a crash ends a sleep at once with ErrCrashed; a
// paused sleeper sleeps on past its wake time until Resume. An actor that
// sleeps in a loop forever would keep RunUntilIdle busy forever:
// Options.Horizon bounds the jumps, past it the World counts as idle and
// Close crashes the sleepers. The one-goroutine rule counts sleeps as
// requests: a heartbeat beside the main work is a second actor.
//
// # Faults
//
// Faults hit actors' requests with the probabilities in Faults:
//   - PError: the request is not applied and fails with ErrUnavailable.
//   - PLostResponse: the request is applied but fails with ErrTimeout, so a
//     retry repeats it.
//   - PDelay: a write fails with ErrTimeout at once and is applied at a later
//     step, up to Options.MaxDelay steps on: the slow request that lands
//     after its client has moved on, or crashed. A delayed PutIf checks its
//     condition when it lands.
//
// These errors are marked with remote.Transient, and wrap neither
// fs.ErrNotExist, remote.ErrPrecondition nor a context error, so code under
// test sees them as it sees a real timeout or 503. Actor.Crash is kill -9:
// the pending request is not applied, it and all later requests fail with
// ErrCrashed, and the context is cancelled. The store itself can be made
// weaker: Options.NoConditional removes conditional writes, and
// Options.NonAtomicConditional splits PutIf into a check and a later
// unconditional write, a race some S3-compatible servers have had.
//
// # Reproducing a failure
//
// The seed decides the run, given the same options and the same test code.
// RunUntilIdle's errors and the World's failures start with
// "sim: seed S, step N", and World.Trace prints the last steps (actor,
// request, key, outcome, fault, virtual time), so a failing seed can be
// rerun alone, its trace read, and a check added before step N. A protocol
// test would take its seeds from a flag, so that
//
//	go test -run TestProtocol -seed 1234
//
// replays one run. Trace also makes nondeterminism in the code under test
// visible: run one seed twice and compare the traces.
//
// # Testing
//
// The package's tests run remotetest.Run on the store without actors,
// compare the scheduled path with the direct one on random operations, and
// check each property above: identical traces for a seed, one actor running
// at a time, pause, crash, each fault, non-atomic and missing conditional
// writes, writer clocks, the watchdog, and sleepers woken by Advance,
// StepTime and jumps, in wake-time order, crashed, paused, cancelled and
// stopped by the horizon.
package sim
