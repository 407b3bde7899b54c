package remotetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cassback/cassback/remote"
)

// Op names a Store operation, for Faulty's rules and counters.
type Op int

// The operations. OpAny in a rule matches every operation.
const (
	OpAny Op = iota
	OpPut
	OpGet
	OpStat
	OpList
	OpListDirs
	OpDelete
	OpPutIf
)

var opNames = [...]string{"any", "put", "get", "stat", "list", "list-dirs", "delete", "put-if"}

func (o Op) String() string {
	if o < 0 || int(o) >= len(opNames) {
		return fmt.Sprintf("Op(%d)", int(o))
	}
	return opNames[o]
}

// ErrInjected is the error Faulty injects when a rule names none.
var ErrInjected = errors.New("injected fault")

// Mode says what a write (Put, PutIf, Delete) that Faulty fails does before
// it returns the error. Reads always fail without reaching the inner store.
type Mode int

const (
	// Refused: the inner store is not called and Put reads none of its data,
	// as when a request is refused before it is sent.
	Refused Mode = iota
	// Partial: Put reads half of its data and then fails, storing nothing,
	// as when a connection breaks mid-upload. Other writes act as Refused.
	Partial
	// LostReply: the write reaches the inner store and succeeds there, but
	// the caller gets the error, as when a reply is lost. Retries must cope
	// with an object that already exists (or is already deleted).
	LostReply
)

// Call records one operation that reached Faulty.
type Call struct {
	Op  Op
	Key string // the prefix for List and ListDirs
	Err error  // what the caller got
}

// Faulty wraps a Store and fails the operations its rules select, for crash
// and retry tests. It counts and logs every call. With no rules it forwards
// everything, and passes Run. It is safe for concurrent use.
//
// Faulty always has PutIf, forwarding to the inner store; if that store is
// not a remote.Conditional, PutIf returns an error wrapping
// errors.ErrUnsupported. Wrap it with WithoutConditional to hide PutIf.
//
// Rules are tried in the order they were added, for each call whose operation
// and key they match; the first that fails the call wins, and a rule counts
// only the calls that reach it. Injected errors are wrapped like a backend's
// ("put packs/3f/3fa2: injected fault"), so test them with errors.Is.
type Faulty struct {
	inner remote.Store

	mu    sync.Mutex
	rules []*rule
	hook  func(op Op, key string) error
	mode  Mode
	calls map[Op]int
	log   []Call
}

type rule struct {
	op     Op
	prefix string
	skip   int // matching calls to let through first
	fail   int // matching calls to fail after those; < 0 means all
	err    error
}

var (
	_ remote.Store       = (*Faulty)(nil)
	_ remote.Conditional = (*Faulty)(nil)
)

// NewFaulty returns a Faulty around inner with no rules.
func NewFaulty(inner remote.Store) *Faulty {
	return &Faulty{inner: inner, calls: make(map[Op]int)}
}

// FailNext fails the next n calls of op with err (ErrInjected if nil).
func (f *Faulty) FailNext(op Op, n int, err error) {
	f.addRule(&rule{op: op, fail: n, err: err})
}

// FailAfter lets the next n calls of op succeed and fails every call after
// them with err (ErrInjected if nil): a crash after n operations. With OpAny
// every operation counts and every later operation fails.
func (f *Faulty) FailAfter(op Op, n int, err error) {
	f.addRule(&rule{op: op, skip: n, fail: -1, err: err})
}

// FailMatching fails every call of op whose key (or List prefix) starts with
// keyPrefix with err (ErrInjected if nil).
func (f *Faulty) FailMatching(op Op, keyPrefix string, err error) {
	f.addRule(&rule{op: op, prefix: keyPrefix, fail: -1, err: err})
}

func (f *Faulty) addRule(r *rule) {
	if r.err == nil {
		r.err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, r)
}

// SetHook makes fn run before every operation that no rule failed, outside
// Faulty's lock; a non-nil error from it fails the operation. It can block
// to order goroutines, or decide failures the rules cannot express. nil
// removes the hook.
func (f *Faulty) SetHook(fn func(op Op, key string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = fn
}

// SetMode sets what failed writes do before they return; see Mode.
func (f *Faulty) SetMode(m Mode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = m
}

// Reset removes every rule and the hook and restores mode Refused. The
// counters and the log stay.
func (f *Faulty) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules, f.hook, f.mode = nil, nil, Refused
}

// Calls returns how many calls of op reached Faulty, failed or not; OpAny
// counts all of them.
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op == OpAny {
		n := 0
		for _, c := range f.calls {
			n += c
		}
		return n
	}
	return f.calls[op]
}

// Log returns the calls that have returned, in the order they returned.
func (f *Faulty) Log() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.log...)
}

// fault counts a call and returns the mode and the error to inject, if any.
func (f *Faulty) fault(op Op, key string) (Mode, error) {
	f.mu.Lock()
	f.calls[op]++
	var err error
	for _, r := range f.rules {
		if r.op != OpAny && r.op != op || !strings.HasPrefix(key, r.prefix) {
			continue
		}
		if r.skip > 0 {
			r.skip--
			continue
		}
		if r.fail == 0 {
			continue
		}
		if r.fail > 0 {
			r.fail--
		}
		err = r.err
		break
	}
	hook, mode := f.hook, f.mode
	f.mu.Unlock()
	if err == nil && hook != nil {
		err = hook(op, key)
	}
	if err != nil {
		err = fmt.Errorf("%s %s: %w", op, key, err)
	}
	return mode, err
}

// done logs a call's result and returns err.
func (f *Faulty) done(op Op, key string, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, Call{Op: op, Key: key, Err: err})
	return err
}

// Put implements remote.Store.
func (f *Faulty) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	mode, fault := f.fault(OpPut, key)
	if fault == nil {
		return f.done(OpPut, key, f.inner.Put(ctx, key, data, size))
	}
	switch mode {
	case Partial:
		_, _ = io.CopyN(io.Discard, data, size/2)
	case LostReply:
		if err := f.inner.Put(ctx, key, data, size); err != nil {
			return f.done(OpPut, key, err)
		}
	}
	return f.done(OpPut, key, fault)
}

// PutIf implements remote.Conditional.
func (f *Faulty) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	mode, fault := f.fault(OpPutIf, key)
	c, ok := f.inner.(remote.Conditional)
	if !ok {
		err := fmt.Errorf("put-if %s: %T is not a remote.Conditional: %w", key, f.inner, errors.ErrUnsupported)
		return "", f.done(OpPutIf, key, err)
	}
	if fault == nil {
		etag, err := c.PutIf(ctx, key, data, ifMatch)
		return etag, f.done(OpPutIf, key, err)
	}
	if mode == LostReply {
		if _, err := c.PutIf(ctx, key, data, ifMatch); err != nil {
			return "", f.done(OpPutIf, key, err)
		}
	}
	return "", f.done(OpPutIf, key, fault)
}

// Delete implements remote.Store.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	mode, fault := f.fault(OpDelete, key)
	if fault == nil {
		return f.done(OpDelete, key, f.inner.Delete(ctx, key))
	}
	if mode == LostReply {
		if err := f.inner.Delete(ctx, key); err != nil {
			return f.done(OpDelete, key, err)
		}
	}
	return f.done(OpDelete, key, fault)
}

// Get implements remote.Store.
func (f *Faulty) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if _, fault := f.fault(OpGet, key); fault != nil {
		return nil, f.done(OpGet, key, fault)
	}
	rc, err := f.inner.Get(ctx, key, offset, length)
	return rc, f.done(OpGet, key, err)
}

// Stat implements remote.Store.
func (f *Faulty) Stat(ctx context.Context, key string) (remote.Info, error) {
	if _, fault := f.fault(OpStat, key); fault != nil {
		return remote.Info{}, f.done(OpStat, key, fault)
	}
	info, err := f.inner.Stat(ctx, key)
	return info, f.done(OpStat, key, err)
}

// List implements remote.Store.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(remote.Info) error) error {
	if _, fault := f.fault(OpList, prefix); fault != nil {
		return f.done(OpList, prefix, fault)
	}
	return f.done(OpList, prefix, f.inner.List(ctx, prefix, fn))
}

// ListDirs implements remote.Store.
func (f *Faulty) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if _, fault := f.fault(OpListDirs, prefix); fault != nil {
		return nil, f.done(OpListDirs, prefix, fault)
	}
	dirs, err := f.inner.ListDirs(ctx, prefix)
	return dirs, f.done(OpListDirs, prefix, err)
}

// WithoutConditional returns s with only the remote.Store methods, hiding
// PutIf from type assertions: a test store for code paths that must work
// without conditional writes.
func WithoutConditional(s remote.Store) remote.Store {
	return struct{ remote.Store }{s}
}
