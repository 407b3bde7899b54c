package cassback

import (
	"context"
	"errors"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/gc"
)

// session is a registration of this process in the store, which the
// garbage collector honours: no pack of a condemned set it has not
// acknowledged is deleted while it is live (docs/design.md §4). A
// background task renews it every heartbeat.
type session struct {
	s    *gc.Session
	stop func() // stops the heartbeat and waits for it
	done chan error
}

// startSession registers a session of the given kind, starts its
// heartbeat, and returns it with the condemned sets open when it started.
// onNew (if not nil) hears of each set condemned later, from the
// heartbeat, before the session acknowledges anything.
func (r *Repo) startSession(ctx context.Context, host string, kind gc.Kind, onNew func([]gc.CondemnedSet)) (*session, []gc.CondemnedSet, error) {
	s, sets, err := gc.StartSession(ctx, r.Store, host, kind, r.GC)
	if err != nil {
		return nil, nil, err
	}
	out := &session{s: s, done: make(chan error, 1)}
	out.stop = r.spawn(context.WithoutCancel(ctx), host+"-heartbeat", func(ctx context.Context) {
		out.done <- s.Heartbeat(ctx, func(fresh []gc.CondemnedSet) {
			r.Log.Info("packs condemned by a purge are no longer used for deduplication", "sets", len(fresh))
			if onNew != nil {
				onNew(fresh)
			}
		})
	})
	return out, sets, nil
}

// packsOf returns the packs of condemned sets.
func packsOf(sets []gc.CondemnedSet) []chunk.ID {
	var packs []chunk.ID
	for _, s := range sets {
		packs = append(packs, s.Packs...)
	}
	return packs
}

// check fails if the session was revoked or its lease may have lapsed: a
// writer checks just before writing manifests, to spare useless work.
func (s *session) check() error { return s.s.Check() }

// end stops the heartbeat and removes the session.
func (s *session) end(ctx context.Context) error {
	s.stop()
	herr := <-s.done
	err := s.s.End(context.WithoutCancel(ctx))
	if errors.Is(herr, gc.ErrRevoked) {
		return herr
	}
	return err
}
