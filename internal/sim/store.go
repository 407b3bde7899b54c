package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cassback/cassback/remote"
)

// Store is the World's shared object store: an in-memory remote.Store and
// remote.Conditional with DeleteMany. A request made with an actor's
// context waits for the scheduler and may be hit by the World's faults; a
// request made with any other context is applied at once, without faults,
// which is how a test seeds the store before the actors start (and how
// Store passes remotetest.Run).
//
// ModTime is the World's virtual time when the write is applied, or the
// writing actor's clock with Options.WriterClock. ETags count writes, so
// rewriting the same bytes changes them, as on stores that do not hash.
// Like S3 it can hold both "a" and "a/b".
type Store struct {
	w *World

	mu   sync.Mutex
	objs map[string]object
	keys []string // every key in objs, in byte order, so List never sorts
	gen  uint64   // writes so far; the source of ETags
	muts uint64   // writes and deletes so far
}

type object struct {
	data []byte // never modified once stored
	info remote.Info
}

// Mutations counts the writes and deletes applied so far: a check of the
// store's state need not run again while it has not changed.
func (s *Store) Mutations() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.muts
}

// Object is one stored object as Peek and Snapshot show it. Data is the
// store's own slice, shared to keep invariant checks cheap: do not modify it.
type Object struct {
	remote.Info
	Data []byte
}

var (
	_ remote.ETagger     = (*body)(nil)
	_ remote.Store       = (*Store)(nil)
	_ remote.Conditional = (*Store)(nil)
	_ interface {
		DeleteMany(context.Context, []string) error
	} = (*Store)(nil)
)

func newStore(w *World) *Store {
	return &Store{w: w, objs: make(map[string]object)}
}

// op is a store request kind; its name is the one errors and the trace use.
type op uint8

const (
	opPut op = iota + 1
	opPutIf
	opGet
	opStat
	opList
	opListDirs
	opDelete
	opDeleteMany
	opSleep // not a store request: World.Sleep parks an actor the same way
)

var opNames = [...]string{"?", "put", "put-if", "get", "stat", "list", "list-dirs", "delete", "delete-many", "sleep"}

func (o op) String() string { return opNames[o] }

// writes reports whether a request of this kind changes the store, which
// is what makes delaying it meaningful.
func (o op) writes() bool {
	return o == opPut || o == opPutIf || o == opDelete || o == opDeleteMany
}

// request is one store call (or sleep) on its way through the scheduler.
// The actor fills in the arguments, the scheduler the results; the channel
// handoff between them orders the two, so no field needs a lock.
type request struct {
	ctx     context.Context
	op      op
	key     string   // the prefix for List and ListDirs; a sleep's duration, for errors and the trace
	keys    []string // DeleteMany
	data    []byte   // Put, PutIf: owned by the request, stored as is
	ifMatch string
	offset  int64
	length  int64
	after   string // List: the page starts after this key
	limit   int    // List: keys per page
	phase   uint8  // PutIf with NonAtomicConditional: 1 once the check has passed
	// Sleep: the virtual time (since Options.Start) it began and the one
	// from which it may be woken.
	since, until time.Duration

	err   error
	etag  string
	info  remote.Info
	body  []byte
	infos []remote.Info
	dirs  []string
	more  bool // List: another page follows
}

// actorOf returns the actor whose context ctx is (or derives from), or nil.
func (s *Store) actorOf(ctx context.Context) *Actor {
	a := ActorOf(ctx)
	if a != nil && a.w != s.w {
		panic(fmt.Sprintf("sim: actor %s of another World used this World's Store", a.name))
	}
	return a
}

// check turns the error of remote.Begin and its kin into what the caller
// sees: for a crashed actor, whose context the crash cancelled, an error
// that says so.
func check(a *Actor, o op, key string, err error) error {
	if err != nil && a != nil && a.crashed.Load() && !errors.Is(err, remote.ErrInvalidKey) {
		return crashError(o, key)
	}
	return err
}

func crashError(o op, key string) error {
	return fmt.Errorf("%s %s: %w (%w)", o, key, ErrCrashed, context.Canceled)
}

// do carries out r: at once for a context without an actor, through the
// scheduler otherwise.
func (s *Store) do(ctx context.Context, a *Actor, r *request) error {
	if err := ctx.Err(); err != nil {
		return check(a, r.op, r.key, fmt.Errorf("%s %s: %w", r.op, r.key, err))
	}
	r.ctx = ctx
	if a != nil {
		return a.call(r)
	}
	if r.op == opPutIf && s.w.opts.NoConditional {
		return unsupported(r.key)
	}
	s.mu.Lock()
	s.applyLocked(r, s.w.Now(), true)
	s.mu.Unlock()
	return r.err
}

func unsupported(key string) error {
	return fmt.Errorf("put-if %s: %w: the simulated store has no conditional writes", key, errors.ErrUnsupported)
}

// Put implements remote.Store. It reads data in the caller's goroutine,
// before the request is scheduled, as a client sends a body: the store keeps
// that one copy.
func (s *Store) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	a := s.actorOf(ctx)
	if err := check(a, opPut, key, remote.Begin(ctx, "put", key)); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: negative size %d", key, size)
	}
	buf := make([]byte, size)
	r := remote.ContextReader(ctx, data)
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("put %s: data ended after %d of %d bytes", key, n, size)
	}
	if err != nil {
		return check(a, opPut, key, fmt.Errorf("put %s: read data: %w", key, err))
	}
	var one [1]byte
	if k, err := io.ReadFull(r, one[:]); k > 0 {
		return fmt.Errorf("put %s: data is longer than %d bytes", key, size)
	} else if err != io.EOF {
		return check(a, opPut, key, fmt.Errorf("put %s: read data: %w", key, err))
	}
	return s.do(ctx, a, &request{op: opPut, key: key, data: buf})
}

// PutVerified implements remote.Verifying: a Put that returns nil was
// applied whole, as an S3 PutObject whose checksum the server echoed.
func (s *Store) PutVerified(ctx context.Context, key string, data io.Reader, size int64) (bool, error) {
	err := s.Put(ctx, key, data, size)
	return err == nil, err
}

// PutIf implements remote.Conditional. With Options.NoConditional it fails
// with errors.ErrUnsupported; with Options.NonAtomicConditional an actor's
// PutIf takes two steps, the check and then an unconditional write.
func (s *Store) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	a := s.actorOf(ctx)
	if err := check(a, opPutIf, key, remote.Begin(ctx, "put-if", key)); err != nil {
		return "", err
	}
	// The caller may reuse data once PutIf returns; a delayed request may
	// land long after that.
	r := &request{op: opPutIf, key: key, data: bytes.Clone(data), ifMatch: ifMatch}
	if err := s.do(ctx, a, r); err != nil {
		return "", err
	}
	return r.etag, nil
}

// Get implements remote.Store. The body is the object as it was when the
// request was applied; reading it is not a scheduled step. It reports the
// version's ETag (remote.ETagger), as an S3 body does.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	a := s.actorOf(ctx)
	if err := check(a, opGet, key, remote.Begin(ctx, "get", key)); err != nil {
		return nil, err
	}
	r := &request{op: opGet, key: key, offset: offset, length: length}
	if err := s.do(ctx, a, r); err != nil {
		return nil, err
	}
	b := &body{ctx: ctx, etag: r.etag}
	b.r.Reset(r.body)
	return b, nil
}

type body struct {
	ctx  context.Context
	r    bytes.Reader
	etag string
}

func (b *body) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.r.Read(p)
}

func (b *body) Close() error { return nil }

// ETag implements remote.ETagger.
func (b *body) ETag() string { return b.etag }

// Stat implements remote.Store.
func (s *Store) Stat(ctx context.Context, key string) (remote.Info, error) {
	a := s.actorOf(ctx)
	if err := check(a, opStat, key, remote.Begin(ctx, "stat", key)); err != nil {
		return remote.Info{}, err
	}
	r := &request{op: opStat, key: key}
	if err := s.do(ctx, a, r); err != nil {
		return remote.Info{}, err
	}
	return r.info, nil
}

// List implements remote.Store. It fetches Options.ListPage keys per
// request, each page a scheduled step, so as on S3 a key written during a
// List is seen if it sorts after the page being read and missed otherwise.
// fn runs between requests and may use the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	a := s.actorOf(ctx)
	if err := check(a, opList, prefix, remote.BeginList(ctx, prefix)); err != nil {
		return err
	}
	after := ""
	for {
		r := &request{op: opList, key: prefix, after: after, limit: s.w.opts.ListPage}
		if err := s.do(ctx, a, r); err != nil {
			return err
		}
		for _, info := range r.infos {
			if err := ctx.Err(); err != nil {
				return check(a, opList, prefix, fmt.Errorf("list %s: %w", prefix, err))
			}
			if err := fn(info); err != nil {
				if errors.Is(err, remote.ErrStop) {
					return nil
				}
				return err
			}
		}
		if !r.more {
			return nil
		}
		after = r.infos[len(r.infos)-1].Key
	}
}

// ListDirs implements remote.Store, in one request.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	a := s.actorOf(ctx)
	if err := check(a, opListDirs, prefix, remote.BeginListDirs(ctx, prefix)); err != nil {
		return nil, err
	}
	r := &request{op: opListDirs, key: prefix}
	if err := s.do(ctx, a, r); err != nil {
		return nil, err
	}
	return r.dirs, nil
}

// Delete implements remote.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	a := s.actorOf(ctx)
	if err := check(a, opDelete, key, remote.Begin(ctx, "delete", key)); err != nil {
		return err
	}
	return s.do(ctx, a, &request{op: opDelete, key: key})
}

// DeleteMany deletes keys in one request, as S3's DeleteObjects does (with
// no limit on the number of keys). Missing keys are not an error; every key
// is checked before the request is made, and an empty list makes none.
func (s *Store) DeleteMany(ctx context.Context, keys []string) error {
	a := s.actorOf(ctx)
	for _, k := range keys {
		if err := check(a, opDeleteMany, k, remote.Begin(ctx, "delete-many", k)); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return s.do(ctx, a, &request{op: opDeleteMany, key: keys[0], keys: slices.Clone(keys)})
}

// Peek returns the object under key without making a request: for
// invariant checks between steps, which must not disturb the schedule.
func (s *Store) Peek(key string) (Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objs[key]
	return Object{Info: obj.info, Data: obj.data}, ok
}

// Snapshot returns every object whose key starts with prefix, in key order,
// without making a request. It costs one allocation of len(result) Objects
// and copies no data.
func (s *Store) Snapshot(prefix string) []Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo, hi := s.rangeLocked(prefix)
	out := make([]Object, 0, hi-lo)
	for _, k := range s.keys[lo:hi] {
		obj := s.objs[k]
		out = append(out, Object{Info: obj.info, Data: obj.data})
	}
	return out
}

// rangeLocked returns the bounds in s.keys of the keys that start with
// prefix.
func (s *Store) rangeLocked(prefix string) (lo, hi int) {
	lo, _ = slices.BinarySearch(s.keys, prefix)
	hi = lo
	for hi < len(s.keys) && strings.HasPrefix(s.keys[hi], prefix) {
		hi++
	}
	return lo, hi
}

// checkLocked evaluates a PutIf condition against the current object.
func (s *Store) checkLocked(key, ifMatch string) error {
	cur, exists := s.objs[key]
	switch {
	case ifMatch == "" && exists:
		return fmt.Errorf("put-if %s: %w: object exists", key, remote.ErrPrecondition)
	case ifMatch != "" && !exists:
		return fmt.Errorf("put-if %s: %w: no object to match etag %s", key, remote.ErrPrecondition, ifMatch)
	case ifMatch != "" && cur.info.ETag != ifMatch:
		return fmt.Errorf("put-if %s: %w: etag is %s, not %s", key, remote.ErrPrecondition, cur.info.ETag, ifMatch)
	}
	return nil
}

// storeLocked saves data under key and returns the new ETag.
func (s *Store) storeLocked(key string, data []byte, now time.Time) string {
	s.gen++
	s.muts++
	etag := strconv.FormatUint(s.gen, 16)
	if _, ok := s.objs[key]; !ok {
		i, _ := slices.BinarySearch(s.keys, key)
		s.keys = slices.Insert(s.keys, i, key)
	}
	s.objs[key] = object{data: data, info: remote.Info{Key: key, Size: int64(len(data)), ModTime: now, ETag: etag}}
	return etag
}

func (s *Store) deleteLocked(key string) {
	if _, ok := s.objs[key]; !ok {
		return
	}
	delete(s.objs, key)
	s.muts++
	if i, ok := slices.BinarySearch(s.keys, key); ok {
		s.keys = slices.Delete(s.keys, i, i+1)
	}
}

// applyLocked carries out r against the store and sets its results. now is
// the ModTime of a write. conditional is false for the write half of a
// non-atomic PutIf, whose check was an earlier step.
func (s *Store) applyLocked(r *request, now time.Time, conditional bool) {
	switch r.op {
	case opPut:
		r.etag = s.storeLocked(r.key, r.data, now)
	case opPutIf:
		if conditional {
			if r.err = s.checkLocked(r.key, r.ifMatch); r.err != nil {
				return
			}
		}
		r.etag = s.storeLocked(r.key, r.data, now)
	case opGet:
		obj, ok := s.objs[r.key]
		if !ok {
			r.err = fmt.Errorf("get %s: %w", r.key, fs.ErrNotExist)
			return
		}
		size := int64(len(obj.data))
		if r.offset < 0 || r.offset > size {
			r.err = fmt.Errorf("get %s: %w: offset %d, object size %d", r.key, remote.ErrInvalidRange, r.offset, size)
			return
		}
		end := size
		if r.length >= 0 && r.length < size-r.offset {
			end = r.offset + r.length
		}
		r.body, r.etag = obj.data[r.offset:end], obj.info.ETag
	case opStat:
		obj, ok := s.objs[r.key]
		if !ok {
			r.err = fmt.Errorf("stat %s: %w", r.key, fs.ErrNotExist)
			return
		}
		r.info = obj.info
	case opList:
		lo, hi := s.rangeLocked(r.key)
		if r.after != "" {
			i, found := slices.BinarySearch(s.keys[lo:hi], r.after)
			if found {
				i++
			}
			lo += i
		}
		n := min(hi-lo, r.limit)
		r.infos = make([]remote.Info, n)
		for i, k := range s.keys[lo : lo+n] {
			r.infos[i] = s.objs[k].info
		}
		r.more = lo+n < hi
	case opListDirs:
		lo, hi := s.rangeLocked(r.key)
		for _, k := range s.keys[lo:hi] {
			if dir, _, ok := strings.Cut(k[len(r.key):], "/"); ok {
				r.dirs = append(r.dirs, dir)
			}
		}
		// Key order is not name order: "x-y/1" < "x/1" but "x" < "x-y".
		slices.Sort(r.dirs)
		r.dirs = slices.Compact(r.dirs)
	case opDelete:
		s.deleteLocked(r.key)
	case opDeleteMany:
		for _, k := range r.keys {
			s.deleteLocked(k)
		}
	}
}
