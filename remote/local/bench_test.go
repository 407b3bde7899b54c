package local_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/cassback/cassback/remote/remotetest"
)

// packSize is the target pack size; see docs/design.md.
const packSize = 32 << 20

// BenchmarkPut32MiB stores a new pack per iteration: write, fsync, rename,
// directory fsync.
func BenchmarkPut32MiB(b *testing.B) {
	s := newStore(b)
	data := remotetest.Data(1, packSize)
	b.SetBytes(packSize)
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("packs/%02x/%08d", i%256, i)
		if err := s.Put(b.Context(), key, bytes.NewReader(data), packSize); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGet32MiB reads a whole pack, mostly from the page cache.
func BenchmarkGet32MiB(b *testing.B) {
	s := newStore(b)
	put(b, s, "packs/00/pack", remotetest.Data(2, packSize))
	b.SetBytes(packSize)
	for b.Loop() {
		rc, err := s.Get(b.Context(), "packs/00/pack", 0, -1)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, rc); err != nil || n != packSize {
			b.Fatalf("read %d bytes, %v", n, err)
		}
		rc.Close()
	}
}

// BenchmarkGetRange64KiB reads one chunk from the middle of a pack, as a
// restore does.
func BenchmarkGetRange64KiB(b *testing.B) {
	s := newStore(b)
	put(b, s, "packs/00/pack", remotetest.Data(3, packSize))
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		rc, err := s.Get(b.Context(), "packs/00/pack", packSize/2, int64(len(buf)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(rc, buf); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// BenchmarkPutIfSmall renews a lease: a small compare-and-swap write.
func BenchmarkPutIfSmall(b *testing.B) {
	s := newStore(b)
	etag, err := s.PutIf(b.Context(), "sessions/n/s", []byte("start"), "")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if etag, err = s.PutIf(b.Context(), "sessions/n/s", []byte("heartbeat"), etag); err != nil {
			b.Fatal(err)
		}
	}
}
