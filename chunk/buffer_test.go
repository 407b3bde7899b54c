package chunk

import (
	"bytes"
	"context"
	"runtime"
	"testing"
)

// TestSplitHeap checks what a Split of 48 MiB with the default chunk sizes (MaxSize 16 MiB) allocates in the
// Go heap: the chunk buffer is mapped outside it on unix, and is never grown by append (which left about
// 64 MiB of garbage on the way to 16 MiB).
func TestSplitHeap(t *testing.T) {
	data := vectorData()
	p := DefaultParams(TestPol)
	want := uint64(4 << 20) // the chunker's 512 KiB, the refs, the hashers
	if !mapsBuffers {
		want += uint64(p.MaxSize)
	}
	runtime.GC()
	runtime.GC() // the pool drops its workers after two collections: the first Split makes one
	for i := range 2 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f, err := Split(context.Background(), bytes.NewReader(data), int64(len(data)), p, 1, func(Chunk) error { return nil })
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, f, data, p)
		if got := after.TotalAlloc - before.TotalAlloc; got > want {
			t.Errorf("split %d allocated %d KiB in the heap, want at most %d KiB", i, got>>10, want>>10)
		}
	}
}

// TestRegion writes every byte of buffers of several sizes, replacing and freeing them.
func TestRegion(t *testing.T) {
	r := &region{}
	for _, n := range []int{1, 4096, 1 << 20, 3<<20 + 1} {
		r.resize(n)
		if len(r.b) != 0 || cap(r.b) != n {
			t.Fatalf("resize(%d): len %d, cap %d", n, len(r.b), cap(r.b))
		}
		b := r.b[:n]
		for i := range b {
			if b[i] != 0 {
				t.Fatalf("resize(%d): byte %d is %d, want 0", n, i, b[i])
			}
			b[i] = byte(i)
		}
	}
	r.free()
	r.free() // twice is harmless
	if r.b != nil {
		t.Errorf("free left a buffer")
	}
}
