package index

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
)

// Keys of the garbage collector's coordination objects (docs/design.md §4).
const (
	sessionPrefix   = "sessions/"
	leaseKey        = "gc/lease"
	clockKey        = "gc/clock"
	condemnedPrefix = "gc/condemned/"
)

// GCOptions are the timings of the garbage-collection protocol. Zero
// durations mean the defaults; tests use Grace and NewPackMargin of -1 (none).
type GCOptions struct {
	Heartbeat     time.Duration // how often sessions renew; default 5 min
	Lease         time.Duration // a session or purge lease not renewed for this long is stale; default 30 min
	Grace         time.Duration // minimum time between condemning a pack and deleting it; default 1 h
	NewPackMargin time.Duration // never condemn a pack younger than this; default 1 h
	// RepackThreshold: a live pack with more than this fraction of its
	// bytes unreferenced is rewritten, so the space comes back; default 0.5,
	// 1 or more disables repacking.
	RepackThreshold float64
}

func (o GCOptions) withDefaults() GCOptions {
	def := func(d *time.Duration, v time.Duration) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			*d = 0
		}
	}
	def(&o.Heartbeat, 5*time.Minute)
	def(&o.Lease, 30*time.Minute)
	def(&o.Grace, time.Hour)
	def(&o.NewPackMargin, time.Hour)
	if o.RepackThreshold == 0 {
		o.RepackThreshold = 0.5
	}
	return o
}

// ErrRevoked reports that the purger revoked a session because it had not
// renewed its lease: the session must stop and write no manifest.
var ErrRevoked = errors.New("backup session revoked (its lease expired)")

// StoreNow returns the store's clock: the modification time of a probe
// object written now. Every time rule of the collector uses it, never a
// node's clock.
func StoreNow(ctx context.Context, st remote.Store) (time.Time, error) {
	var b [8]byte
	rand.Read(b[:])
	if err := st.Put(ctx, clockKey, bytes.NewReader(b[:]), int64(len(b))); err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	info, err := st.Stat(ctx, clockKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the store's clock: %w", err)
	}
	return info.ModTime, nil
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// putIf writes with a condition when the store supports it and reports
// whether it did. On a store without conditional writes it falls back to a
// plain Put: the protocol then relies on timing alone (docs/design.md §4).
func putIf(ctx context.Context, st remote.Store, key string, b []byte, ifMatch string) (string, error) {
	if cs, ok := st.(remote.Conditional); ok {
		etag, err := cs.PutIf(ctx, key, b, ifMatch)
		if !errors.Is(err, errors.ErrUnsupported) {
			return etag, err
		}
	}
	if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return "", err
	}
	info, err := st.Stat(ctx, key)
	return info.ETag, err
}

func getJSON(ctx context.Context, st remote.Store, key string, v any) (remote.Info, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return info, err
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return info, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return info, fmt.Errorf("%s: %w", key, err)
	}
	return info, nil
}

// Run is one condemned set: packs no manifest referenced when a purge
// marked, to be deleted by a later sweep once every session that could
// still reference them has acknowledged it.
type Run struct {
	ID    string     `json:"id"`
	Time  time.Time  `json:"time"` // store time the run was written
	Packs []chunk.ID `json:"packs"`
	Bytes int64      `json:"bytes"`
}

// ListRuns returns the open condemned runs.
func ListRuns(ctx context.Context, st remote.Store) ([]Run, error) {
	var keys []remote.Info
	if err := st.List(ctx, condemnedPrefix, func(i remote.Info) error { keys = append(keys, i); return nil }); err != nil {
		return nil, fmt.Errorf("list condemned packs: %w", err)
	}
	var runs []Run
	for _, k := range keys {
		var r Run
		if _, err := getJSON(ctx, st, k.Key, &r); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // swept meanwhile
			}
			return nil, fmt.Errorf("read condemned set %s: %w", k.Key, err)
		}
		if r.Time.IsZero() {
			r.Time = k.ModTime
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// sessionDoc is the content of a session object.
type sessionDoc struct {
	Host    string    `json:"host"`
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`  // backup, restore, validate, purge
	State   string    `json:"state"` // live or revoked
	Started time.Time `json:"started,omitempty"`
	Acked   []string  `json:"acked,omitempty"` // condemned runs this session will never reference
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
	opts GCOptions

	mu      sync.Mutex
	doc     sessionDoc
	etag    string
	renewed time.Time // local clock, last successful renewal
	known   map[string]bool
	err     error
}

// StartSession registers a session and returns it with the condemned runs
// open at that moment: the caller must not deduplicate against their packs.
// The runs are read after the session is visible, which is what makes the
// collector's sweep safe (docs/design.md §4).
func StartSession(ctx context.Context, st remote.Store, host, kind string, opts GCOptions) (*Session, []Run, error) {
	s := &Session{st: st, opts: opts.withDefaults(), known: map[string]bool{}}
	s.doc = sessionDoc{Host: host, ID: randomID(), Kind: kind, State: "live"}
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
	runs, err := ListRuns(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range runs {
		s.known[r.ID] = true
	}
	// Started and the runs it saw at start (which it excludes, so it may
	// acknowledge them at once) go into the object.
	s.doc.Acked = slices.Sorted(maps.Keys(s.known))
	if err := s.write(ctx); err != nil {
		return nil, nil, err
	}
	return s, runs, nil
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

// Renew renews the lease and returns condemned runs the session had not
// seen: the caller must stop deduplicating against their packs at once,
// and may acknowledge them (Ack) once everything it referenced before this
// call is in manifests that are durable.
func (s *Session) Renew(ctx context.Context) ([]Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	runs, err := ListRuns(ctx, s.st)
	if err != nil {
		return nil, err
	}
	var fresh []Run
	for _, r := range runs {
		if !s.known[r.ID] {
			s.known[r.ID] = true
			fresh = append(fresh, r)
		}
	}
	return fresh, s.write(ctx)
}

// Known returns the IDs of every condemned run the session has seen.
func (s *Session) Known() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.known))
}

// Ack records that the session will never reference the packs of these
// runs: every reference it made before learning of them is in a durable
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
// passing newly condemned runs to onNew.
func (s *Session) Heartbeat(ctx context.Context, onNew func([]Run)) error {
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
	Kind     string
	State    string
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
	d := sessionDoc{Host: s.Host, Kind: s.Kind, State: "revoked", Started: s.Started, Acked: s.Acked}
	b, _ := json.Marshal(d)
	_, err := putIf(ctx, st, s.Key, b, s.ETag)
	if errors.Is(err, remote.ErrPrecondition) {
		return nil // it renewed meanwhile: alive after all
	}
	return err
}

// Lease is the purger's exclusive lease: one purge at a time.
type Lease struct {
	st   remote.Store
	etag string
	doc  leaseDoc
}

type leaseDoc struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

// ErrLeaseHeld reports that another purge is running.
var ErrLeaseHeld = errors.New("another purge holds the lease")

// AcquireLease takes the purge lease, or takes it over when its holder has
// not renewed it within lease.
func AcquireLease(ctx context.Context, st remote.Store, holder string, lease time.Duration) (*Lease, error) {
	now, err := StoreNow(ctx, st)
	if err != nil {
		return nil, err
	}
	l := &Lease{st: st, doc: leaseDoc{Holder: holder, Since: now}}
	b, _ := json.Marshal(l.doc)
	etag, err := putIf(ctx, st, leaseKey, b, "")
	if err == nil {
		l.etag = etag
		return l, nil
	}
	if !errors.Is(err, remote.ErrPrecondition) {
		return nil, fmt.Errorf("take the purge lease: %w", err)
	}
	var cur leaseDoc
	info, err := getJSON(ctx, st, leaseKey, &cur)
	if err != nil {
		return nil, fmt.Errorf("read the purge lease: %w", err)
	}
	if now.Sub(info.ModTime) <= lease {
		return nil, fmt.Errorf("%w: %s since %s", ErrLeaseHeld, cur.Holder, cur.Since.Format(time.RFC3339))
	}
	etag, err = putIf(ctx, st, leaseKey, b, info.ETag)
	if err != nil {
		return nil, fmt.Errorf("take over the stale purge lease of %s: %w", cur.Holder, err)
	}
	l.etag = etag
	return l, nil
}

// Renew extends the lease; it fails if another purge took it over.
func (l *Lease) Renew(ctx context.Context) error {
	b, _ := json.Marshal(l.doc)
	etag, err := putIf(ctx, l.st, leaseKey, b, l.etag)
	if err != nil {
		return fmt.Errorf("renew the purge lease: %w", err)
	}
	l.etag = etag
	return nil
}

// Release gives the lease up.
func (l *Lease) Release(ctx context.Context) error { return l.st.Delete(ctx, leaseKey) }
