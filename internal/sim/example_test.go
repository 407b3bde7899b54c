package sim_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/cassback/cassback/internal/sim"
)

// A writer and a purger race, over many seeds; the check after every step
// is the invariant a protocol test would state about its own keys. The
// purger here is wrong on purpose: it trusts a Stat made before the writer
// published its manifest.
func Example() {
	for seed := range uint64(100) {
		w := run(seed)
		if err := w.RunUntilIdle(100, func() error { return check(w.Store()) }); err != nil {
			fmt.Println(err)
			fmt.Print(w.Trace())
			return
		}
	}
	// Output:
	// sim: seed 0, step 5 (actor purger): manifest needs data/1, which is gone
	// sim seed 0: 5 steps, 2 actors, virtual time 2026-01-01T00:00:00Z
	//      0 +0s        writer     spawn
	//      0 +0s        purger     spawn skew 1m0s
	//      1 +0s        writer     put data/1 1B: ok etag 1
	//      2 +0s        writer     put data/2 1B: ok etag 2
	//      3 +0s        purger     stat manifest: not found
	//      4 +0s        writer     put-if manifest 13B if-none-match: ok etag 3
	//      4 +0s        writer     returned
	//      5 +0s        purger     delete-many data/1: ok
	//      5 +0s        purger     returned
}

func run(seed uint64) *sim.World {
	w := sim.New(sim.Options{Seed: seed})
	s := w.Store()
	w.Spawn("writer", 0, func(ctx context.Context) error {
		for _, k := range []string{"data/1", "data/2"} {
			if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
				return err
			}
		}
		_, err := s.PutIf(ctx, "manifest", []byte("data/1 data/2"), "")
		return err
	})
	w.Spawn("purger", time.Minute, func(ctx context.Context) error {
		if _, err := s.Stat(ctx, "manifest"); !errors.Is(err, fs.ErrNotExist) {
			return err // referenced: keep everything
		}
		return s.DeleteMany(ctx, []string{"data/1"})
	})
	return w
}

// check is the invariant: every key the manifest names exists.
func check(s *sim.Store) error {
	m, ok := s.Peek("manifest")
	if !ok {
		return nil
	}
	for _, k := range strings.Fields(string(m.Data)) {
		if _, ok := s.Peek(k); !ok {
			return fmt.Errorf("manifest needs %s, which is gone", k)
		}
	}
	return nil
}

// A session's heartbeat runs beside its writer as a second actor, which
// the writer spawns, on the writer's clock; the writer stops it with the
// CancelFunc of the heartbeat's context when done. Time jumps from one
// wake time to the next. The writer calls the CancelFunc itself, in its
// step: a cancellation passed on by a goroutine of its own would reach the
// heartbeat at a moment that depends on real time.
func ExampleActor_Clock() {
	w := sim.New(sim.Options{Seed: 1})
	s := w.Store()
	w.Spawn("writer", 0, func(ctx context.Context) error {
		clock := sim.ActorOf(ctx).Clock()
		var stopHeartbeat context.CancelFunc
		w.Spawn("heartbeat", 0, func(ctx context.Context) error {
			ctx, stopHeartbeat = context.WithCancel(ctx)
			for {
				// Sleep parks the actor ctx carries: the heartbeat.
				if err := clock.Sleep(ctx, 5*time.Minute); err != nil {
					return nil
				}
				if err := s.Put(ctx, "session", strings.NewReader(clock.Now().Format("15:04")), 5); err != nil {
					return err
				}
			}
		})
		for _, k := range []string{"data/1", "data/2"} {
			if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
				return err
			}
			if err := clock.Sleep(ctx, 7*time.Minute); err != nil { // the work takes time
				return err
			}
		}
		stopHeartbeat()
		return nil
	})
	if err := w.RunUntilIdle(100, nil); err != nil {
		fmt.Println(err)
	}
	fmt.Print(w.Trace())
	// Output:
	// sim seed 1: 9 steps, 2 actors, virtual time 2026-01-01T00:14:00Z
	//      0 +0s        writer     spawn
	//      0 +0s        heartbeat  spawn
	//      1 +0s        writer     put data/1 1B: ok etag 1
	//      1 +5m0s      -          advance 5m0s to wake heartbeat
	//      2 +5m0s      heartbeat  sleep 5m0s from +0s: woke
	//      3 +5m0s      heartbeat  put session 5B: ok etag 2
	//      3 +7m0s      -          advance 2m0s to wake writer
	//      4 +7m0s      writer     sleep 7m0s from +0s: woke
	//      5 +7m0s      writer     put data/2 1B: ok etag 3
	//      5 +10m0s     -          advance 3m0s to wake heartbeat
	//      6 +10m0s     heartbeat  sleep 5m0s from +5m0s: woke
	//      7 +10m0s     heartbeat  put session 5B: ok etag 4
	//      7 +14m0s     -          advance 4m0s to wake writer
	//      8 +14m0s     writer     sleep 7m0s from +7m0s: woke
	//      8 +14m0s     writer     returned
	//      9 +14m0s     heartbeat  sleep 5m0s from +10m0s: canceled
	//      9 +14m0s     heartbeat  returned
}
