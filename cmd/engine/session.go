package engine

import (
	"context"
	"errors"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
)

// session is a registration of this process in the store, which the
// garbage collector honours: no pack condemned after it started is deleted
// until it ends, and it never uses packs condemned before (docs/design.md §4).
type session struct {
	s      *index.Session
	cancel context.CancelFunc
	done   chan error
}

// startSession registers a session of the given kind and excludes the
// packs of every condemned set, now and as new ones appear.
func (r *Repo) startSession(ctx context.Context, host, kind string) (*session, error) {
	s, runs, err := index.StartSession(ctx, r.Store, host, kind, r.GC)
	if err != nil {
		return nil, err
	}
	r.exclude(runs)
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	out := &session{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() {
		out.done <- s.Heartbeat(hctx, func(fresh []index.Run) {
			r.exclude(fresh)
			r.Log.Info("packs condemned by a purge are no longer used for deduplication", "sets", len(fresh))
		})
	}()
	return out, nil
}

func (r *Repo) exclude(runs []index.Run) {
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
	if errors.Is(herr, index.ErrRevoked) {
		return herr
	}
	return err
}
