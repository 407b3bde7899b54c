package crypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
	"github.com/cassback/cassback/remote/s3"
	"github.com/cassback/cassback/remote/s3/s3test"
)

// attackSizes are plaintext sizes at every edge the sealing and opening
// readers have: a segment, a read-ahead batch of segments, and two.
var attackSizes = []int{
	0, 1, SegmentSize - 1, SegmentSize, SegmentSize + 1,
	readAhead*SegmentSize - 1, readAhead * SegmentSize, readAhead*SegmentSize + 1,
	(readAhead+1)*SegmentSize - 1, (readAhead + 1) * SegmentSize,
	2 * readAhead * SegmentSize, 2*readAhead*SegmentSize + 7,
}

// Under the race detector, which makes these tests take minutes, the
// sizes past a batch and a segment, the one-byte reader and the largest S3
// objects are left out; test.sh runs every case without it
// (TestAttack* in remote/crypt).
func init() {
	if raceOn {
		attackSizes = slices.DeleteFunc(attackSizes, func(n int) bool { return n > (readAhead+1)*SegmentSize })
		delete(dataReaders, "one byte")
	}
}

// slowReader is the reader of the S3 attack's short data: one byte a
// call, or half the buffer under the race detector.
func slowReader(r io.Reader) io.Reader {
	if raceOn {
		return iotest.HalfReader(r)
	}
	return iotest.OneByteReader(r)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// dataReaders wrap a plaintext reader in the shapes a Put's data may take.
var dataReaders = map[string]func(io.Reader) io.Reader{
	"plain":    func(r io.Reader) io.Reader { return r },
	"one byte": iotest.OneByteReader,
	"half":     iotest.HalfReader,
	"data+EOF": iotest.DataErrReader,
	"odd short": func(r io.Reader) io.Reader {
		return &choppy{r: r, sizes: []int{7, SegmentSize - 3, 1, 3*SegmentSize + 11, 0}}
	},
}

// choppy reads at most the next of sizes bytes a call, in turn, returning
// (0, nil) for a size of 0.
type choppy struct {
	r     io.Reader
	sizes []int
	i     int
}

func (c *choppy) Read(p []byte) (int, error) {
	s := c.sizes[c.i%len(c.sizes)]
	c.i++
	return c.r.Read(p[:min(len(p), s)])
}

// readSealed reads r to its end with reads of the sizes in bufs, in turn,
// and reads once more after the end.
func readSealed(r io.Reader, bufs []int) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		buf := make([]byte, bufs[i%len(bufs)])
		n, err := r.Read(buf)
		if n < 0 || n > len(buf) {
			return out, fmt.Errorf("read %d of a %d-byte buffer", n, len(buf))
		}
		out = append(out, buf[:n]...)
		if err == io.EOF {
			if n, err := r.Read(make([]byte, 100)); n != 0 || err != io.EOF {
				return out, fmt.Errorf("read after EOF: %d, %v", n, err)
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// TestAttackSealReaderData: data in every shape, read into buffers of
// mixed sizes (zero-length among them), seals to exactly SealedSize bytes
// that open to the data.
func TestAttackSealReaderData(t *testing.T) {
	k := testKeys(t)
	st := NewStore(remotetest.NewMemory(), k)
	bufPlans := [][]int{
		{0, 1, fullLen, 0, fullLen - 1, fullLen + 1, 2*fullLen - 1},
		{Overhead, Overhead + 1, 3*fullLen + 5},
		{17 * fullLen},
		{4 << 20},
	}
	for _, n := range attackSizes {
		data := randBytes(n)
		for name, wrap := range dataReaders {
			for _, plan := range bufPlans {
				r := st.sealReader("packs/x", wrap(bytes.NewReader(data)), int64(n))
				sealed, err := readSealed(r, plan)
				if err != nil {
					t.Fatalf("size %d, %s data, reads %v: %v", n, name, plan, err)
				}
				if int64(len(sealed)) != SealedSize(int64(n)) {
					t.Fatalf("size %d, %s data, reads %v: %d bytes, want %d", n, name, plan, len(sealed), SealedSize(int64(n)))
				}
				got, err := k.Open("packs/x", sealed)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("size %d, %s data, reads %v: does not open to the data (%v)", n, name, plan, err)
				}
			}
		}
	}
}

// errAfter yields n bytes of r, then err (with the last bytes when
// withData).
type errAfter struct {
	r        io.Reader
	n        int
	err      error
	withData bool
}

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, e.err
	}
	m, err := e.r.Read(p[:min(len(p), e.n)])
	e.n -= m
	if e.n == 0 && e.withData {
		return m, e.err
	}
	return m, err
}

// TestAttackSealReaderDataErrors: data that is short, long, or fails at
// any point (with or without bytes in the same call) makes the sealing
// reader fail, never end cleanly, and the failure sticks.
func TestAttackSealReaderDataErrors(t *testing.T) {
	k := testKeys(t)
	st := NewStore(remotetest.NewMemory(), k)
	boom := errors.New("boom")
	for _, n := range attackSizes {
		if n == 0 {
			continue
		}
		data := randBytes(n)
		for _, at := range []int{0, 1, n / 2, n - 1, SegmentSize - 1, SegmentSize, readAhead * SegmentSize} {
			if at >= n {
				continue
			}
			for _, withData := range []bool{false, true} {
				for _, bs := range []int{1, fullLen - 1, fullLen, 1 << 20} {
					r := st.sealReader("packs/x", &errAfter{r: bytes.NewReader(data), n: at, err: boom, withData: withData}, int64(n))
					_, err := readSealed(r, []int{bs})
					if !errors.Is(err, boom) {
						t.Fatalf("size %d, error after %d (with data %v), reads of %d: %v, want boom", n, at, withData, bs, err)
					}
					if m, err2 := r.Read(make([]byte, bs)); m != 0 || !errors.Is(err2, boom) {
						t.Fatalf("size %d: read after the error: %d, %v", n, m, err2)
					}
				}
			}
		}
		for _, d := range []int{-1, 1, SegmentSize} {
			if n+d < 0 {
				continue
			}
			for name, wrap := range dataReaders {
				r := st.sealReader("packs/x", wrap(bytes.NewReader(randBytes(n+d))), int64(n))
				sealed, err := readSealed(r, []int{fullLen})
				if err == nil {
					t.Fatalf("size %d given %d bytes (%s): no error, %d bytes sealed", n, n+d, name, len(sealed))
				}
				if int64(len(sealed)) >= SealedSize(int64(n)) {
					t.Fatalf("size %d given %d bytes (%s): all %d bytes sealed before the error", n, n+d, name, len(sealed))
				}
			}
		}
	}
}

// TestAttackPutStores puts through the stores that consume a Put's body
// differently (memory, local files, the retrying wrapper that copies a
// body it cannot seek), then reads every object back whole.
func TestAttackPutStores(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	loc, err := local.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	inners := map[string]remote.Store{
		"memory": remotetest.NewMemory(),
		"local":  loc,
		"retry":  remote.WithRetry(remotetest.NewMemory(), remote.RetryOptions{}),
	}
	for name, inner := range inners {
		st := NewStore(inner, k)
		for _, n := range attackSizes {
			data := randBytes(n)
			for rname, wrap := range dataReaders {
				if err := remote.PutDurable(ctx, st, "packs/x", wrap(bytes.NewReader(data)), int64(n)); err != nil {
					t.Fatalf("%s: put of %d bytes (%s data): %v", name, n, rname, err)
				}
				if got := getAll(t, st, "packs/x", 0, -1); !bytes.Equal(got, data) {
					t.Fatalf("%s: %d bytes put (%s data), %d read back, not the data", name, n, rname, len(got))
				}
			}
			for _, d := range []int{-1, 1} {
				if n+d < 0 {
					continue
				}
				if err := st.Put(ctx, "packs/bad", bytes.NewReader(randBytes(n+d)), int64(n)); err == nil {
					t.Fatalf("%s: put of %d bytes as %d: no error", name, n+d, n)
				}
				if _, err := st.Stat(ctx, "packs/bad"); err == nil {
					t.Fatalf("%s: put of %d bytes as %d stored an object", name, n+d, n)
				}
			}
		}
	}
}

func getAll(t *testing.T, st remote.Store, key string, off, length int64) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, off, length)
	if err != nil {
		t.Fatalf("get %s (%d, %d): %v", key, off, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("get %s (%d, %d): %v", key, off, length, err)
	}
	return b
}

// bodyStore wraps the Get bodies of its inner store.
type bodyStore struct {
	remote.Store
	wrap func(io.Reader) io.Reader
}

func (b bodyStore) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := b.Store.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{b.wrap(rc), rc}, nil
}

// TestAttackRangesAhead reads ranges at every offset and length near the
// edges of segments and of read-ahead batches, through inner bodies that
// read short, return EOF with data, or hand out (0, nil).
func TestAttackRangesAhead(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	mem := remotetest.NewMemory()
	bodies := map[string]func(io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
		"choppy":   func(r io.Reader) io.Reader { return &choppy{r: r, sizes: []int{1, fullLen + 3, 0, 5 * fullLen, 17}} },
	}
	sizes := []int{0, 1, SegmentSize, readAhead*SegmentSize - 1, readAhead * SegmentSize, readAhead*SegmentSize + 1, 2*readAhead*SegmentSize + 7}
	if raceOn {
		sizes = sizes[:len(sizes)-1]
		delete(bodies, "half")
		delete(bodies, "data+EOF")
	}
	for _, n := range sizes {
		data := randBytes(n)
		if err := NewStore(mem, k).Put(ctx, "obj", bytes.NewReader(data), int64(n)); err != nil {
			t.Fatal(err)
		}
		var edges []int
		for _, e := range []int{0, SegmentSize, readAhead * SegmentSize, (readAhead + 1) * SegmentSize, 2 * readAhead * SegmentSize, n} {
			for _, d := range []int{-1, 0, 1} {
				if e+d >= 0 {
					edges = append(edges, e+d)
				}
			}
		}
		for bname, wrap := range bodies {
			st := NewStore(bodyStore{mem, wrap}, k)
			for _, off := range edges {
				for _, l := range []int64{-1, -7, 0, 1, SegmentSize - 1, SegmentSize, readAhead * SegmentSize, readAhead*SegmentSize + 1, int64(n), math.MaxInt64, math.MaxInt64 - int64(off)} {
					rc, err := st.Get(ctx, "obj", int64(off), l)
					if off > n {
						if !errors.Is(err, remote.ErrInvalidRange) {
							t.Fatalf("%s: size %d: Get(%d, %d): %v, want ErrInvalidRange", bname, n, off, l, err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: size %d: Get(%d, %d): %v", bname, n, off, l, err)
					}
					got, err := io.ReadAll(rc)
					rc.Close()
					end := n
					if l >= 0 && l < int64(n-off) {
						end = off + int(l)
					}
					if err != nil || !bytes.Equal(got, data[off:end]) {
						t.Fatalf("%s: size %d: Get(%d, %d): %d bytes, %v; want data[%d:%d]", bname, n, off, l, len(got), err, off, end)
					}
				}
			}
		}
	}
}

// TestAttackCutAhead cuts and extends stored objects at and around
// read-ahead boundaries: every read that reaches the damage fails with
// ErrAuth, never returns wrong or missing bytes.
func TestAttackCutAhead(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	mem := remotetest.NewMemory()
	st := NewStore(mem, k)
	for _, n := range []int{readAhead * SegmentSize, readAhead*SegmentSize + 100, 2*readAhead*SegmentSize + 100} {
		data := randBytes(n)
		if err := st.Put(ctx, "a", bytes.NewReader(data), int64(n)); err != nil {
			t.Fatal(err)
		}
		orig := raw(t, mem, "a")
		var cuts []int
		for _, c := range []int{readAhead * fullLen, 2 * readAhead * fullLen, len(orig)} {
			for _, d := range []int{-Overhead - 1, -Overhead, -1, 0, 1} {
				if c+d > 0 && c+d < len(orig) {
					cuts = append(cuts, c+d)
				}
			}
		}
		for _, c := range cuts {
			if err := mem.Put(ctx, "a", bytes.NewReader(orig[:c]), int64(c)); err != nil {
				t.Fatal(err)
			}
			for _, off := range []int64{0, SegmentSize - 1, readAhead*SegmentSize - 1, readAhead * SegmentSize} {
				if off >= int64(n) {
					continue
				}
				err := readErr(st, "a", off)
				if !errors.Is(err, ErrAuth) && !errors.Is(err, remote.ErrInvalidRange) {
					t.Errorf("size %d cut to %d: Get(%d, -1): %v, want ErrAuth or ErrInvalidRange", n, c, off, err)
				}
			}
		}
		for _, extra := range []int{1, Overhead, fullLen} {
			b := append(bytes.Clone(orig), make([]byte, extra)...)
			if err := mem.Put(ctx, "a", bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			err := readErr(st, "a", 0)
			if !errors.Is(err, ErrAuth) {
				t.Errorf("size %d extended by %d: %v, want ErrAuth", n, extra, err)
			}
		}
	}
}

// TestAttackGetBodyErrors: an inner body that fails mid-stream, with or
// without bytes in the same call, ends the read with its error, never with
// EOF or wrong bytes.
func TestAttackGetBodyErrors(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	mem := remotetest.NewMemory()
	n := 2*readAhead*SegmentSize + 7
	data := randBytes(n)
	if err := NewStore(mem, k).Put(ctx, "obj", bytes.NewReader(data), int64(n)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	stored := int(SealedSize(int64(n)))
	for _, at := range []int{1, fullLen - 1, fullLen, fullLen + 1, readAhead*fullLen - 1, readAhead * fullLen, readAhead*fullLen + 1, stored - 1} {
		for _, withData := range []bool{false, true} {
			st := NewStore(bodyStore{mem, func(r io.Reader) io.Reader { return &errAfter{r: r, n: at, err: boom, withData: withData} }}, k)
			rc, err := st.Get(ctx, "obj", 0, -1)
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			if !errors.Is(err, boom) {
				t.Fatalf("body failing after %d (with data %v): %v, want boom", at, withData, err)
			}
			if !bytes.Equal(got, data[:len(got)]) {
				t.Fatalf("body failing after %d: wrong bytes before the error", at)
			}
		}
	}
}

// TestAttackS3 puts sealed objects through the S3 store, which reads a
// body it cannot seek part by part into memory (one PutObject, or
// multipart with part edges inside segments), plain and through a proxy
// that breaks requests with the retrying decorator, and reads them back
// whole and in ranges.
func TestAttackS3(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	server := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, server.URL)
	proxy.Set(s3test.Faults{Rate: 0.2, Seed: 3, Latency: time.Millisecond, Kinds: []s3test.Fault{
		s3test.Error500, s3test.SlowDown503, s3test.ResetBefore, s3test.ResetAfter}})
	opts := remote.RetryOptions{Attempts: 20, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	k := testKeys(t)
	ctx := t.Context()
	for _, faulty := range []bool{false, true} {
		for _, multi := range []bool{false, true} {
			cfg := server.Config(t)
			if multi {
				cfg.MaxSinglePut = 1 << 20
				cfg.PartSize = 5 << 20
			}
			if faulty {
				cfg.Endpoint = proxy.URL
			}
			var inner *s3.Store
			if err := remote.Retry(ctx, opts, "open", func(ctx context.Context) error {
				var err error
				inner, err = s3.Open(ctx, cfg)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			var st remote.Store = NewStore(inner, k)
			if faulty {
				st = NewStore(remote.WithRetry(inner, opts), k)
			}
			sizes := []int{0, 1, SegmentSize, readAhead*SegmentSize + 1, 5<<20 - 3, 5 << 20, 11<<20 + 5}
			if raceOn {
				sizes = []int{0, 1, SegmentSize, readAhead*SegmentSize + 1, 5<<20 + 3}
			}
			for _, n := range sizes {
				data := randBytes(n)
				for name, wrap := range dataReaders {
					if err := remote.PutDurable(ctx, st, "packs/x", wrap(bytes.NewReader(data)), int64(n)); err != nil {
						t.Fatalf("faulty %v, multipart %v: put of %d bytes (%s data): %v", faulty, multi, n, name, err)
					}
					if got := getAll(t, st, "packs/x", 0, -1); !bytes.Equal(got, data) {
						t.Fatalf("faulty %v, multipart %v: %d bytes put (%s data), %d read back, not the data", faulty, multi, n, name, len(got))
					}
				}
				for _, off := range []int{0, SegmentSize - 1, readAhead*SegmentSize - 1, readAhead * SegmentSize, n / 2, n} {
					if off > n {
						continue
					}
					for _, l := range []int64{-1, 1, readAhead*SegmentSize + 1} {
						end := n
						if l >= 0 && l < int64(n-off) {
							end = off + int(l)
						}
						if got := getAll(t, st, "packs/x", int64(off), l); !bytes.Equal(got, data[off:end]) {
							t.Fatalf("faulty %v: size %d: Get(%d, %d): %d bytes, not data[%d:%d]", faulty, n, off, l, len(got), off, end)
						}
					}
				}
				if n > 0 {
					if err := st.Put(ctx, "packs/bad", bytes.NewReader(randBytes(n+1)), int64(n)); err == nil {
						t.Fatalf("faulty %v, multipart %v: put of %d bytes as %d: no error", faulty, multi, n+1, n)
					}
					if err := st.Put(ctx, "packs/bad", slowReader(bytes.NewReader(randBytes(n-1))), int64(n)); err == nil {
						t.Fatalf("faulty %v, multipart %v: put of %d bytes as %d: no error", faulty, multi, n-1, n)
					}
					if _, err := st.Stat(ctx, "packs/bad"); err == nil {
						t.Fatalf("faulty %v, multipart %v: a bad put stored an object", faulty, multi)
					}
				}
			}
		}
	}
}

// TestAttackGetBodyCut: an inner body that breaks with io.ErrUnexpectedEOF
// (what net/http gives for a body shorter than its Content-Length) is a
// transfer cut short, not a damaged object: the read fails with that
// error, not with ErrAuth, which is permanent and means the stored bytes
// are bad.
func TestAttackGetBodyCut(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	mem := remotetest.NewMemory()
	n := 2*readAhead*SegmentSize + 7
	if err := NewStore(mem, k).Put(ctx, "obj", bytes.NewReader(randBytes(n)), int64(n)); err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{0, 1, fullLen - 1, fullLen, readAhead * fullLen, readAhead*fullLen + 1, int(SealedSize(int64(n))) - 1} {
		for _, withData := range []bool{false, true} {
			st := NewStore(bodyStore{mem, func(r io.Reader) io.Reader {
				return &errAfter{r: r, n: at, err: io.ErrUnexpectedEOF, withData: withData}
			}}, k)
			err := readErr(st, "obj", 0)
			if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrAuth) {
				t.Errorf("body cut after %d bytes (with data %v): %v, want io.ErrUnexpectedEOF and not ErrAuth", at, withData, err)
			}
		}
	}
}

// TestAttackSealReaderErrorAtEnd: data that yields exactly its size and
// then fails instead of ending (a file read error, a stream whose check at
// the end fails) must fail the Put, as the Store contract has it and as
// the plain stores do; the sealing reader must not take the error for the
// end.
func TestAttackSealReaderErrorAtEnd(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	for _, n := range attackSizes {
		for _, withData := range []bool{false, true} {
			if n == 0 && withData {
				continue
			}
			mem := remotetest.NewMemory()
			st := NewStore(mem, testKeys(t))
			data := &errAfter{r: bytes.NewReader(randBytes(n)), n: n, err: boom, withData: withData}
			if err := st.Put(ctx, "packs/x", data, int64(n)); !errors.Is(err, boom) {
				t.Errorf("size %d, error after the data (with its last bytes %v): Put gives %v, want boom", n, withData, err)
			}
			if _, err := mem.Stat(ctx, "packs/x"); err == nil {
				t.Errorf("size %d, error after the data: an object was stored", n)
			}
		}
	}
}
