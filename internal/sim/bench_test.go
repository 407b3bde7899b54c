package sim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/sim"
)

// BenchmarkStep measures one scheduled request: the pick, the store
// operation, the trace entry and the two goroutine handoffs. In the sleep
// case every actor sleeps in a loop, so a step also moves time to the next
// wake time whenever all of them sleep.
func BenchmarkStep(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 1<<10)
	for _, bc := range []struct {
		name   string
		actors int
		op     func(ctx context.Context, w *sim.World, s *sim.Store, i int) error
	}{
		{"stat", 4, func(ctx context.Context, _ *sim.World, s *sim.Store, i int) error {
			_, err := s.Stat(ctx, "k")
			return err
		}},
		{"put-1KiB", 4, func(ctx context.Context, _ *sim.World, s *sim.Store, i int) error {
			return s.Put(ctx, fmt.Sprint("k/", i%64), bytes.NewReader(data), int64(len(data)))
		}},
		{"stat-32-actors", 32, func(ctx context.Context, _ *sim.World, s *sim.Store, i int) error {
			_, err := s.Stat(ctx, "k")
			return err
		}},
		{"sleep", 4, func(ctx context.Context, w *sim.World, _ *sim.Store, i int) error {
			return w.Sleep(ctx, time.Duration(1+i%3)*time.Second)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := sim.New(sim.Options{Seed: 1})
			s := w.Store()
			for range bc.actors {
				w.Spawn("a", 0, func(ctx context.Context) error {
					for i := 0; ctx.Err() == nil; i++ {
						if err := bc.op(ctx, w, s, i); err != nil && !errors.Is(err, fs.ErrNotExist) {
							return err
						}
					}
					return nil
				})
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := w.Step(); !ok {
					b.Fatal("no actor waits")
				}
			}
			b.StopTimer()
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkSchedule measures a whole short run as the protocol tests will
// make thousands of: a new World, 4 actors, 200 requests with faults.
func BenchmarkSchedule(b *testing.B) {
	b.ReportAllocs()
	seed := uint64(0)
	for b.Loop() {
		seed++
		w := sim.New(chaos(seed))
		workload(w, 4, 50)
		if err := w.RunUntilIdle(10_000, func() error { _ = w.Store().Snapshot(""); return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
