package cassback

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cassback/cassback/index/gc"
	"github.com/cassback/cassback/remote"
)

// slowGets makes every read of a key under prefix take delay, as on a
// store with very many manifests.
type slowGets struct {
	remote.Store
	prefix  string
	delay   time.Duration
	started atomic.Bool
}

func (s *slowGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, s.prefix) {
		s.started.Store(true)
		time.Sleep(s.delay)
	}
	return s.Store.Get(ctx, key, off, n)
}

func (s *slowGets) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	return s.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
}

// A purge whose plan takes many lease times (reading the manifests of a
// large store) keeps its lease alive: a second purge started meanwhile is
// refused, rather than taking over.
func TestPurgeLeaseKeptAliveWhilePlanning(t *testing.T) {
	ctx := t.Context()
	st := localStore(t)
	r := repoOn(t, st, writerOpts)
	if _, err := r.Backup(ctx, BackupOptions{DataDirs: []string{smallNode(t, 81)}, Host: "h"}); err != nil {
		t.Fatal(err)
	}
	// A lease of a second, kept alive every third of it: a loaded machine
	// does not delay a renewal that long.
	o := purgeOpts
	o.Lease = time.Second
	slow := &slowGets{Store: st, prefix: "manifests/", delay: o.Lease}
	p := repoOn(t, slow, o)
	done := make(chan error, 1)
	go func() {
		_, err := p.Purge(ctx, PurgeOptions{Host: "h", Before: time.Now().Add(-time.Hour), Holder: "first"})
		done <- err
	}()
	for !slow.started.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(2 * o.Lease) // the first purge is still reading manifests
	_, err := gc.AcquireLease(ctx, st, "second", o, false)
	if !errors.Is(err, gc.ErrLeaseHeld) {
		t.Errorf("a second purge while the first plans (lease %v): %v, want ErrLeaseHeld", o.Lease, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the first purge: %v", err)
	}
}

// lostAnswer applies the next conditional write of key and then reports a
// failure, as when the response is lost on the way back.
type lostAnswer struct {
	remote.Store
	key  string
	lose atomic.Bool
}

func (s *lostAnswer) PutIf(ctx context.Context, key string, data []byte, ifMatch string) (string, error) {
	etag, err := s.Store.(remote.Conditional).PutIf(ctx, key, data, ifMatch)
	if err == nil && key == s.key && s.lose.CompareAndSwap(true, false) {
		return "", errors.New("connection reset by peer")
	}
	return etag, err
}

// A lease renewal whose response is lost, though it landed, is recognised
// by the next renewal, which does not take it for a takeover.
func TestLeaseRenewalResponseLost(t *testing.T) {
	ctx := t.Context()
	st := &lostAnswer{Store: localStore(t), key: "gc/lease"}
	l, err := gc.AcquireLease(ctx, st, "p", purgeOpts, false)
	if err != nil {
		t.Fatal(err)
	}
	st.lose.Store(true)
	if err := l.Renew(ctx); err == nil {
		t.Fatal("a renewal whose response was lost reported success")
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("the renewal after a lost response: %v, want success", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.AcquireLease(ctx, st, "q", purgeOpts, false); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
