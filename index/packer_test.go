package index

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

// gateStore holds every pack PUT, once armed, until release is closed;
// entered receives a value as each one begins.
type gateStore struct {
	remote.Store
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func newGateStore() *gateStore {
	return &gateStore{Store: remotetest.NewMemory(), entered: make(chan struct{}, 8), release: make(chan struct{})}
}

func (g *gateStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	if g.armed && strings.HasPrefix(key, "packs/") {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Store.Put(ctx, key, data, size)
}

// packerUploading returns a Packer of a Writer on a gated store whose first
// pack (chunks a and b) is being uploaded by an Add of c, held in its PUT;
// the Add's error comes on the channel once the PUT is released.
func packerUploading(t *testing.T) (w *Writer, p *Packer, st *gateStore, a, c []byte, added chan error) {
	t.Helper()
	ctx := t.Context()
	st = newGateStore()
	w, err := NewWriter(ctx, st, New(), testConfig(t), WriterOptions{Host: "h", PackSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p = w.NewPacker()
	a, b, c := randBytes(1, 100<<10), randBytes(2, 100<<10), randBytes(3, 100<<10)
	for _, d := range [][]byte{a, b} {
		if _, err := p.Add(ctx, chunk.Sum(d), d); err != nil {
			t.Fatal(err)
		}
	}
	st.armed = true
	added = make(chan error, 1)
	go func() {
		_, err := p.Add(ctx, chunk.Sum(c), c) // past the pack size: uploads a and b
		added <- err
	}()
	<-st.entered
	return w, p, st, a, c, added
}

// TestPackerAddsWhileUploading: while one caller uploads the pack it
// filled, another caller of the same Packer (a worker sharing it, or
// another chunking goroutine of the file) adds its chunk to a new pack
// rather than waiting for the upload, which held the Packer's lock and
// stalled every caller for the PUT's length.
func TestPackerAddsWhileUploading(t *testing.T) {
	ctx := t.Context()
	w, p, st, a, c, added := packerUploading(t)
	d := randBytes(4, 100<<10)
	done := make(chan error, 1)
	go func() {
		_, err := p.Add(ctx, chunk.Sum(d), d)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(st.release)
		t.Fatal("an Add waited for another caller's upload of a full pack")
	}
	close(st.release)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range [][]byte{a, c, d} {
		if ok, err := w.Stored(ctx, chunk.Sum(x)); !ok || err != nil {
			t.Errorf("after Sync chunk %s is stored: %v, %v; want true", chunk.Sum(x), ok, err)
		}
	}
}

// TestFlushWaitsForUploads: a Flush that begins while a full pack is
// being uploaded off the lock returns only once that upload has ended
// and the pack is indexed, so the Sync it serves names it.
func TestFlushWaitsForUploads(t *testing.T) {
	ctx := t.Context()
	w, p, st, a, _, added := packerUploading(t)
	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(ctx) }()
	select {
	case err := <-flushed:
		close(st.release)
		t.Fatalf("Flush returned (%v) while a pack it must wait for was uploading", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(st.release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if _, ok := w.idx.lookup(chunk.Sum(a)); !ok {
		t.Error("after Flush the uploaded pack's chunk is not in the index")
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
}

// TestNewPackersSpreadShares: with Spread two workers share a Packer (two
// open packs), so n workers keep as many packs open as without it.
func TestNewPackersSpreadShares(t *testing.T) {
	for _, spread := range []bool{false, true} {
		w, err := NewWriter(t.Context(), remotetest.NewMemory(), New(), testConfig(t), WriterOptions{Host: "h", Spread: spread})
		if err != nil {
			t.Fatal(err)
		}
		for n, want := range map[int]int{1: 1, 2: 2, 3: 3, 4: 4} {
			if spread {
				want = (n + 1) / 2
			}
			ps := w.NewPackers(n)
			distinct := map[*Packer]bool{}
			for _, p := range ps {
				distinct[p] = true
			}
			if len(ps) != n || len(distinct) != want {
				t.Errorf("Spread %v: NewPackers(%d): %d Packers, %d distinct; want %d, %d", spread, n, len(ps), len(distinct), n, want)
			}
		}
	}
}
