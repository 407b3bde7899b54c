package crypt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
)

// poolSizes are the object sizes of the pool attacks: the edges of a
// segment and of a read-ahead batch, kept to one batch and a bit.
var poolSizes = []int{
	0, 1, 17, SegmentSize - 1, SegmentSize, SegmentSize + 1, 2*SegmentSize + 3,
	readAhead*SegmentSize - 1, readAhead * SegmentSize, readAhead*SegmentSize + 1,
}

// poolBufs are the caller's buffer sizes: one byte and odd sizes, a
// sealed segment and either side of it, and a MiB.
var poolBufs = []int{1, 7, 100, Overhead, fullLen - 1, fullLen, fullLen + 1, 2*fullLen + 3, 1 << 20}

var errPoolData = errors.New("data source failed")

// poolJob is one sealing reader of the interleaving attack, with what it
// should give.
type poolJob struct {
	r    *sealReader
	key  string
	data []byte // the plaintext
	mode string // "ok", or how its data fails
	buf  int    // its reads' size
	out  []byte // sealed bytes read so far
	step int    // reads so far
}

func newPoolJob(st *Store, rng *rand.Rand, i int) *poolJob {
	n := poolSizes[rng.IntN(len(poolSizes))]
	data := randBytes(n)
	modes := []string{"ok", "ok", "ok", "short", "long", "err mid", "err end", "abandon"}
	j := &poolJob{key: fmt.Sprintf("packs/%d", i), data: data, mode: modes[rng.IntN(len(modes))]}
	// One-byte reads only of small objects, to stay fast.
	for j.buf = poolBufs[rng.IntN(len(poolBufs))]; j.buf < 100 && n > SegmentSize+1; j.buf = poolBufs[rng.IntN(len(poolBufs))] {
	}
	var src io.Reader = bytes.NewReader(data)
	switch j.mode {
	case "short":
		if n == 0 {
			j.mode = "ok"
			break
		}
		src = bytes.NewReader(data[:n-1])
	case "long":
		src = io.MultiReader(bytes.NewReader(data), bytes.NewReader([]byte{1}))
	case "err mid":
		src = io.MultiReader(bytes.NewReader(data[:n/2]), iotest.ErrReader(errPoolData))
	case "err end":
		src = io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errPoolData))
	}
	if rng.IntN(2) == 0 {
		src = iotest.HalfReader(src)
	}
	j.r = st.sealReader(j.key, src, int64(n)).(*sealReader)
	return j
}

// TestAttackSealPoolInterleaved runs sealing readers side by side, one
// read of each in turn, whose data ends well, early, late or with an
// error, and some that are dropped midway. No two readers that still hold
// buffers hold the same ones; each object opens to its data, a reader that
// failed keeps failing, and reads past the end or an error give nothing,
// whoever has the buffers since. A buffer returned twice (release that
// keeps its fields, and a read after the end) hands one buffer to two
// readers, which then seal each other's bytes.
func TestAttackSealPoolInterleaved(t *testing.T) {
	k := testKeys(t)
	st := NewStore(remotetest.NewMemory(), k)
	rng := rand.New(rand.NewPCG(1, 2))
	const live = 6
	total := 70
	if raceOn {
		total = 40
	}
	jobs := make([]*poolJob, live)
	started := 0
	for i := range jobs {
		jobs[i] = newPoolJob(st, rng, started)
		started++
	}
	var done []*poolJob // readers at their end, read again later
	finished := 0
	for finished < total {
		i := rng.IntN(live)
		j := jobs[i]
		if j.mode == "abandon" && j.step > 0 && rng.IntN(4) == 0 {
			// Dropped midway: its buffers go to the collector, not to
			// the pool.
			jobs[i] = newPoolJob(st, rng, started)
			started++
			finished++
			continue
		}
		size := j.buf
		if j.step%5 == 3 {
			size = 0 // zero-length reads among the others
		}
		buf := make([]byte, size)
		n, err := j.r.Read(buf)
		j.step++
		if n < 0 || n > size {
			t.Fatalf("%s: read %d into %d bytes", j.key, n, size)
		}
		j.out = append(j.out, buf[:n]...)
		if err != nil {
			if n != 0 {
				t.Fatalf("%s: %d bytes with error %v", j.key, n, err)
			}
			checkPoolJob(t, k, j, err)
			done = append(done, j)
			jobs[i] = newPoolJob(st, rng, started)
			started++
			finished++
		}
		checkNoSharedBufs(t, jobs, done)
		// Read a finished reader again now and then: past its end it
		// gives nothing, and must not give its buffers back twice.
		if len(done) > 0 && rng.IntN(3) == 0 {
			d := done[rng.IntN(len(done))]
			for _, size := range []int{0, 1, fullLen, 1 << 20} {
				m, err := d.r.Read(make([]byte, size))
				want := io.EOF
				if d.mode != "ok" && d.mode != "abandon" {
					want = d.r.err
				}
				if m != 0 || err != want || err == nil {
					t.Fatalf("%s (%s): read of %d after its end: %d, %v; want 0, %v", d.key, d.mode, size, m, err, want)
				}
			}
			checkNoSharedBufs(t, jobs, done)
		}
	}
}

// checkPoolJob checks what a reader gave by its end (err).
func checkPoolJob(t *testing.T, k *Keys, j *poolJob, err error) {
	t.Helper()
	if j.r.bufs != nil || j.r.in != nil || j.r.out != nil || j.r.pend != nil {
		t.Fatalf("%s (%s): at its end (%v) the reader still holds its buffers", j.key, j.mode, err)
	}
	switch j.mode {
	case "ok", "abandon":
		if err != io.EOF {
			t.Fatalf("%s: %d bytes, reads of %d: %v", j.key, len(j.data), j.buf, err)
		}
		got, oerr := k.Open(j.key, j.out)
		if oerr != nil || !bytes.Equal(got, j.data) {
			t.Fatalf("%s: %d bytes, reads of %d: sealed %d bytes that open to %d (%v), not the data", j.key, len(j.data), j.buf, len(j.out), len(got), oerr)
		}
	default:
		if err == io.EOF {
			t.Fatalf("%s: %d bytes (%s), reads of %d: no error", j.key, len(j.data), j.mode, j.buf)
		}
		if (j.mode == "err mid" || j.mode == "err end") && !errors.Is(err, errPoolData) {
			t.Fatalf("%s: %d bytes (%s): error %v, want %v", j.key, len(j.data), j.mode, err, errPoolData)
		}
		// What it gave before the error are whole segments of the
		// data, as far as they go.
		if len(j.out)%fullLen != 0 {
			t.Fatalf("%s (%s): %d bytes before the error, not whole segments", j.key, j.mode, len(j.out))
		}
		var got []byte
		for i := 0; i < len(j.out); i += fullLen {
			var e error
			if got, e = k.openSegment(got, j.key, int64(i/fullLen), j.out[i:i+fullLen]); e != nil {
				t.Fatalf("%s (%s): segment %d before the error: %v", j.key, j.mode, i/fullLen, e)
			}
		}
		if !bytes.Equal(got, j.data[:len(got)]) {
			t.Fatalf("%s (%s): segments before the error are not the data", j.key, j.mode)
		}
	}
}

// checkNoSharedBufs fails if two readers hold the same buffers.
func checkNoSharedBufs(t *testing.T, jobs, done []*poolJob) {
	t.Helper()
	seen := map[*sealBuf]string{}
	for _, j := range append(jobs[:len(jobs):len(jobs)], done...) {
		if j.r.bufs == nil {
			continue
		}
		if other, ok := seen[j.r.bufs]; ok {
			t.Fatalf("%s and %s hold the same buffers", other, j.key)
		}
		seen[j.r.bufs] = j.key
	}
}

// partStore's Put reads part of the body and fails, the first time for
// each key; a Put that succeeds reads the body again past its end.
type partStore struct {
	remote.Store
	mu     sync.Mutex
	failed map[string]bool
}

var errPartPut = errors.New("connection reset mid-body")

func (p *partStore) Put(ctx context.Context, key string, data io.Reader, size int64) error {
	p.mu.Lock()
	fail := !p.failed[key]
	p.failed[key] = true
	p.mu.Unlock()
	if fail {
		_, _ = io.ReadFull(data, make([]byte, size/2+1))
		return errPartPut
	}
	if err := p.Store.Put(ctx, key, data, size); err != nil {
		return err
	}
	// Past its end the body gives nothing, however often it is read.
	for _, n := range []int{1, 0, fullLen} {
		if m, err := data.Read(make([]byte, n)); m != 0 || err != io.EOF {
			return fmt.Errorf("put %s: read of %d past the end: %d, %v", key, n, m, err)
		}
	}
	return nil
}

// TestAttackSealPoolConcurrentPuts puts many objects at once through
// crypt.Store over local files and memory, over a store that fails each
// key's first Put midway through its body (then put again), while other
// goroutines drop sealing readers midway; every object reads back whole
// and in ranges as its own data.
func TestAttackSealPoolConcurrentPuts(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	loc, err := local.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stores := []struct {
		name string
		st   *Store
	}{
		{"local", NewStore(loc, k)},
		{"memory", NewStore(remotetest.NewMemory(), k)},
		{"part", NewStore(&partStore{Store: remotetest.NewMemory(), failed: map[string]bool{}}, k)},
	}
	const workers, puts = 6, 6
	sizes := poolSizes
	if raceOn {
		// A batch of segments is left to the interleaving attack.
		sizes = slices.DeleteFunc(slices.Clone(sizes), func(n int) bool { return n > 2*SegmentSize+3 })
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*puts*len(stores))
	for g := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range puts {
				s := stores[(g+i)%len(stores)]
				key := fmt.Sprintf("packs/%d-%d", g, i)
				data := randBytes(sizes[rng.IntN(len(sizes))])
				if g%3 == 2 {
					// Drop a reader midway, beside the Puts.
					r := s.st.sealReader("packs/dropped", bytes.NewReader(data), int64(len(data)))
					_, _ = r.Read(make([]byte, 1+rng.IntN(2*fullLen)))
				}
				put := func() error {
					if rng.IntN(2) == 0 {
						return s.st.Put(ctx, key, iotest.HalfReader(bytes.NewReader(data)), int64(len(data)))
					}
					return remote.PutDurable(ctx, s.st, key, bytes.NewReader(data), int64(len(data)))
				}
				err := put()
				if s.name == "part" {
					if !errors.Is(err, errPartPut) {
						errs <- fmt.Errorf("%s %s: first put: %v, want %v", s.name, key, err, errPartPut)
						continue
					}
					err = put()
				}
				if err != nil {
					errs <- fmt.Errorf("%s %s: %v", s.name, key, err)
					continue
				}
				if err := checkObject(ctx, s.st, key, data, rng); err != nil {
					errs <- fmt.Errorf("%s %s (%d bytes): %v", s.name, key, len(data), err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkObject reads key back whole and in ranges at segment edges and at
// random, and compares with data.
func checkObject(ctx context.Context, st remote.Store, key string, data []byte, rng *rand.Rand) error {
	n := int64(len(data))
	type rg struct{ off, len int64 }
	ranges := []rg{{0, -1}, {0, n}}
	for _, off := range []int64{1, SegmentSize - 1, SegmentSize, SegmentSize + 1, n - 1, n / 2} {
		if off >= 0 && off < n {
			ranges = append(ranges, rg{off, -1}, rg{off, min(n-off, 1+rng.Int64N(3*SegmentSize))})
		}
	}
	for _, r := range ranges {
		rc, err := st.Get(ctx, key, r.off, r.len)
		if err != nil {
			return fmt.Errorf("get (%d, %d): %v", r.off, r.len, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("get (%d, %d): %v", r.off, r.len, err)
		}
		end := n
		if r.len >= 0 {
			end = r.off + r.len
		}
		if !bytes.Equal(got, data[r.off:end]) {
			return fmt.Errorf("get (%d, %d): %d bytes, not the data", r.off, r.len, len(got))
		}
	}
	return nil
}
