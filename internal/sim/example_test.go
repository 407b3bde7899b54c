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
