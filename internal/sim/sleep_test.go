package sim_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/sim"
)

// The clock a backup session takes; Actor.Clock must satisfy it.
var _ interface {
	Now() time.Time
	Sleep(context.Context, time.Duration) error
} = sim.Clock{}

// sleeper spawns an actor that sleeps d once and records when it woke (in
// virtual time) and what Sleep returned.
type sleeper struct {
	*sim.Actor
	woke time.Time
	err  error
}

func spawnSleeper(w *sim.World, name string, d time.Duration) *sleeper {
	s := &sleeper{}
	s.Actor = w.Spawn(name, 0, func(ctx context.Context) error {
		s.err = w.Sleep(ctx, d)
		s.woke = w.Now()
		return s.err
	})
	return s
}

// TestSleepAdvance: a sleeper is runnable from the instant virtual time
// reaches its wake time, and not a nanosecond before. The horizon keeps
// Step from moving time itself.
func TestSleepAdvance(t *testing.T) {
	w := sim.New(sim.Options{Start: start, Horizon: time.Minute})
	s := spawnSleeper(w, "sleeper", 5*time.Minute)
	w.Advance(5*time.Minute - time.Nanosecond)
	if a, ok := w.Step(); ok {
		t.Fatalf("Step a nanosecond before the wake time: got %s, want nothing to do", a.Name())
	}
	w.Advance(time.Nanosecond)
	if a, ok := w.Step(); !ok || a != s.Actor {
		t.Fatalf("Step at the wake time: got %v, %v; want the sleeper", a, ok)
	}
	if want := start.Add(5 * time.Minute); s.err != nil || !s.woke.Equal(want) {
		t.Errorf("Sleep: got %v at %v, want nil at %v", s.err, s.woke, want)
	}
	if want := "sleeper    sleep 5m0s from +0s: woke"; !strings.Contains(w.Trace(), want) {
		t.Errorf("trace:\n%s\nwant a line with %q", w.Trace(), want)
	}
}

// TestSleepStepTime: time that passes with other actors' steps wakes a
// sleeper; the heavy weight makes the pick certain at the first chance.
func TestSleepStepTime(t *testing.T) {
	w := sim.New(sim.Options{Start: start, Seed: 2, StepTime: func(*rand.Rand) time.Duration { return time.Second }})
	st := w.Store()
	var beforeWake int
	w.Spawn("ticker", 0, func(ctx context.Context) error {
		for range 20 {
			if _, err := st.Stat(ctx, "k"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	s := spawnSleeper(w, "sleeper", 10*time.Second)
	s.SetWeight(1_000_000)
	for {
		a, ok := w.Step()
		if !ok {
			break
		}
		if a == s.Actor {
			break
		}
		beforeWake++
	}
	if want := start.Add(10 * time.Second); s.err != nil || !s.woke.Equal(want) {
		t.Errorf("Sleep: got %v at %v, want nil at %v", s.err, s.woke, want)
	}
	if beforeWake != 10 {
		t.Errorf("ticker steps before the sleeper woke: got %d, want 10 (one second each)", beforeWake)
	}
	if strings.Contains(w.Trace(), "to wake") {
		t.Errorf("time jumped while the ticker could run:\n%s", w.Trace())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSleepJump: with only sleepers left, Step moves time to the earliest
// wake time, and sleepers wake in wake-time order whatever the seed.
func TestSleepJump(t *testing.T) {
	for seed := range uint64(10) {
		w := sim.New(sim.Options{Start: start, Seed: seed})
		var order []string
		for _, tt := range []struct {
			name string
			d    time.Duration
		}{{"seven", 7 * time.Minute}, {"three", 3 * time.Minute}, {"five", 5 * time.Minute}} {
			w.Spawn(tt.name, time.Hour, func(ctx context.Context) error {
				if err := w.Sleep(ctx, tt.d); err != nil {
					return err
				}
				order = append(order, fmt.Sprintf("%s@%v", tt.name, w.Now().Sub(start)))
				return nil
			})
		}
		if err := w.RunUntilIdle(0, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(order, " "), "three@3m0s five@5m0s seven@7m0s"; got != want {
			t.Fatalf("seed %d: woke %s, want %s", seed, got, want)
		}
		if got, want := w.Steps(), 3; got != want {
			t.Errorf("seed %d: steps: got %d, want %d, one per sleeper", seed, got, want)
		}
		for _, want := range []string{
			"     0 +3m0s      -          advance 3m0s to wake three\n",
			"     1 +3m0s      three      sleep 3m0s from +0s: woke\n",
			"     2 +7m0s      -          advance 2m0s to wake seven\n",
		} {
			if !strings.Contains(w.Trace(), want) {
				t.Fatalf("seed %d: trace:\n%s\nwant the line %q", seed, w.Trace(), want)
			}
		}
	}
}

// TestSleepTies: sleepers due at once are picked by the seed, and the
// jump names them all.
func TestSleepTies(t *testing.T) {
	firsts := map[string]int{}
	for seed := range uint64(20) {
		w := sim.New(sim.Options{Seed: seed})
		var order []string
		for _, name := range []string{"a", "b"} {
			w.Spawn(name, 0, func(ctx context.Context) error {
				err := w.Sleep(ctx, time.Minute)
				order = append(order, name)
				return err
			})
		}
		if err := w.RunUntilIdle(0, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(w.Trace(), "advance 1m0s to wake a, b") {
			t.Fatalf("seed %d: trace:\n%s", seed, w.Trace())
		}
		firsts[order[0]]++
	}
	if firsts["a"] == 0 || firsts["b"] == 0 {
		t.Errorf("first of two sleepers due at once over 20 seeds: got %v, want both", firsts)
	}
}

// TestSleepYield: a sleep of zero (or less) is a scheduling point that
// does not move time.
func TestSleepYield(t *testing.T) {
	w := sim.New(sim.Options{Start: start, Seed: 1})
	var log []string
	for _, name := range []string{"a", "b"} {
		w.Spawn(name, 0, func(ctx context.Context) error {
			for i := range 20 {
				log = append(log, name)
				if err := w.Sleep(ctx, time.Duration(-i%2)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	if !w.Now().Equal(start) || strings.Contains(w.Trace(), "to wake") {
		t.Errorf("yields moved time to %v:\n%s", w.Now(), w.Trace())
	}
	if got := w.Steps(); got != 40 {
		t.Errorf("steps: got %d, want 40, one per yield", got)
	}
	if s := strings.Join(log, ""); !strings.Contains(s, "ab") || !strings.Contains(s, "ba") {
		t.Errorf("yields never interleaved the actors: %s", s)
	}
}

func TestSleepWithoutActor(t *testing.T) {
	w := sim.New(sim.Options{Start: start})
	if err := w.Sleep(t.Context(), time.Hour); err != nil || !w.Now().Equal(start) {
		t.Errorf("Sleep without an actor: got %v, time %v; want nil at once, time unmoved", err, w.Now())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep without an actor, cancelled: got %v, want context.Canceled", err)
	}
}

func TestSleepCrash(t *testing.T) {
	w := sim.New(sim.Options{Start: start})
	var afterErr error
	var s *sim.Actor
	var sleepErr error
	s = w.Spawn("sleeper", 0, func(ctx context.Context) error {
		sleepErr = w.Sleep(ctx, time.Hour)
		afterErr = w.Sleep(context.WithoutCancel(ctx), time.Hour)
		return sleepErr
	})
	s.Crash()
	select {
	case <-s.Done():
	default:
		t.Fatalf("Crash returned before the sleeper did")
	}
	for what, err := range map[string]error{"Sleep": sleepErr, "a later Sleep": afterErr, "Err": s.Err()} {
		if !errors.Is(err, sim.ErrCrashed) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s: got %v, want ErrCrashed and context.Canceled", what, err)
		}
	}
	if !w.Now().Equal(start) {
		t.Errorf("time after crashing a sleeper: got %v, want unmoved %v", w.Now(), start)
	}
	if want := "sleeper    crashed while asleep (sleep 1h0m0s)"; !strings.Contains(w.Trace(), want) {
		t.Errorf("trace:\n%s\nwant a line with %q", w.Trace(), want)
	}
	if a, ok := w.Step(); ok {
		t.Errorf("Step after the only sleeper crashed: got %s, want nothing to do", a.Name())
	}
}

// TestSleepPause: a paused sleeper sleeps past its wake time, and Step
// does not move time for it, until Resume.
func TestSleepPause(t *testing.T) {
	w := sim.New(sim.Options{Start: start, Seed: 3})
	paused := spawnSleeper(w, "paused", 5*time.Minute)
	other := spawnSleeper(w, "other", 8*time.Minute)
	paused.Pause()
	if a, ok := w.Step(); !ok || a != other.Actor {
		t.Fatalf("Step: got %v, %v; want other, the only unpaused sleeper", a, ok)
	}
	if want := start.Add(8 * time.Minute); !other.woke.Equal(want) {
		t.Errorf("other woke at %v, want %v: time must jump past the paused sleeper's wake time", other.woke, want)
	}
	if a, ok := w.Step(); ok {
		t.Fatalf("Step with only a paused sleeper: got %s, want nothing to do", a.Name())
	}
	w.Advance(time.Hour)
	if a, ok := w.Step(); ok {
		t.Fatalf("Step with a paused sleeper past its wake time: got %s, want nothing to do", a.Name())
	}
	paused.Resume()
	if a, ok := w.Step(); !ok || a != paused.Actor {
		t.Fatalf("Step after Resume: got %v, %v; want paused", a, ok)
	}
	if want := start.Add(68 * time.Minute); paused.err != nil || !paused.woke.Equal(want) {
		t.Errorf("resumed sleeper: got %v at %v, want nil at %v", paused.err, paused.woke, want)
	}
}

// TestSleepCanceled: cancelling the context of a sleep, by another actor
// or by the test, makes the sleeper runnable; it wakes in a step of its
// own with the context's error, and time does not jump to its wake time.
func TestSleepCanceled(t *testing.T) {
	for _, tt := range []struct {
		name     string
		byActor  bool
		wantStep int // the step at which the heartbeat returns
	}{
		{"by-actor", true, 4},
		{"by-test", false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := sim.New(sim.Options{Start: start, Horizon: 24 * time.Hour})
			st := w.Store()
			var stop context.CancelFunc
			var beats int
			var hbErr error
			hb := w.Spawn("hb", 0, func(ctx context.Context) error {
				ctx, stop = context.WithCancel(ctx)
				clock := sim.ActorOf(ctx).Clock()
				for {
					if hbErr = clock.Sleep(ctx, 5*time.Minute); hbErr != nil {
						return hbErr
					}
					beats++
				}
			})
			if tt.byActor {
				w.Spawn("writer", 0, func(ctx context.Context) error {
					for i := range 3 {
						if err := put(ctx, st, fmt.Sprint("k", i), "v"); err != nil {
							return err
						}
					}
					stop()
					return nil
				})
			} else {
				stop()
			}
			if err := w.RunUntilIdle(0, nil); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(hbErr, context.Canceled) || errors.Is(hbErr, sim.ErrCrashed) {
				t.Errorf("Sleep: got %v, want context.Canceled, not a crash", hbErr)
			}
			if beats != 0 || !w.Now().Equal(start) {
				t.Errorf("got %d beats, time %v; want none, time unmoved", beats, w.Now())
			}
			if want := fmt.Sprintf("%6d +0s        hb         sleep 5m0s from +0s: canceled", tt.wantStep); !strings.Contains(w.Trace(), want) {
				t.Errorf("trace:\n%s\nwant a line with %q", w.Trace(), want)
			}
			select {
			case <-hb.Done():
			default:
				t.Errorf("the heartbeat did not return")
			}
		})
	}
}

// TestSleepHorizon: RunUntilIdle with a heartbeat that never stops returns
// once the next beat is past the horizon; Close then crashes it.
func TestSleepHorizon(t *testing.T) {
	w := sim.New(sim.Options{Start: start, Horizon: time.Hour})
	st := w.Store()
	hb := w.Spawn("hb", time.Minute, func(ctx context.Context) error {
		clock := sim.ActorOf(ctx).Clock()
		for i := 0; ; i++ {
			if err := clock.Sleep(ctx, 5*time.Minute); err != nil {
				return err
			}
			if err := put(ctx, st, "session", clock.Now().Format(time.TimeOnly)); err != nil {
				return err
			}
		}
	})
	if err := w.RunUntilIdle(1000, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Steps(), 24; got != want {
		t.Errorf("steps: got %d, want %d (12 beats of a sleep and a put)", got, want)
	}
	if want := start.Add(time.Hour); !w.Now().Equal(want) {
		t.Errorf("time: got %v, want the horizon %v", w.Now(), want)
	}
	if o, _ := st.Peek("session"); string(o.Data) != "13:01:00" {
		t.Errorf("last beat: got %q, want 13:01:00 (the skewed clock at the horizon)", o.Data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := hb.Err(); !errors.Is(err, sim.ErrCrashed) {
		t.Errorf("heartbeat after Close: got %v, want ErrCrashed", err)
	}
}

// TestSleepDeterminism: a seed gives one trace with sleepers, jumps,
// cancellations and faulted requests interleaved.
func TestSleepDeterminism(t *testing.T) {
	run := func(seed uint64) string {
		opts := chaos(seed)
		opts.Horizon = 2 * time.Hour
		w := sim.New(opts)
		workload(w, 3, 30)
		st := w.Store()
		stops := map[int]context.CancelFunc{}
		for i := range 3 {
			w.Spawn(fmt.Sprint("hb-", i), 0, func(ctx context.Context) error {
				ctx, stops[i] = context.WithCancel(ctx)
				for {
					if err := w.Sleep(ctx, time.Duration(3+i)*time.Minute+time.Duration(w.Rand().IntN(1000))*time.Millisecond); err != nil {
						return err
					}
					if err := put(ctx, st, fmt.Sprint("session/", i), "beat"); err != nil && !errors.Is(err, sim.ErrTimeout) && !errors.Is(err, sim.ErrUnavailable) {
						return err
					}
				}
			})
		}
		w.Spawn("stopper", 0, func(ctx context.Context) error {
			if err := w.Sleep(ctx, 20*time.Minute); err != nil {
				return err
			}
			stops[1]()
			return nil
		})
		if err := w.RunUntilIdle(100_000, nil); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return w.Trace()
	}
	traces := map[string]uint64{}
	for seed := range uint64(6) {
		trace := run(seed)
		if again := run(seed); again != trace {
			t.Fatalf("seed %d: two runs gave different traces, first difference at %s", seed, firstDiff(trace, again))
		}
		for _, want := range []string{"to wake hb-", "sleep 4m", ": canceled", "crashed while asleep", "FAULT"} {
			if !strings.Contains(trace, want) {
				t.Errorf("seed %d: trace has no %q:\n%s", seed, want, trace)
			}
		}
		if other, ok := traces[trace]; ok {
			t.Errorf("seeds %d and %d gave the same trace, want different schedules", other, seed)
		}
		traces[trace] = seed
	}
}

// TestSleepOverlap: a sleep counts as a request for the one-goroutine
// rule.
func TestSleepOverlap(t *testing.T) {
	w := sim.New(sim.Options{})
	w.Spawn("two-goroutines", 0, func(ctx context.Context) error {
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		for range 2 {
			ready.Add(1)
			done.Go(func() {
				ready.Done()
				<-start
				// Until the World notices: then every sleep fails.
				for w.Sleep(ctx, 0) == nil {
				}
			})
		}
		ready.Wait()
		close(start)
		done.Wait()
		return nil
	})
	err := w.RunUntilIdle(100_000, nil)
	if !errors.Is(err, sim.ErrOverlap) || !strings.Contains(err.Error(), "actor two-goroutines made a sleep 0s request") {
		t.Errorf("got %v, want ErrOverlap naming the actor and the sleep", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
