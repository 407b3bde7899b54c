package crypt

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"strconv"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/remotetest"
)

func testKeys(t *testing.T) *Keys {
	t.Helper()
	master := make([]byte, 32)
	rand.Read(master)
	k, err := NewKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStoreContract(t *testing.T) {
	k := testKeys(t)
	remotetest.Run(t, func(t *testing.T) remote.Store { return NewStore(remotetest.NewMemory(), k) })
}

func TestSizes(t *testing.T) {
	for _, n := range []int64{0, 1, SegmentSize - 1, SegmentSize, SegmentSize + 1, 3*SegmentSize + 17, 5 * SegmentSize} {
		c := SealedSize(n)
		got, ok := PlainSize(c)
		if !ok || got != n {
			t.Errorf("PlainSize(SealedSize(%d) = %d) = %d, %v; want %d, true", n, c, got, ok, n)
		}
		k := testKeys(t)
		b, err := k.Seal("x", make([]byte, n))
		if err != nil || int64(len(b)) != c {
			t.Errorf("Seal of %d bytes: %d bytes, %v; want %d", n, len(b), err, c)
		}
	}
	for c := int64(0); c < 3*fullLen; c++ {
		if n, ok := PlainSize(c); ok && SealedSize(n) != c {
			t.Fatalf("PlainSize(%d) = %d, but that seals to %d", c, n, SealedSize(n))
		}
	}
}

// TestRanges reads every range of a few sizes across segment edges.
func TestRanges(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	st := NewStore(remotetest.NewMemory(), k)
	for _, n := range []int{0, 5, SegmentSize, 2*SegmentSize + 3} {
		data := make([]byte, n)
		rand.Read(data)
		if err := st.Put(ctx, "obj", bytes.NewReader(data), int64(n)); err != nil {
			t.Fatal(err)
		}
		edges := []int{0, 1, 4, 5, 6, SegmentSize - 1, SegmentSize, SegmentSize + 1, 2 * SegmentSize, 2*SegmentSize + 3}
		for _, off := range edges {
			for _, l := range []int{-1, 0, 1, 2, SegmentSize, 3 * SegmentSize} {
				rc, err := st.Get(ctx, "obj", int64(off), int64(l))
				if off > n {
					if !errors.Is(err, remote.ErrInvalidRange) {
						t.Errorf("size %d: Get(%d, %d): %v, want ErrInvalidRange", n, off, l, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("size %d: Get(%d, %d): %v", n, off, l, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				end := n
				if l >= 0 {
					end = min(n, off+l)
				}
				if err != nil || !bytes.Equal(got, data[off:end]) {
					t.Fatalf("size %d: Get(%d, %d): %d bytes, %v; want data[%d:%d]", n, off, l, len(got), err, off, end)
				}
			}
		}
	}
}

// TestTamper changes, cuts, extends, moves and swaps stored segments: every
// such object fails to open with ErrAuth naming its key.
func TestTamper(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t)
	mem := remotetest.NewMemory()
	st := NewStore(mem, k)
	data := make([]byte, 2*SegmentSize+100)
	rand.Read(data)
	put := func(key string) []byte {
		if err := st.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		return raw(t, mem, key)
	}
	orig := put("a")
	other := put("b")
	cases := map[string][]byte{
		"flip first byte":       flip(orig, 0),
		"flip nonce":            flip(orig, 5),
		"flip ciphertext":       flip(orig, 1000),
		"flip last tag":         flip(orig, len(orig)-1),
		"flip second segment":   flip(orig, fullLen+50),
		"cut last segment":      orig[:2*fullLen],
		"cut a byte":            orig[:len(orig)-1],
		"add a byte":            append(bytes.Clone(orig), 0),
		"swap segments":         append(append(bytes.Clone(orig[fullLen:2*fullLen]), orig[:fullLen]...), orig[2*fullLen:]...),
		"object of another key": other,
	}
	for name, b := range cases {
		if err := mem.Put(ctx, "a", bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		err := readErr(st, "a", 0)
		if !errors.Is(err, ErrAuth) || !bytes.Contains([]byte(err.Error()), []byte("a: ")) {
			t.Errorf("%s: read gives %v, want ErrAuth naming the key", name, err)
		}
	}
	// A wrong key opens nothing.
	if err := mem.Put(ctx, "a", bytes.NewReader(orig), int64(len(orig))); err != nil {
		t.Fatal(err)
	}
	err := readErr(NewStore(mem, testKeys(t)), "a", 0)
	if !errors.Is(err, ErrAuth) {
		t.Errorf("read under another key: %v, want ErrAuth", err)
	}
}

// TestExempt passes exempt keys through as they are.
func TestExempt(t *testing.T) {
	ctx := context.Background()
	mem := remotetest.NewMemory()
	st := NewStore(mem, testKeys(t), "config", "keys/")
	for _, key := range []string{"config", "keys/x"} {
		if err := st.Put(ctx, key, bytes.NewReader([]byte("plain")), 5); err != nil {
			t.Fatal(err)
		}
		if got := raw(t, mem, key); string(got) != "plain" {
			t.Errorf("%s stored as %q, want plain", key, got)
		}
	}
	if err := st.Put(ctx, "packs/x", bytes.NewReader([]byte("plain")), 5); err != nil {
		t.Fatal(err)
	}
	if got := raw(t, mem, "packs/x"); bytes.Contains(got, []byte("plain")) || int64(len(got)) != SealedSize(5) {
		t.Errorf("packs/x stored as %q, want sealed", got)
	}
}

func TestPutSizeMismatch(t *testing.T) {
	ctx := context.Background()
	st := NewStore(remotetest.NewMemory(), testKeys(t))
	for _, n := range []int{4, 6, SegmentSize + 1} {
		if err := st.Put(ctx, "k", bytes.NewReader(make([]byte, n)), 5); err == nil {
			t.Errorf("Put of %d bytes as 5: no error", n)
		}
		if _, err := st.Stat(ctx, "k"); err == nil {
			t.Errorf("Put of %d bytes as 5 stored an object", n)
		}
	}
}

func raw(t *testing.T, st remote.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

func BenchmarkSeal(b *testing.B) {
	master := make([]byte, 32)
	k, _ := NewKeys(master)
	data := make([]byte, 4<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := k.Seal("packs/x", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	master := make([]byte, 32)
	k, _ := NewKeys(master)
	data := make([]byte, 4<<20)
	s, _ := k.Seal("packs/x", data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := k.Open("packs/x", s); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSegmentKeyReuse: aead, whose keyed hashers are pooled and reused,
// seals each segment under the key a fresh keyed hash gives
// (chunk.KeyedSum of the nonce's first half), however often it runs.
func TestSegmentKeyReuse(t *testing.T) {
	k := testKeys(t)
	plain := []byte("a segment's plaintext")
	for i := range 5 {
		n := []byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
		sk := chunk.KeyedSum(&k.data, n)
		b, err := aes.NewCipher(sk[:])
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		nonce := make([]byte, 12)
		want := g.Seal(nil, nonce, plain, nil)
		if got := k.aead(n).Seal(nil, nonce, plain, nil); !bytes.Equal(got, want) {
			t.Fatalf("use %d: sealed %x, want %x (the key of a fresh keyed hash)", i, got, want)
		}
	}
}

// TestSealReaderReadSizes: whatever the caller's buffer, the sealing
// reader yields an object that opens to its data, of SealedSize bytes,
// and fails on data shorter or longer than its size.
func TestSealReaderReadSizes(t *testing.T) {
	k := testKeys(t)
	st := NewStore(remotetest.NewMemory(), k)
	sizes := []int{0, 1, SegmentSize - 1, SegmentSize, SegmentSize + 1, readAhead * SegmentSize, readAhead*SegmentSize + 5, 2*readAhead*SegmentSize + SegmentSize}
	bufs := []int{1, 100, fullLen - 1, fullLen, 3*fullLen + 7, 1 << 20}
	for _, n := range sizes {
		data := make([]byte, n)
		rand.Read(data)
		for _, bs := range bufs {
			r := st.sealReader("packs/x", bytes.NewReader(data), int64(n))
			var sealed []byte
			buf := make([]byte, bs)
			short := false
			for {
				m, err := r.Read(buf)
				sealed = append(sealed, buf[:m]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("size %d, reads of %d: %v", n, bs, err)
				}
				// Every read fills the buffer but the last before the
				// end: a copy writes whole buffers, not a segment's tail.
				if short && m > 0 {
					t.Fatalf("size %d, reads of %d: a read of %d bytes after a short one", n, bs, m)
				}
				short = short || m < bs
			}
			if int64(len(sealed)) != SealedSize(int64(n)) {
				t.Fatalf("size %d, reads of %d: %d bytes sealed, want %d", n, bs, len(sealed), SealedSize(int64(n)))
			}
			got, err := k.Open("packs/x", sealed)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d, reads of %d: opens to %d bytes (%v), not the data", n, bs, len(got), err)
			}
		}
		for _, d := range []int{-1, 1} {
			if n+d < 0 {
				continue
			}
			r := st.sealReader("packs/x", bytes.NewReader(make([]byte, n+d)), int64(n))
			if _, err := io.Copy(io.Discard, r); err == nil {
				t.Errorf("size %d given %d bytes: no error", n, n+d)
			}
		}
	}
}

// TestSealReaderAllocs: sealing a large object into a large buffer
// allocates a bounded amount, not a buffer a segment.
func TestSealReaderAllocs(t *testing.T) {
	k := testKeys(t)
	st := NewStore(remotetest.NewMemory(), k)
	data := make([]byte, 64*SegmentSize)
	buf := make([]byte, 1<<20)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	r := st.sealReader("packs/x", bytes.NewReader(data), int64(len(data)))
	for {
		if _, err := r.Read(buf); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&ms1)
	// The read-ahead buffer (1 MiB) and small per-segment values; a
	// buffer a segment would be 4 MiB more.
	if got := ms1.TotalAlloc - ms0.TotalAlloc; got > 3<<20 {
		t.Errorf("sealing %d bytes allocated %d bytes", len(data), got)
	}
}

// TestSealReaderReusesBuffers: a sealing reader that reached its end
// leaves its buffers to the next one, and neither gives the other's bytes.
func TestSealReaderReusesBuffers(t *testing.T) {
	k := testKeys(t)
	st := NewStore(remotetest.NewMemory(), k)
	data := make([]byte, 20*SegmentSize+5)
	rand.Read(data)
	sealed := make([]byte, SealedSize(int64(len(data))))
	var alloc uint64 // bytes allocated while sealing
	const runs = 10
	for i := range runs {
		key := "packs/" + strconv.Itoa(i)
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		r := st.sealReader(key, bytes.NewReader(data), int64(len(data)))
		n, err := io.ReadFull(r, sealed)
		if err != nil {
			t.Fatal(err)
		}
		// The end, and reads past it, give nothing, whoever has the
		// buffers now.
		for range 2 {
			if m, err := r.Read(sealed[:1]); m != 0 || err != io.EOF {
				t.Fatalf("read at the end: %d, %v", m, err)
			}
		}
		runtime.ReadMemStats(&ms1)
		alloc += ms1.TotalAlloc - ms0.TotalAlloc
		got, err := k.Open(key, sealed[:n])
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("object %d sealed with reused buffers: %v (equal %v)", i, err, bytes.Equal(got, data))
		}
	}
	// Each seal without reuse takes 1 MiB of read-ahead and a segment;
	// with it, only small values a segment (and once the buffers). The
	// race detector makes sync.Pool drop a share of what it is given.
	if per := alloc / runs; per > 512<<10 && !raceOn {
		t.Errorf("%d bytes allocated a seal of %d bytes", per, len(data))
	}
}

// readErr reads key through st from off to its end and returns the error
// of the Get or of the reading.
func readErr(st remote.Store, key string, off int64) error {
	rc, err := st.Get(context.Background(), key, off, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	return err
}
