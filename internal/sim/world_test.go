package sim_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/sim"
	"github.com/cassback/cassback/remote"
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// workload is a mix of every request kind from a few actors, using the
// World's random source while they run.
func workload(w *sim.World, actors, ops int) {
	s := w.Store()
	for i := range actors {
		w.Spawn(fmt.Sprintf("actor-%d", i), time.Duration(i)*time.Second, func(ctx context.Context) error {
			for range ops {
				runOp(ctx, s, w.Rand())
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			return nil
		})
	}
}

func chaos(seed uint64) sim.Options {
	return sim.Options{
		Seed:                 seed,
		Start:                start,
		Faults:               sim.Faults{PError: 0.05, PLostResponse: 0.05, PDelay: 0.1},
		NonAtomicConditional: true,
		ListPage:             2,
		StepTime:             func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(1000)) * time.Millisecond },
	}
}

// runTrace runs the workload with opts and returns the trace and the
// store's final contents.
func runTrace(t *testing.T, opts sim.Options) (trace, contents string) {
	t.Helper()
	w := sim.New(opts)
	workload(w, 4, 40)
	if err := w.RunUntilIdle(10_000, nil); err != nil {
		t.Fatal(err)
	}
	return w.Trace(), snapshot(w.Store())
}

func TestDeterminism(t *testing.T) {
	exercised := []string{"FAULT unavailable", "FAULT response lost", "FAULT timed out", "delayed from step",
		"condition holds", "list-dirs", "delete-many", ", more", "precondition failed", "not found"}
	seen := map[string]int{}
	traces := map[string]uint64{}
	for seed := range uint64(8) {
		trace1, contents1 := runTrace(t, chaos(seed))
		trace2, contents2 := runTrace(t, chaos(seed))
		if trace1 != trace2 {
			t.Fatalf("seed %d: two runs gave different traces, first difference at %s", seed, firstDiff(trace1, trace2))
		}
		if contents1 != contents2 {
			t.Errorf("seed %d: two runs left different contents:\n%s\n%s", seed, contents1, contents2)
		}
		for _, want := range exercised {
			if strings.Contains(trace1, want) {
				seen[want]++
			}
		}
		if other, ok := traces[trace1]; ok {
			t.Errorf("seeds %d and %d gave the same trace, want different schedules", other, seed)
		}
		traces[trace1] = seed
	}
	for _, want := range exercised {
		if seen[want] == 0 {
			t.Errorf("no trace has %q; the workload should exercise it", want)
		}
	}
}

// firstDiff shows the first line where a and b differ.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d:\n%s\n%s", i, la[i], lb[i])
		}
	}
	return fmt.Sprintf("one trace is longer: %d vs %d lines", len(la), len(lb))
}

func TestOneActorRunsAtATime(t *testing.T) {
	w := sim.New(sim.Options{Seed: 3})
	s := w.Store()
	var running, maxRunning, total int // plain ints: the race detector checks the handoff orders them
	for i := range 8 {
		w.Spawn(fmt.Sprint("a", i), 0, func(ctx context.Context) error {
			for j := range 50 {
				running++
				maxRunning = max(maxRunning, running)
				runtime.Gosched() // give another actor the chance to run, if one could
				total++
				running--
				if err := put(ctx, s, fmt.Sprintf("k/%d/%d", i, j), "v"); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := w.RunUntilIdle(0, func() error {
		if running != 0 {
			return fmt.Errorf("an actor runs while the test checks")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if maxRunning != 1 || total != 400 {
		t.Errorf("got at most %d actors running at once over %d runs, want 1 over 400", maxRunning, total)
	}
	if got := w.Steps(); got != 400 {
		t.Errorf("Steps: got %d, want 400", got)
	}
}

func TestStepWhenActorsReturn(t *testing.T) {
	w := sim.New(sim.Options{})
	s := w.Store()
	quiet := w.Spawn("quiet", 0, func(context.Context) error { return errors.New("nothing to do") })
	select {
	case <-quiet.Done():
	default:
		t.Fatalf("an actor that returns before any request: not done after Spawn")
	}
	if got := quiet.Err(); got == nil || got.Error() != "nothing to do" {
		t.Errorf("Err: got %v, want its error", got)
	}
	one := w.Spawn("one", 0, func(ctx context.Context) error { return put(ctx, s, "k", "v") })
	if a, ok := w.Step(); !ok || a != one {
		t.Fatalf("Step: got %v, %v; want actor one, true", a, ok)
	}
	if a, ok := w.Step(); ok {
		t.Fatalf("Step with every actor done: got %s, true; want false", a.Name())
	}
	if err := one.Err(); err != nil {
		t.Errorf("one.Err: %v", err)
	}
}

func TestPause(t *testing.T) {
	w := sim.New(sim.Options{Start: start})
	s := w.Store()
	slow := w.Spawn("slow", 0, func(ctx context.Context) error { return put(ctx, s, "slow", "v") })
	slow.Pause()
	fast := w.Spawn("fast", 0, func(ctx context.Context) error {
		for i := range 5 {
			if err := put(ctx, s, fmt.Sprint("fast/", i), "v"); err != nil {
				return err
			}
		}
		return nil
	})
	w.Advance(90 * time.Minute)
	steps := 0
	for {
		a, ok := w.Step()
		if !ok {
			break
		}
		if a != fast {
			t.Fatalf("Step %d: got actor %s, want only fast while slow is paused", steps, a.Name())
		}
		steps++
	}
	if steps != 5 {
		t.Errorf("steps while slow is paused: got %d, want 5", steps)
	}
	if _, ok := s.Peek("slow"); ok {
		t.Fatalf("a paused actor's Put was applied")
	}
	select {
	case <-slow.Done():
		t.Fatalf("paused actor returned")
	default:
	}
	slow.Resume()
	if a, ok := w.Step(); !ok || a != slow {
		t.Fatalf("Step after Resume: got %v, %v; want slow", a, ok)
	}
	o, ok := s.Peek("slow")
	if want := start.Add(90 * time.Minute); !ok || !o.ModTime.Equal(want) {
		t.Errorf("the resumed Put: got %+v, %v; want ModTime %v", o.Info, ok, want)
	}
	if !strings.Contains(w.Trace(), "slow       paused") {
		t.Errorf("trace does not show the pause:\n%s", w.Trace())
	}
}

func TestCrash(t *testing.T) {
	w := sim.New(sim.Options{})
	s := w.Store()
	var pendingErr, laterErr, ctxErr error
	victim := w.Spawn("victim", 0, func(ctx context.Context) error {
		pendingErr = put(ctx, s, "pending", "v")
		laterErr = put(ctx, s, "later", "v")
		ctxErr = ctx.Err()
		return pendingErr
	})
	victim.Crash()
	select {
	case <-victim.Done():
	default:
		t.Fatalf("Crash returned before the actor did")
	}
	for what, err := range map[string]error{"pending request": pendingErr, "later request": laterErr, "Err": victim.Err()} {
		if !errors.Is(err, sim.ErrCrashed) {
			t.Errorf("%s: got %v, want ErrCrashed", what, err)
		}
		if remote.IsTransient(err) {
			t.Errorf("%s: %v is transient; a crashed process does not retry", what, err)
		}
	}
	if !errors.Is(ctxErr, context.Canceled) {
		t.Errorf("ctx.Err after the crash: got %v, want context.Canceled", ctxErr)
	}
	if got := snapshot(s); got != "" {
		t.Errorf("store after the crash: got %s, want nothing applied", got)
	}
	if a, ok := w.Step(); ok {
		t.Errorf("Step after the only actor crashed: got %s, want false", a.Name())
	}
	if want := "victim     crashed; its pending put pending is not applied"; !strings.Contains(w.Trace(), want) {
		t.Errorf("trace:\n%s\nwant a line with %q", w.Trace(), want)
	}
	victim.Crash() // a second crash is harmless
}

// TestCrashLeavesDelayedRequests: a request sent before the crash is on the
// wire and still lands.
func TestCrashLeavesDelayedRequests(t *testing.T) {
	w := sim.New(sim.Options{Faults: sim.Faults{PDelay: 1}, MaxDelay: 5})
	s := w.Store()
	victim := w.Spawn("victim", 0, func(ctx context.Context) error {
		if err := put(ctx, s, "sent", "v"); !errors.Is(err, sim.ErrTimeout) {
			return fmt.Errorf("put: got %v, want ErrTimeout", err)
		}
		_, err := s.Stat(ctx, "sent")
		return err
	})
	if a, ok := w.Step(); !ok || a != victim {
		t.Fatalf("Step: got %v, %v; want victim", a, ok)
	}
	victim.Crash()
	if err := w.RunUntilIdle(10, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Peek("sent"); !ok {
		t.Errorf("a delayed Put sent before the crash never landed")
	}
}

func TestCrashFromActor(t *testing.T) {
	w := sim.New(sim.Options{})
	s := w.Store()
	victim := w.Spawn("victim", 0, func(ctx context.Context) error {
		for ctx.Err() == nil {
			if _, err := s.Stat(ctx, "x"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return ctx.Err()
	})
	var self *sim.Actor
	self = w.Spawn("self", 0, func(ctx context.Context) error {
		if err := put(ctx, s, "x", "v"); err != nil {
			return err
		}
		victim.Crash()
		self.Crash()
		return put(ctx, s, "y", "v")
	})
	if err := w.RunUntilIdle(1000, nil); err != nil {
		t.Fatal(err)
	}
	if err := victim.Err(); !errors.Is(err, sim.ErrCrashed) && !errors.Is(err, context.Canceled) {
		t.Errorf("victim: got %v, want a crash", err)
	}
	if err := self.Err(); !errors.Is(err, sim.ErrCrashed) {
		t.Errorf("an actor that crashed itself: got %v from its next request, want ErrCrashed", err)
	}
}

// race has n actors create one key with PutIf and returns the winners.
func race(t *testing.T, opts sim.Options, n int) int {
	t.Helper()
	w := sim.New(opts)
	s := w.Store()
	winners := 0
	for i := range n {
		w.Spawn(fmt.Sprint("racer-", i), 0, func(ctx context.Context) error {
			_, err := s.PutIf(ctx, "gc/lease", fmt.Appendf(nil, "racer %d", i), "")
			switch {
			case err == nil:
				winners++
			case !errors.Is(err, remote.ErrPrecondition):
				return err
			}
			return nil
		})
	}
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	return winners
}

func TestConditionalRace(t *testing.T) {
	const racers, seeds = 32, 40
	for _, tt := range []struct {
		name      string
		nonAtomic bool
	}{{"atomic", false}, {"non-atomic", true}} {
		t.Run(tt.name, func(t *testing.T) {
			multi := 0
			for seed := range uint64(seeds) {
				n := race(t, sim.Options{Seed: seed, NonAtomicConditional: tt.nonAtomic}, racers)
				if n == 0 || !tt.nonAtomic && n != 1 {
					t.Fatalf("seed %d: %d racers creating one key: got %d winners, want 1", seed, racers, n)
				}
				if n > 1 {
					multi++
				}
			}
			if tt.nonAtomic && multi == 0 {
				t.Errorf("non-atomic PutIf: no seed of %d gave two winners, want some", seeds)
			}
			t.Logf("%d of %d seeds had more than one winner", multi, seeds)
		})
	}
}

func TestNoConditional(t *testing.T) {
	w := sim.New(sim.Options{NoConditional: true})
	s := w.Store()
	if _, err := s.PutIf(t.Context(), "k", []byte("v"), ""); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PutIf without an actor: got %v, want errors.ErrUnsupported", err)
	}
	var actorErr error
	w.Spawn("a", 0, func(ctx context.Context) error {
		_, actorErr = s.PutIf(ctx, "k", []byte("v"), "")
		return nil
	})
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(actorErr, errors.ErrUnsupported) {
		t.Errorf("PutIf from an actor: got %v, want errors.ErrUnsupported", actorErr)
	}
	if got := snapshot(s); got != "" {
		t.Errorf("store: got %s, want nothing written", got)
	}
}

// wantFaultError checks that err looks like a transient store error.
func wantFaultError(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
	for _, not := range []error{fs.ErrNotExist, remote.ErrPrecondition, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, not) {
			t.Errorf("%s: %v wraps %v; a fault must look like a transient error", what, err, not)
		}
	}
	if !remote.IsTransient(err) {
		t.Errorf("%s: %v is not transient", what, err)
	}
}

func TestFaults(t *testing.T) {
	for _, tt := range []struct {
		name        string
		faults      sim.Faults
		want        error
		wantApplied bool
	}{
		{"error", sim.Faults{PError: 1}, sim.ErrUnavailable, false},
		{"lost-response", sim.Faults{PLostResponse: 1}, sim.ErrTimeout, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := sim.New(sim.Options{Faults: tt.faults})
			s := w.Store()
			for _, k := range []string{"del", "many/1", "many/2", "cas"} {
				if err := put(t.Context(), s, k, "old"); err != nil {
					t.Fatal(err)
				}
			}
			casInfo, _ := s.Peek("cas")
			errs := map[string]error{}
			w.Spawn("a", 0, func(ctx context.Context) error {
				errs["put"] = put(ctx, s, "new", "v")
				_, errs["put-if create"] = s.PutIf(ctx, "created", []byte("v"), "")
				_, errs["put-if match"] = s.PutIf(ctx, "cas", []byte("v"), casInfo.ETag)
				errs["delete"] = s.Delete(ctx, "del")
				errs["delete-many"] = s.DeleteMany(ctx, []string{"many/1", "many/2"})
				_, errs["stat"] = s.Stat(ctx, "cas")
				_, errs["get"] = s.Get(ctx, "cas", 0, -1)
				errs["list"] = s.List(ctx, "", func(remote.Info) error { return nil })
				_, errs["list-dirs"] = s.ListDirs(ctx, "")
				return nil
			})
			if err := w.RunUntilIdle(0, nil); err != nil {
				t.Fatal(err)
			}
			for what, err := range errs {
				wantFaultError(t, what, err, tt.want)
			}
			want := `cas="old"(4) del="old"(1) many/1="old"(2) many/2="old"(3) `
			if tt.wantApplied {
				want = `cas="v"(7) created="v"(6) new="v"(5) `
			}
			if got := snapshot(s); got != want {
				t.Errorf("store:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestLostResponseRetry: retrying a create whose response was lost finds
// the key taken, by itself.
func TestLostResponseRetry(t *testing.T) {
	w := sim.New(sim.Options{Faults: sim.Faults{PLostResponse: 1}})
	s := w.Store()
	var first, retry error
	w.Spawn("a", 0, func(ctx context.Context) error {
		_, first = s.PutIf(ctx, "lease", []byte("mine"), "")
		w.SetFaults(sim.Faults{})
		_, retry = s.PutIf(ctx, "lease", []byte("mine"), "")
		return nil
	})
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	wantFaultError(t, "first PutIf", first, sim.ErrTimeout)
	if !errors.Is(retry, remote.ErrPrecondition) {
		t.Errorf("retried PutIf: got %v, want ErrPrecondition", retry)
	}
}

// TestDelayedPutLandsLate: a Put the client gave up on may land after the
// client's next Put, and undo it.
func TestDelayedPutLandsLate(t *testing.T) {
	finals := map[string]int{}
	for seed := range uint64(30) {
		w := sim.New(sim.Options{Seed: seed, Faults: sim.Faults{PDelay: 1}, MaxDelay: 4})
		s := w.Store()
		var first, second error
		w.Spawn("writer", 0, func(ctx context.Context) error {
			first = put(ctx, s, "k", "v1")
			second = put(ctx, s, "k", "v2")
			for range 3 {
				if _, err := s.Stat(ctx, "k"); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		})
		if _, ok := w.Step(); !ok { // the first Put, delayed
			t.Fatal("no step")
		}
		w.SetFaults(sim.Faults{})
		if err := w.RunUntilIdle(0, nil); err != nil {
			t.Fatal(err)
		}
		wantFaultError(t, "delayed Put", first, sim.ErrTimeout)
		if second != nil {
			t.Fatalf("seed %d: second Put: %v", seed, second)
		}
		if !strings.Contains(w.Trace(), "put k 2B (delayed from step 1): ok") {
			t.Fatalf("seed %d: trace does not show the delayed Put landing:\n%s", seed, w.Trace())
		}
		o, _ := s.Peek("k")
		finals[string(o.Data)]++
	}
	if finals["v1"] == 0 || finals["v2"] == 0 {
		t.Errorf("final values over 30 seeds: got %v, want the delayed v1 to land both before and after v2", finals)
	}
}

func TestDelayedPutIfChecksWhenItLands(t *testing.T) {
	w := sim.New(sim.Options{Faults: sim.Faults{PDelay: 1}, MaxDelay: 1})
	s := w.Store()
	w.Spawn("a", 0, func(ctx context.Context) error {
		_, err := s.PutIf(ctx, "k", []byte("late"), "")
		return err
	})
	if err := put(t.Context(), s, "k", "first"); err != nil { // before the PutIf lands
		t.Fatal(err)
	}
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Peek("k"); string(o.Data) != "first" {
		t.Errorf("a delayed create-only PutIf overwrote an object created before it landed: got %q", o.Data)
	}
	if !strings.Contains(w.Trace(), "(delayed from step 1): precondition failed") {
		t.Errorf("trace:\n%s", w.Trace())
	}
}

func TestWriterClock(t *testing.T) {
	const skew = -90 * time.Minute
	for _, tt := range []struct {
		name        string
		writerClock bool
		want        time.Time
	}{
		{"store-clock", false, start.Add(time.Hour)},
		{"writer-clock", true, start.Add(time.Hour + skew)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := sim.New(sim.Options{Start: start, WriterClock: tt.writerClock})
			s := w.Store()
			w.Advance(time.Hour)
			var now time.Time
			a := w.Spawn("skewed", skew, func(ctx context.Context) error { return put(ctx, s, "k", "v") })
			now = a.Now()
			if want := start.Add(time.Hour + skew); !now.Equal(want) {
				t.Errorf("actor Now: got %v, want %v", now, want)
			}
			if err := w.RunUntilIdle(0, nil); err != nil {
				t.Fatal(err)
			}
			if o, _ := s.Peek("k"); !o.ModTime.Equal(tt.want) {
				t.Errorf("ModTime: got %v, want %v", o.ModTime, tt.want)
			}
			if err := put(t.Context(), s, "direct", "v"); err != nil {
				t.Fatal(err)
			}
			if o, _ := s.Peek("direct"); !o.ModTime.Equal(w.Now()) {
				t.Errorf("ModTime of a write without an actor: got %v, want the store's %v", o.ModTime, w.Now())
			}
		})
	}
}

func TestStepTime(t *testing.T) {
	w := sim.New(sim.Options{Start: start, StepTime: func(*rand.Rand) time.Duration { return time.Second }})
	s := w.Store()
	w.Spawn("a", 0, func(ctx context.Context) error {
		for i := range 10 {
			if err := put(ctx, s, fmt.Sprint("k", i), "v"); err != nil {
				return err
			}
		}
		return nil
	})
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Now(), start.Add(10*time.Second); !got.Equal(want) {
		t.Errorf("Now after 10 steps of 1s: got %v, want %v", got, want)
	}
	if o, _ := s.Peek("k3"); !o.ModTime.Equal(start.Add(3 * time.Second)) {
		t.Errorf("ModTime of the 4th write: got %v, want start+3s", o.ModTime)
	}
}

func TestWeight(t *testing.T) {
	w := sim.New(sim.Options{Seed: 5})
	s := w.Store()
	loop := func(ctx context.Context) error {
		for ctx.Err() == nil {
			_, _ = s.Stat(ctx, "k")
		}
		return nil
	}
	heavy := w.Spawn("heavy", 0, loop)
	w.Spawn("light", 0, loop)
	heavy.SetWeight(9)
	n := 0
	for range 1000 {
		if a, _ := w.Step(); a == heavy {
			n++
		}
	}
	if n < 850 || n > 950 {
		t.Errorf("weight 9 against 1: heavy got %d of 1000 steps, want about 900", n)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRunUntilIdleReports(t *testing.T) {
	t.Run("check", func(t *testing.T) {
		w := sim.New(sim.Options{Seed: 77})
		s := w.Store()
		w.Spawn("writer", 0, func(ctx context.Context) error {
			for i := range 5 {
				if err := put(ctx, s, fmt.Sprint("k", i), "v"); err != nil {
					return err
				}
			}
			return nil
		})
		err := w.RunUntilIdle(0, func() error {
			if _, ok := s.Peek("k2"); ok {
				return errors.New("k2 exists")
			}
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "seed 77, step 3 (actor writer): k2 exists") {
			t.Errorf("got %v, want the seed, the step and the actor", err)
		}
	})
	t.Run("livelock", func(t *testing.T) {
		w := sim.New(sim.Options{Seed: 8})
		w.Spawn("spinner", 0, func(ctx context.Context) error {
			for ctx.Err() == nil {
				_, _ = w.Store().Stat(ctx, "k")
			}
			return nil
		})
		defer w.Close()
		err := w.RunUntilIdle(100, nil)
		if err == nil || !strings.Contains(err.Error(), "seed 8: still busy after 100 steps") {
			t.Errorf("got %v, want still busy", err)
		}
	})
	t.Run("panic", func(t *testing.T) {
		w := sim.New(sim.Options{Seed: 9})
		w.Spawn("buggy", 0, func(ctx context.Context) error {
			_ = put(ctx, w.Store(), "k", "v")
			var m map[string]int
			m["boom"]++
			return nil
		})
		err := w.RunUntilIdle(0, nil)
		if err == nil || !strings.Contains(err.Error(), "seed 9, step 1: actor buggy panicked: assignment to entry in nil map") {
			t.Errorf("got %v, want the panic with the seed and the step", err)
		}
	})
}

func TestWatchdog(t *testing.T) {
	t.Run("step", func(t *testing.T) {
		w := sim.New(sim.Options{Seed: 4, Watchdog: 50 * time.Millisecond})
		release := make(chan struct{})
		w.Spawn("blocker", 0, func(ctx context.Context) error {
			_ = put(ctx, w.Store(), "k", "v")
			<-release // a bug: not a store request
			return nil
		})
		err := w.RunUntilIdle(0, nil)
		close(release)
		if !errors.Is(err, sim.ErrStuck) || !strings.Contains(err.Error(), "actor blocker") {
			t.Errorf("got %v, want ErrStuck naming the actor", err)
		}
		if err2 := w.RunUntilIdle(0, nil); !errors.Is(err2, sim.ErrStuck) {
			t.Errorf("RunUntilIdle on a failed World: got %v, want the failure again", err2)
		}
	})
	t.Run("spawn", func(t *testing.T) {
		w := sim.New(sim.Options{Watchdog: 50 * time.Millisecond})
		release := make(chan struct{})
		defer close(release)
		defer func() {
			err, _ := recover().(error)
			if !errors.Is(err, sim.ErrStuck) || !strings.Contains(err.Error(), "actor early") {
				t.Errorf("Spawn of an actor that blocks at once: got panic %v, want ErrStuck naming the actor", err)
			}
		}()
		w.Spawn("early", 0, func(ctx context.Context) error {
			<-release
			return nil
		})
	})
}

func TestOverlapDetected(t *testing.T) {
	w := sim.New(sim.Options{})
	s := w.Store()
	w.Spawn("two-goroutines", 0, func(ctx context.Context) error {
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		for range 2 {
			ready.Add(1)
			done.Go(func() {
				ready.Done()
				<-start
				// Until the World notices: then every request fails.
				for {
					if _, err := s.Stat(ctx, "k"); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return
					}
				}
			})
		}
		ready.Wait()
		close(start)
		done.Wait()
		return nil
	})
	err := w.RunUntilIdle(100_000, nil)
	if !errors.Is(err, sim.ErrOverlap) || !strings.Contains(err.Error(), "actor two-goroutines") {
		t.Errorf("got %v, want ErrOverlap naming the actor", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestTraceLimit(t *testing.T) {
	w := sim.New(sim.Options{TraceLimit: 4})
	s := w.Store()
	w.Spawn("a", 0, func(ctx context.Context) error {
		for i := range 10 {
			if err := put(ctx, s, fmt.Sprint("k", i), "v"); err != nil {
				return err
			}
		}
		return nil
	})
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	got := w.Trace()
	want := `sim seed 0: 10 steps, 1 actors, virtual time 2026-01-01T00:00:00Z
(8 earlier lines dropped)
     8 +0s        a          put k7 1B: ok etag 8
     9 +0s        a          put k8 1B: ok etag 9
    10 +0s        a          put k9 1B: ok etag a
    10 +0s        a          returned
`
	if got != want {
		t.Errorf("Trace:\n got %s\nwant %s", got, want)
	}
}

func TestCanceledContext(t *testing.T) {
	w := sim.New(sim.Options{})
	s := w.Store()
	var err error
	w.Spawn("a", 0, func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		err = put(ctx, s, "k", "v")
		return nil
	})
	if err2 := w.RunUntilIdle(0, nil); err2 != nil {
		t.Fatal(err2)
	}
	if !errors.Is(err, context.Canceled) || errors.Is(err, sim.ErrCrashed) {
		t.Errorf("Put with a cancelled context: got %v, want context.Canceled", err)
	}
}
