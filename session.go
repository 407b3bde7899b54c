package cassback

import (
	"context"
	"errors"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index/gc"
)

// session is a registration of this process in the store, which the
// garbage collector honours: no pack condemned after it started is deleted
// until it ends or acknowledges, and it never uses packs condemned before
// (docs/design.md §4). A goroutine renews it every heartbeat.
type session struct {
	s      *gc.Session
	cancel context.CancelFunc
	done   chan error
}

// startSession registers a session of the given kind and excludes the
// packs of every condemned set, now and as new ones appear; onNew (if not
// nil) hears of each new set after its packs are excluded.
func (r *Repo) startSession(ctx context.Context, host string, kind gc.Kind, onNew func([]gc.CondemnedSet)) (*session, error) {
	s, sets, err := gc.StartSession(ctx, r.Store, host, kind, r.GC)
	if err != nil {
		return nil, err
	}
	r.exclude(sets)
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	out := &session{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() {
		out.done <- s.Heartbeat(hctx, func(fresh []gc.CondemnedSet) {
			r.exclude(fresh)
			r.Log.Info("packs condemned by a purge are no longer used for deduplication", "sets", len(fresh))
			if onNew != nil {
				onNew(fresh)
			}
		})
	}()
	return out, nil
}

func (r *Repo) exclude(sets []gc.CondemnedSet) {
	var packs []chunk.ID
	for _, s := range sets {
		packs = append(packs, s.Packs...)
	}
	if len(packs) > 0 {
		r.Index.Exclude(packs)
	}
}

// check fails if the session was revoked or its lease may have lapsed: a
// writer checks just before writing manifests.
func (s *session) check() error { return s.s.Check() }

// ack acknowledges condemned sets (gc.Session.Ack).
func (s *session) ack(ids []string) { s.s.Ack(ids) }

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
