package sim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/internal/sim"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// TestStoreConformance runs the shared suite on the store without actors,
// where every request is applied at once.
func TestStoreConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts sim.Options
	}{
		{"default", sim.Options{}},
		{"no-conditional", sim.Options{NoConditional: true}},
		// Requests without an actor are never hit by faults and stay
		// atomic; List pages of one key see the suite's writes as S3 would.
		{"weak-options", sim.Options{ListPage: 1, NonAtomicConditional: true, WriterClock: true,
			Faults: sim.Faults{PError: 1}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			remotetest.Run(t, func(*testing.T) remote.Store {
				opts := tt.opts
				// The suite checks ModTime against its own clock.
				opts.Start = time.Now()
				return sim.New(opts).Store()
			})
		})
	}
}

func put(ctx context.Context, s remote.Store, key, value string) error {
	return s.Put(ctx, key, strings.NewReader(value), int64(len(value)))
}

func read(ctx context.Context, s remote.Store, key string, offset, length int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// runOp applies one random operation to s and describes its result.
func runOp(ctx context.Context, s *sim.Store, r *rand.Rand) string {
	keys := []string{"a", "a/b", "a/c/d", "a/c/e", "a-b/x", "b", "b/c", "c/d/e/f"}
	prefixes := []string{"", "a", "a/", "a/c/", "b", "c/d/", "z"}
	key := keys[r.IntN(len(keys))]
	describe := func(what string, err error) string {
		if err != nil {
			return fmt.Sprintf("%s: error %v", what, err)
		}
		return what + ": ok"
	}
	switch r.IntN(9) {
	case 0, 1:
		v := strings.Repeat(key, r.IntN(4))
		return describe("put "+key, put(ctx, s, key, v))
	case 2:
		ifMatch := ""
		if r.IntN(2) == 0 {
			ifMatch = fmt.Sprintf("%x", r.IntN(12)+1)
		}
		etag, err := s.PutIf(ctx, key, []byte("cas "+key), ifMatch)
		return describe(fmt.Sprintf("put-if %s %q -> %q", key, ifMatch, etag), err)
	case 3:
		off, n := int64(r.IntN(6)), int64(r.IntN(8)-2)
		b, err := read(ctx, s, key, off, n)
		return describe(fmt.Sprintf("get %s %d %d -> %q", key, off, n, b), err)
	case 4:
		info, err := s.Stat(ctx, key)
		return describe(fmt.Sprintf("stat %s -> %+v", key, info), err)
	case 5:
		p := prefixes[r.IntN(len(prefixes))]
		var got []string
		err := s.List(ctx, p, func(info remote.Info) error {
			got = append(got, fmt.Sprintf("%s:%d:%s", info.Key, info.Size, info.ETag))
			return nil
		})
		return describe(fmt.Sprintf("list %q -> %v", p, got), err)
	case 6:
		p := prefixes[r.IntN(len(prefixes))]
		if p != "" && !strings.HasSuffix(p, "/") {
			p += "/"
		}
		dirs, err := s.ListDirs(ctx, p)
		return describe(fmt.Sprintf("list-dirs %q -> %q", p, dirs), err)
	case 7:
		return describe("delete "+key, s.Delete(ctx, key))
	default:
		ks := []string{key, keys[r.IntN(len(keys))], "missing"}
		return describe(fmt.Sprintf("delete-many %q", ks), s.DeleteMany(ctx, ks))
	}
}

// TestScheduledMatchesDirect runs the same random operations once directly
// and once through an actor, and wants the same results and contents: the
// scheduled path (pages of List included) is the same store.
func TestScheduledMatchesDirect(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			const ops = 150
			direct := sim.New(sim.Options{Seed: seed}).Store()
			var want []string
			r := rand.New(rand.NewPCG(seed, 1))
			for range ops {
				want = append(want, runOp(t.Context(), direct, r))
			}

			w := sim.New(sim.Options{Seed: seed, ListPage: 2})
			var got []string
			r = rand.New(rand.NewPCG(seed, 1))
			w.Spawn("client", 0, func(ctx context.Context) error {
				for range ops {
					got = append(got, runOp(ctx, w.Store(), r))
				}
				return nil
			})
			if err := w.RunUntilIdle(0, nil); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("op %d through the scheduler:\n got %s\nwant %s", i, got[i], want[i])
				}
			}
			if g, w := snapshot(w.Store()), snapshot(direct); g != w {
				t.Errorf("contents:\n got %s\nwant %s", g, w)
			}
		})
	}
}

func snapshot(s *sim.Store) string {
	var b strings.Builder
	for _, o := range s.Snapshot("") {
		fmt.Fprintf(&b, "%s=%q(%s) ", o.Key, o.Data, o.ETag)
	}
	return b.String()
}

func TestPeekAndSnapshot(t *testing.T) {
	s := sim.New(sim.Options{}).Store()
	for _, k := range []string{"b/2", "a", "b/1", "c"} {
		if err := put(t.Context(), s, k, "v"+k); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, o := range s.Snapshot("b/") {
		got = append(got, o.Key+"="+string(o.Data))
	}
	if want := "b/1=vb/1 b/2=vb/2"; strings.Join(got, " ") != want {
		t.Errorf("Snapshot(b/): got %q, want %q", got, want)
	}
	o, ok := s.Peek("c")
	if !ok || string(o.Data) != "vc" || o.Size != 2 || o.ETag != "4" {
		t.Errorf("Peek(c): got %+v, %v; want vc, size 2, etag 4", o, ok)
	}
	if _, ok := s.Peek("b"); ok {
		t.Errorf("Peek(b), a directory: got an object, want none")
	}
	rc, err := s.Get(t.Context(), "c", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got := remote.BodyETag(rc); got != "4" {
		t.Errorf("Get body ETag: got %q, want 4", got)
	}
}

// TestWithRetry runs the retrying decorator inside an actor: with backoff
// of a nanosecond it does not wait on real time, so it keeps the run
// deterministic, and it recognises a create whose response was lost.
func TestWithRetry(t *testing.T) {
	run := func(seed uint64) (string, error) {
		w := sim.New(sim.Options{Seed: seed, Faults: sim.Faults{PError: 0.3, PLostResponse: 0.3}})
		st := remote.WithRetry(w.Store(), remote.RetryOptions{Attempts: 20, BaseDelay: 1, MaxDelay: 1})
		var etag string
		var putErr error
		w.Spawn("client", 0, func(ctx context.Context) error {
			etag, putErr = st.(remote.Conditional).PutIf(ctx, "lease", []byte("mine"), "")
			if putErr != nil {
				return putErr
			}
			_, err := read(ctx, st, "lease", 0, -1)
			return err
		})
		if err := w.RunUntilIdle(1000, nil); err != nil {
			t.Fatal(err)
		}
		if o, _ := w.Store().Peek("lease"); putErr == nil && o.ETag != etag {
			t.Errorf("seed %d: PutIf returned etag %q, store has %q", seed, etag, o.ETag)
		}
		return w.Trace(), putErr
	}
	lost := 0
	for seed := range uint64(20) {
		trace, err := run(seed)
		if err != nil {
			t.Errorf("seed %d: PutIf through WithRetry: %v\n%s", seed, err, trace)
		}
		if again, _ := run(seed); again != trace {
			t.Fatalf("seed %d: WithRetry made the run nondeterministic: %s", seed, firstDiff(trace, again))
		}
		if strings.Contains(trace, "put-if lease 4B if-none-match: ok etag 1; FAULT response lost") {
			lost++
		}
	}
	if lost == 0 {
		t.Errorf("no seed lost the response of the create; the test does not test the retry")
	}
}

func TestDeleteMany(t *testing.T) {
	s := sim.New(sim.Options{}).Store()
	for _, k := range []string{"p/1", "p/2", "p/3"} {
		if err := put(t.Context(), s, k, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteMany(t.Context(), []string{"p/1", "p/3", "missing"}); err != nil {
		t.Fatalf("DeleteMany: %v", err)
	}
	if got := snapshot(s); got != `p/2="x"(2) ` {
		t.Errorf("after DeleteMany: got %s, want only p/2", got)
	}
	if err := s.DeleteMany(t.Context(), []string{"p/2", "bad//key"}); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("DeleteMany with an invalid key: got %v, want ErrInvalidKey", err)
	}
	if _, ok := s.Peek("p/2"); !ok {
		t.Errorf("DeleteMany with an invalid key deleted p/2; want nothing deleted")
	}
	if err := s.DeleteMany(t.Context(), nil); err != nil {
		t.Errorf("DeleteMany(nil): got %v, want nil", err)
	}
}

func TestPutIfKeepsNoReferenceToData(t *testing.T) {
	w := sim.New(sim.Options{Faults: sim.Faults{PDelay: 1}, MaxDelay: 1})
	s := w.Store()
	data := []byte("original")
	w.Spawn("writer", 0, func(ctx context.Context) error {
		_, err := s.PutIf(ctx, "k", data, "")
		copy(data, "CHANGED!") // allowed once PutIf has returned
		return err
	})
	if err := w.RunUntilIdle(0, nil); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Peek("k"); !bytes.Equal(o.Data, []byte("original")) {
		t.Errorf("delayed PutIf landed %q, want %q", o.Data, "original")
	}
}
