package cassback

import (
	"context"
	"errors"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/gc"
)

// session is a registration of this process in the store, which the
// garbage collector honours: no pack condemned after it started is deleted
// until it ends, and it never uses packs condemned before (docs/design.md §4).
type session struct {
	s      *gc.Session
	cancel context.CancelFunc
	done   chan error
}

// startSession registers a session of the given kind and excludes the
// packs of every condemned set, now and as new ones appear.
func (r *Repo) startSession(ctx context.Context, host string, kind gc.Kind) (*session, error) {
	s, runs, err := gc.StartSession(ctx, r.Store, host, kind, r.GC)
	if err != nil {
		return nil, err
	}
	r.exclude(runs)
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	out := &session{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() {
		out.done <- s.Heartbeat(hctx, func(fresh []gc.CondemnedSet) {
			r.exclude(fresh)
			r.Log.Info("packs condemned by a purge are no longer used for deduplication", "sets", len(fresh))
		})
	}()
	return out, nil
}

func (r *Repo) exclude(runs []gc.CondemnedSet) {
	var packs []chunk.ID
	for _, run := range runs {
		packs = append(packs, run.Packs...)
	}
	if len(packs) > 0 {
		r.Index.Exclude(packs)
	}
}

// check fails if the session was revoked or its lease may have lapsed: a
// writer checks just before writing manifests.
func (s *session) check() error { return s.s.Check() }

// end stops the heartbeat and removes the session.
func (s *session) end(ctx context.Context) error {
	s.cancel()
	herr := <-s.done
	err := s.s.End(context.WithoutCancel(ctx))
	if errors.Is(herr, gc.ErrRevoked) {
		return herr
	}
	return err
}
