package pack

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote/local"
)

// plantPack makes key in a local store a sparse file of size bytes ending
// in a trailer that claims n chunks, as someone who can write the store
// would (issue 11, item 2).
func plantPack(t *testing.T, size int64, n uint32) (*local.Store, string) {
	t.Helper()
	dir := t.TempDir()
	key := Key(chunk.Sum([]byte("planted")))
	name := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := make([]byte, TrailerSize)
	binary.LittleEndian.PutUint32(tr[32+NonceSize:], n)
	copy(tr[TrailerSize-len(Magic):], Magic)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(tr, size-TrailerSize); err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st, key
}

func allocated(fn func()) uint64 {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestReadHeaderBounded(t *testing.T) {
	tests := []struct {
		name   string
		size   int64
		budget uint64
		want   string
	}{
		// Larger than any pack: refused before a byte is read.
		{"4 GiB", 4 << 30, 1 << 20, "more than"},
		// A pack-sized object claiming the most chunks costs its header.
		{"MaxSize", MaxSize, MaxChunks*EntrySize + 4<<20, "checksum mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, key := plantPack(t, tt.size, MaxChunks)
			var err error
			n := allocated(func() { _, _, err = ReadHeader(t.Context(), st, key) })
			t.Logf("ReadHeader allocated %d KiB", n>>10)
			if n > tt.budget {
				t.Errorf("ReadHeader allocated %d KiB, want at most %d KiB", n>>10, tt.budget>>10)
			}
			if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadHeader = %v, want an error naming %s containing %q", err, key, tt.want)
			}
		})
	}
}
