package gc

import (
	"bytes"
	"context"
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

	"github.com/cassback/cassback/manifest"
	"github.com/cassback/cassback/remote"
)

// ErrRevoked reports that a purge revoked the session because it had not
// renewed its lease: the session must stop, and nothing it writes from
// then on counts.
var ErrRevoked = errors.New("session revoked by a purge (its lease expired)")

// ErrLeftBehind is End's error when the session was ended properly (a
// reader's confirmed live, a writer's markers written) but its object
// could not be removed: harmless, since a purge removes it once stale.
var ErrLeftBehind = errors.New("session object left for a purge to remove")

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
	// compare-and-swap; their writer finds out at its next write, and
	// nothing it writes from then on counts.
	Revoked State = "revoked"
)

// sessionFormat is the version of a session object: 2 records the hash
// of each committed backup's manifest, which its commit marker names.
const sessionFormat = 2

// sessionDoc is the content of a session object.
type sessionDoc struct {
	Format int    `json:"format"`
	Host   string `json:"host"`
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	State  State  `json:"state"`
	// Started is the writer's own clock at registration: shown to
	// operators, never compared with anything.
	Started time.Time `json:"started"`
	// Acked lists the condemned sets the session will never reference.
	Acked []string `json:"acked,omitempty"`
	// Committed lists backups the session committed whose commit markers
	// may not be written yet; a purge writes them for a session that died.
	Committed []string `json:"committed,omitempty"`
	// Hashes holds the hash of each committed backup's manifest object,
	// which its marker names: a purge writes the markers without reading
	// the manifests.
	Hashes map[string]manifest.Hash `json:"hashes,omitempty"`
	Seq    int                      `json:"seq"`
}

func decodeSession(b []byte) (sessionDoc, error) {
	var d sessionDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	if d.Format != sessionFormat {
		return d, fmt.Errorf("session format %d, this cassback reads %d", d.Format, sessionFormat)
	}
	for _, n := range d.Committed {
		if _, ok := d.Hashes[n]; !ok {
			return d, fmt.Errorf("session %s: committed backup %.300q has no manifest hash", d.ID, n)
		}
	}
	return d, nil
}

// commits returns the backups d lists as committed, with their hashes.
func (d *sessionDoc) commits() []manifest.Commit {
	cs := make([]manifest.Commit, 0, len(d.Committed))
	for _, n := range d.Committed {
		cs = append(cs, manifest.Commit{Name: n, Hash: d.Hashes[n]})
	}
	return cs
}

// SessionKey is the store key of a session.
func SessionKey(host, id string) string { return sessionPrefix + host + "/" + id }

// Session is a backup's (or a reader's) registration in the store. While
// it is live, the collector deletes no pack of a condemned set the session
// has not acknowledged. Every write after the first is a compare-and-swap
// on the session's last ETag, so a session a purge revoked finds out at its
// next write and stops (ErrRevoked); the commit of a backup is such a
// write, so a manifest written after the revocation never counts.
//
// Its methods are safe for concurrent use: one write at a time (the
// heartbeat's renewal and the writer's commit share one ETag). A method
// waiting for another's write polls with the session's Clock rather than
// blocking, so a simulated process stays a sequence of scheduling points.
type Session struct {
	st   remote.Store
	key  string
	opts Options
	gen  string // the sweep generation its start listed ("": none to rely on)

	io sync.Mutex // held across a write; taken with lock

	// Owned by the holder of io.
	doc     sessionDoc
	etag    string
	tried   []byte          // an earlier write whose outcome is unknown
	known   map[string]bool // condemned sets seen
	everAck map[string]bool // sets ever acknowledged, kept when they vanish
	marked  map[string]bool // committed backups whose markers are written

	mu         sync.Mutex // never held across a request
	pendingAck []string   // acknowledgements for the next write
	renewed    time.Time  // local clock, last write known to have landed
	err        error
	committed  []manifest.Commit // when revoked: backups the revoked object lists as committed
}

// lockPoll is how often a method waiting for another's write looks again.
const lockPoll = 10 * time.Millisecond

// lock takes the write lock, polling with the session's clock.
func (s *Session) lock(ctx context.Context) error {
	for !s.io.TryLock() {
		if err := s.opts.Clock.Sleep(ctx, lockPoll); err != nil {
			return err
		}
	}
	return nil
}

// failed returns the session's sticky error, if any.
func (s *Session) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// StartSession registers a session and returns it with the condemned sets
// open at that moment: a writer must not deduplicate against their packs,
// and must build its index only from index files listed after this
// returns. The sets are read after the session object is visible, which
// is what lets a sweep rely on acknowledgements alone (docs/design.md §4);
// the session acknowledges them at once, having never referenced them.
func StartSession(ctx context.Context, st remote.Store, host string, kind Kind, opts Options) (*Session, []CondemnedSet, error) {
	o := opts.WithDefaults()
	s := &Session{st: st, opts: o, known: map[string]bool{}, everAck: map[string]bool{}, marked: map[string]bool{}}
	s.doc = sessionDoc{Format: sessionFormat, Host: host, ID: randomID(), Kind: kind, State: Live, Started: o.Clock.Now().UTC()}
	s.key = SessionKey(host, s.doc.ID)
	b, _ := json.Marshal(s.doc)
	etag, err := putIf(ctx, st, s.key, b, "", o.cas())
	if err != nil {
		return nil, nil, fmt.Errorf("register session: %w", err)
	}
	s.etag, s.renewed = etag, o.Clock.Now()
	fail := func(err error) (*Session, []CondemnedSet, error) {
		st.Delete(context.WithoutCancel(ctx), s.key)
		return nil, nil, err
	}
	sets, _, gen, err := listCondemned(ctx, st, nil)
	if err != nil {
		return fail(err)
	}
	if o.cas() {
		s.gen = gen
	}
	s.io.Lock()
	defer s.io.Unlock()
	for _, c := range sets {
		s.known[c.ID], s.everAck[c.ID] = true, true
	}
	s.doc.Acked = slices.Sorted(maps.Keys(s.known))
	// Written again even with nothing to acknowledge: from here on the
	// session relies on the ETag of a compare-and-swap, which no late copy
	// of its create-only write can bring back once a purge revoked and
	// removed the object (with ETags that hash the content, a re-created
	// object would match the create's; sessionstart_attack_test.go).
	if err := s.write(ctx); err != nil {
		return fail(err)
	}
	return s, sets, nil
}

// Key returns the session's store key.
func (s *Session) Key() string { return s.key }

// Generation returns the stamp of the sweep generation listed with the
// condemned sets when the session began, after it was registered; "" when
// there is none to rely on (no such object, or a store without atomic
// conditional writes). A manifest seen committed after a listing that
// showed stamp g still has every chunk stored at a later listing that
// shows g again (generation.go).
func (s *Session) Generation() string { return s.gen }

// ID returns the session's ID, which its manifests record.
func (s *Session) ID() string { return s.doc.ID }

// write stores s.doc, with the pending acknowledgements, by
// compare-and-swap on the last ETag. A write whose response was lost may
// have landed: before deciding, write reads the object back, so a lost
// response is never taken for a revocation, nor a revocation for success.
// Called with s.io held.
func (s *Session) write(ctx context.Context) error {
	s.mu.Lock()
	for _, id := range s.pendingAck {
		s.everAck[id] = true
	}
	s.doc.Acked = mergeSorted(s.doc.Acked, s.pendingAck)
	s.pendingAck = nil
	s.mu.Unlock()
	for n := range s.doc.Hashes {
		if !slices.Contains(s.doc.Committed, n) {
			delete(s.doc.Hashes, n) // marked: the marker names it now
		}
	}
	s.doc.Seq++
	b, _ := json.Marshal(s.doc)
	cas := s.opts.cas()
	for range 3 {
		etag, err := putIf(ctx, s.st, s.key, b, s.etag, cas)
		if err == nil {
			s.landed(etag)
			return nil
		}
		if !cas || ctx.Err() != nil {
			return fmt.Errorf("write session %s: %w", s.key, err)
		}
		cur, curETag, rerr := readBack(ctx, s.st, s.key)
		switch {
		case rerr == nil && bytes.Equal(cur, b):
			// Our write landed; its response was lost.
			s.landed(curETag)
			return nil
		case rerr == nil && s.tried != nil && bytes.Equal(cur, s.tried):
			// An earlier write whose response was lost landed: write on top.
			s.etag, s.tried = curETag, nil
			continue
		case errors.Is(rerr, fs.ErrNotExist), rerr == nil && errors.Is(err, remote.ErrPrecondition):
			// Someone else wrote it (a purge revoked us) or removed it.
			return s.revoked(cur)
		default:
			// Not applied yet, or unknown: a delayed request may still
			// land, so remember it, and the next write recognises it.
			s.tried = b
			return fmt.Errorf("write session %s: %w", s.key, err)
		}
	}
	s.tried = b
	return fmt.Errorf("write session %s: lost responses kept it from settling", s.key)
}

func (s *Session) landed(etag string) {
	s.etag, s.tried = etag, nil
	s.mu.Lock()
	s.renewed = s.opts.Clock.Now()
	s.mu.Unlock()
}

// revoked records that a purge revoked the session, and which backups the
// revoked object lists as committed: those count.
func (s *Session) revoked(cur []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, err := decodeSession(cur); err == nil {
		s.committed = d.commits()
	}
	s.err = ErrRevoked
	return s.err
}

// Renew renews the lease and returns the condemned sets the session had
// not seen: the caller must stop deduplicating against their packs at
// once, and may acknowledge them (Ack) once everything it referenced
// before this call is in committed manifests.
func (s *Session) Renew(ctx context.Context) ([]CondemnedSet, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.io.Unlock()
	if err := s.failed(); err != nil {
		return nil, err
	}
	fresh, present, err := ListCondemned(ctx, s.st, s.known)
	if err != nil {
		return nil, err
	}
	for _, c := range fresh {
		s.known[c.ID] = true
	}
	// Sets swept since need no acknowledgement any more; a set that comes
	// back (a delayed write of it landing late) is acknowledged again.
	s.doc.Acked = nil
	for id := range s.everAck {
		if present[id] {
			s.doc.Acked = append(s.doc.Acked, id)
		}
	}
	slices.Sort(s.doc.Acked)
	s.doc.Committed = slices.DeleteFunc(s.doc.Committed, func(n string) bool { return s.marked[n] })
	if err := s.write(ctx); err != nil {
		return fresh, err
	}
	s.writeMarkers(ctx)
	return fresh, nil
}

// Ack records that the session will never reference the packs of these
// sets: every reference it made before learning of them is in a committed
// manifest. It takes effect at the next write (Renew or Commit).
func (s *Session) Ack(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pendingAck = append(s.pendingAck, ids...)
}

func mergeSorted(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// RevokedError is the error of a Commit that found the session revoked.
// Committed lists the backups of that commit the revoked session object
// names as committed (a write that landed before the revocation), with
// their manifests' hashes: they count, and their markers are written; the
// others never count.
type RevokedError struct{ Committed []manifest.Commit }

func (e *RevokedError) Error() string { return ErrRevoked.Error() }
func (e *RevokedError) Unwrap() error { return ErrRevoked }

// Commit makes the backups count: it records them, with their manifests'
// hashes, in the session object by compare-and-swap, with acks that they
// make true, and then writes their commit markers (one a commit: the
// backups of one time). The manifests must already be stored. If
// the session was revoked it returns a *RevokedError (errors.Is
// ErrRevoked) saying which of them count anyway. Any other error leaves it
// unknown whether the write landed: the names stay in the session, and the
// next write that lands commits them; a marker that cannot be written now
// is written by a later write, by End, or by a purge.
func (s *Session) Commit(ctx context.Context, cs []manifest.Commit, ack []string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.io.Unlock()
	if err := s.failed(); err != nil {
		return s.revokedError(cs, err)
	}
	if s.doc.Hashes == nil {
		s.doc.Hashes = map[string]manifest.Hash{}
	}
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		names = append(names, c.Name)
		s.doc.Hashes[c.Name] = c.Hash
	}
	s.doc.Committed = mergeSorted(s.doc.Committed, names)
	s.mu.Lock()
	s.pendingAck = append(s.pendingAck, ack...)
	s.mu.Unlock()
	if err := s.write(ctx); err != nil {
		return s.revokedError(cs, err)
	}
	s.writeMarkers(ctx)
	return nil
}

// revokedError turns ErrRevoked into a *RevokedError for cs, writing
// the markers of those the revoked object lists as committed.
func (s *Session) revokedError(cs []manifest.Commit, err error) error {
	if !errors.Is(err, ErrRevoked) {
		return err
	}
	s.mu.Lock()
	listed := s.committed
	s.mu.Unlock()
	re := &RevokedError{}
	for _, c := range cs {
		if slices.Contains(listed, c) {
			re.Committed = append(re.Committed, c)
		}
	}
	return re
}

// writeMarkers writes the commit markers of committed backups that have
// none yet, after a write that landed: one marker (or a split set) a
// commit. Called with s.io held.
func (s *Session) writeMarkers(ctx context.Context) {
	var todo []manifest.Commit
	for _, c := range s.doc.commits() {
		if !s.marked[c.Name] {
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return
	}
	written, _ := manifest.PutCommits(ctx, s.st, todo, s.doc.ID) // the rest: by a later write, End or a purge
	for _, n := range written {
		s.marked[n] = true
	}
}

// Check fences a writer: it fails if the session was revoked or has not
// renewed within its lease less two heartbeats, so a writer that was
// paused does not write manifests that would not count. Safety does not
// depend on it (Commit does that); it saves useless work.
func (s *Session) Check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if d := s.opts.Clock.Now().Sub(s.renewed); d > s.opts.Lease-2*s.opts.Heartbeat {
		return fmt.Errorf("session not renewed for %v: %w", d.Round(time.Second), ErrRevoked)
	}
	return nil
}

// Heartbeat renews the session every opts.Heartbeat until ctx ends,
// passing newly condemned sets to onNew. It returns ErrRevoked if the
// session was revoked.
func (s *Session) Heartbeat(ctx context.Context, onNew func([]CondemnedSet)) error {
	for {
		if err := s.opts.Clock.Sleep(ctx, s.opts.Heartbeat); err != nil {
			return nil
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

// End removes the session. While its last write may have landed unseen,
// or a committed backup's marker is not written, it keeps the object and
// says so: a purge writes the markers a session object lists. A revoked
// session's object is left to the purge that revoked it.
//
// A reader's session (restore, validate) that was revoked at any time
// ends with ErrRevoked, even if it never wrote after the revocation: a
// purge may have deleted what it read, so a failure it met may be the
// purge's doing rather than damage. A backup learns of a revocation from
// Commit; its End reports none.
func (s *Session) End(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.io.Unlock()
	reader := s.doc.Kind != KindBackup
	if err := s.failed(); err != nil {
		if reader {
			return err
		}
		return nil
	}
	if reader && s.tried == nil {
		if err := s.stillOurs(ctx); err != nil {
			return err
		}
	}
	if s.tried != nil {
		if err := s.write(ctx); err != nil {
			return fmt.Errorf("end session %s: its last write may have landed unseen; the object is left for a purge to settle: %w", s.key, err)
		}
	}
	s.writeMarkers(ctx)
	for _, n := range s.doc.Committed {
		if !s.marked[n] {
			return fmt.Errorf("end session %s: the commit marker of %s is not written; the object is left for a purge to write it", s.key, n)
		}
	}
	if err := s.st.Delete(ctx, s.key); err != nil {
		return fmt.Errorf("end session %s: %w: %w", s.key, ErrLeftBehind, err)
	}
	return nil
}

// stillOurs checks that the session object is the one last written: a
// purge that revoked the session changed it, and one that forgot the
// revoked session removed it. Called with s.io held.
func (s *Session) stillOurs(ctx context.Context) error {
	info, err := s.st.Stat(ctx, s.key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s.revoked(nil)
	case err != nil:
		return fmt.Errorf("end session %s: %w", s.key, err)
	case info.ETag == s.etag:
		return nil
	}
	cur, _, err := readBack(ctx, s.st, s.key)
	if errors.Is(err, fs.ErrNotExist) {
		return s.revoked(nil)
	}
	if err != nil {
		return fmt.Errorf("end session %s: %w", s.key, err)
	}
	if d, derr := decodeSession(cur); derr == nil && d.State == Live && d.ID == s.doc.ID && d.Seq == s.doc.Seq {
		return nil // the same write, its ETag told differently
	}
	return s.revoked(cur)
}

// SessionInfo is a session as the collector and validate see it.
type SessionInfo struct {
	Key       string
	Host      string
	ID        string
	Kind      Kind
	State     State
	Started   time.Time // the writer's clock at registration
	Renewed   time.Time // store time of the last write
	Acked     []string
	Committed []string
	Hashes    map[string]manifest.Hash // of each committed backup's manifest object
	ETag      string
	Stale     bool // not renewed within the lease
	Unparsed  bool // the object does not decode (its acks are unknown)
	doc       sessionDoc
}

// ListSessions returns every session object, marking stale ones.
func ListSessions(ctx context.Context, st remote.Store, now time.Time, lease time.Duration) ([]SessionInfo, error) {
	var infos []remote.Info
	if err := st.List(ctx, sessionPrefix, func(i remote.Info) error { infos = append(infos, i); return nil }); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var out []SessionInfo
	for _, i := range infos {
		b, etag, err := readBack(ctx, st, i.Key)
		if errors.Is(err, fs.ErrNotExist) {
			continue // ended meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read session %s: %w", i.Key, err)
		}
		si := SessionInfo{Key: i.Key, ETag: etag, Renewed: i.ModTime}
		si.Host, si.ID, _ = strings.Cut(strings.TrimPrefix(i.Key, sessionPrefix), "/")
		if d, err := decodeSession(b); err != nil {
			si.Unparsed = true
		} else {
			si.Kind, si.State, si.Started, si.Acked, si.Committed, si.Hashes, si.doc = d.Kind, d.State, d.Started, d.Acked, d.Committed, d.Hashes, d
		}
		si.Stale = now.Sub(si.Renewed) > lease
		out = append(out, si)
	}
	return out, nil
}

// revoke marks a stale session revoked by compare-and-swap on the ETag it
// was listed with, keeping its acks and commits. It reports false, without
// error, when the session wrote meanwhile: it is alive after all.
func revoke(ctx context.Context, st remote.Store, s SessionInfo) (bool, error) {
	d := s.doc
	if s.Unparsed {
		d = sessionDoc{Format: sessionFormat, Host: s.Host, ID: s.ID}
	}
	d.State = Revoked
	d.Seq++
	b, _ := json.Marshal(d)
	_, err := putIf(ctx, st, s.Key, b, s.ETag, true)
	if errors.Is(err, remote.ErrPrecondition) {
		return false, nil
	}
	if err != nil {
		// A lost response: read back to learn whether it landed.
		if cur, _, rerr := readBack(ctx, st, s.Key); rerr == nil && bytes.Equal(cur, b) {
			return true, nil
		}
		return false, err
	}
	return true, nil
}

// readBack reads an object and the ETag of exactly those bytes.
func readBack(ctx context.Context, st remote.Store, key string) ([]byte, string, error) {
	for range 3 {
		a, err := st.Stat(ctx, key)
		if err != nil {
			return nil, "", err
		}
		if a.Size > maxObject {
			return nil, "", fmt.Errorf("%s: %d bytes is more than %d", key, a.Size, maxObject)
		}
		rc, err := st.Get(ctx, key, 0, -1)
		if err != nil {
			return nil, "", err
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxObject+1))
		rc.Close()
		if err != nil {
			return nil, "", err
		}
		z, err := st.Stat(ctx, key)
		if err != nil {
			return nil, "", err
		}
		if a.ETag == z.ETag {
			return b, a.ETag, nil
		}
	}
	return nil, "", fmt.Errorf("%s keeps changing while read", key)
}
