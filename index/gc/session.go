package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/remote"
)

// ErrRevoked reports that the purger revoked a session because it had not
// renewed its lease: the session must stop and write no manifest.
var ErrRevoked = errors.New("backup session revoked (its lease expired)")

// Kind says what a session does.
type Kind string

// The kinds of session.
const (
	KindBackup   Kind = "backup"
	KindRestore  Kind = "restore"
	KindValidate Kind = "validate"
)

// State is a session's state in the store.
type State string

const (
	// Live sessions renew their lease; the collector honours them.
	Live State = "live"
	// Revoked sessions were stale when a purge marked them so by
	// compare-and-swap; their writer finds out at its next renewal.
	Revoked State = "revoked"
)

// sessionDoc is the content of a session object.
type sessionDoc struct {
	Host    string    `json:"host"`
	ID      string    `json:"id"`
	Kind    Kind      `json:"kind"`
	State   State     `json:"state"`
	Started time.Time `json:"started,omitempty"`
	Acked   []string  `json:"acked,omitempty"` // condemned sets this session will never reference
	Seq     int       `json:"seq"`
}

// Session is a backup's (or a reader's) registration in the store. While
// it lives, the collector deletes no pack that was condemned after the
// session started unless the session acknowledged it. A Session renews its
// lease with compare-and-swap, so a session the purger revoked finds out
// at its next renewal and must stop (ErrRevoked).
type Session struct {
	st   remote.Store
	key  string
	opts Options

	mu      sync.Mutex
	doc     sessionDoc
	etag    string
	renewed time.Time // local clock, last successful renewal
	known   map[string]bool
	err     error
}

// StartSession registers a session and returns it with the condemned sets
// open at that moment: the caller must not deduplicate against their packs.
// The sets are read after the session is visible, which is what makes the
// collector's sweep safe (docs/design.md §4).
func StartSession(ctx context.Context, st remote.Store, host string, kind Kind, opts Options) (*Session, []CondemnedSet, error) {
	s := &Session{st: st, opts: opts.WithDefaults(), known: map[string]bool{}}
	s.doc = sessionDoc{Host: host, ID: randomID(), Kind: kind, State: Live}
	s.key = sessionPrefix + host + "/" + s.doc.ID
	b, _ := json.Marshal(s.doc)
	etag, err := putIf(ctx, st, s.key, b, "")
	if err != nil {
		return nil, nil, fmt.Errorf("register session: %w", err)
	}
	info, err := st.Stat(ctx, s.key)
	if err != nil {
		return nil, nil, fmt.Errorf("register session: %w", err)
	}
	s.etag, s.renewed = etag, time.Now()
	s.doc.Started = info.ModTime
	sets, err := ListCondemned(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range sets {
		s.known[r.ID] = true
	}
	// Started and the sets it saw at start (which it excludes, so it may
	// acknowledge them at once) go into the object.
	s.doc.Acked = slices.Sorted(maps.Keys(s.known))
	if err := s.write(ctx); err != nil {
		return nil, nil, err
	}
	return s, sets, nil
}

// Key returns the session's store key.
func (s *Session) Key() string { return s.key }

func (s *Session) write(ctx context.Context) error {
	s.doc.Seq++
	b, _ := json.Marshal(s.doc)
	etag, err := putIf(ctx, s.st, s.key, b, s.etag)
	if errors.Is(err, remote.ErrPrecondition) {
		s.err = ErrRevoked
		return s.err
	}
	if err != nil {
		return fmt.Errorf("renew session: %w", err)
	}
	s.etag, s.renewed = etag, time.Now()
	return nil
}

// Renew renews the lease and returns condemned sets the session had not
// seen: the caller must stop deduplicating against their packs at once,
// and may acknowledge them (Ack) once everything it referenced before this
// call is in manifests that are durable.
func (s *Session) Renew(ctx context.Context) ([]CondemnedSet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	sets, err := ListCondemned(ctx, s.st)
	if err != nil {
		return nil, err
	}
	var fresh []CondemnedSet
	for _, r := range sets {
		if !s.known[r.ID] {
			s.known[r.ID] = true
			fresh = append(fresh, r)
		}
	}
	return fresh, s.write(ctx)
}

// Ack records that the session will never reference the packs of these
// sets: every reference it made before learning of them is in a durable
// manifest. It takes effect at the next renewal (or call Renew).
func (s *Session) Ack(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := map[string]bool{}
	for _, id := range s.doc.Acked {
		set[id] = true
	}
	for _, id := range ids {
		set[id] = true
	}
	s.doc.Acked = slices.Sorted(maps.Keys(set))
}

// Check fences a writer: it fails if the session was revoked or has not
// renewed within its lease less two heartbeats, so a writer that was paused
// stops before it writes a manifest.
func (s *Session) Check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if time.Since(s.renewed) > s.opts.Lease-2*s.opts.Heartbeat {
		return fmt.Errorf("backup session not renewed for %v: %w", time.Since(s.renewed).Round(time.Second), ErrRevoked)
	}
	return nil
}

// Heartbeat renews the session every opts.Heartbeat until ctx ends,
// passing newly condemned sets to onNew.
func (s *Session) Heartbeat(ctx context.Context, onNew func([]CondemnedSet)) error {
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fresh, err := s.Renew(ctx)
		if errors.Is(err, ErrRevoked) {
			return err
		}
		if len(fresh) > 0 && onNew != nil {
			onNew(fresh)
		}
	}
}

// End removes the session. Everything it referenced must be in durable
// manifests by then.
func (s *Session) End(ctx context.Context) error {
	if err := s.st.Delete(ctx, s.key); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// SessionInfo is a session as the collector and validate see it.
type SessionInfo struct {
	Key      string
	Host     string
	Kind     Kind
	State    State
	Started  time.Time
	Renewed  time.Time // store time of the last renewal
	Acked    []string
	ETag     string
	Stale    bool // not renewed within the lease
	Unparsed bool
}

// ListSessions returns every session object, marking stale ones.
func ListSessions(ctx context.Context, st remote.Store, now time.Time, lease time.Duration) ([]SessionInfo, error) {
	var infos []remote.Info
	if err := st.List(ctx, sessionPrefix, func(i remote.Info) error { infos = append(infos, i); return nil }); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var out []SessionInfo
	for _, i := range infos {
		var d sessionDoc
		info, err := getJSON(ctx, st, i.Key, &d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		si := SessionInfo{Key: i.Key, Host: d.Host, Kind: d.Kind, State: d.State, Started: d.Started, Acked: d.Acked, Renewed: info.ModTime, ETag: info.ETag}
		if err != nil {
			si = SessionInfo{Key: i.Key, Renewed: i.ModTime, ETag: i.ETag, Unparsed: true, Host: strings.Split(strings.TrimPrefix(i.Key, sessionPrefix), "/")[0]}
		}
		si.Stale = now.Sub(si.Renewed) > lease
		out = append(out, si)
	}
	return out, nil
}

// revoke marks a stale session revoked by compare-and-swap, so a writer
// that wakes up finds out at its next renewal.
func revoke(ctx context.Context, st remote.Store, s SessionInfo) error {
	d := sessionDoc{Host: s.Host, Kind: s.Kind, State: Revoked, Started: s.Started, Acked: s.Acked}
	b, _ := json.Marshal(d)
	_, err := putIf(ctx, st, s.Key, b, s.ETag)
	if errors.Is(err, remote.ErrPrecondition) {
		return nil // it renewed meanwhile: alive after all
	}
	return err
}
