package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/remote/local"
)

// Manifests from a store someone hostile can write (issue 11, item 2):
// reading one never costs much more than the manifest it decodes to.

// allocated returns how many bytes fn allocates, freed or not, and how
// many of them are still in use after it (what it returns). Tests that use
// it do not run in parallel.
func allocated(fn func()) (total, kept uint64) {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	total = b.TotalAlloc - a.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&b)
	return total, b.HeapAlloc - min(b.HeapAlloc, a.HeapAlloc)
}

// bigManifest returns a valid manifest of one table holding files of 1000
// chunks each, chunks in all.
func bigManifest(chunks int) *Manifest {
	mtime := time.Date(2026, 11, 25, 23, 59, 59, 0, time.UTC)
	m := &Manifest{Format: FormatVersion, Host: "h", Keyspace: "ks", Time: time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC),
		Session: "0123456789abcdef01234567", Tables: []Table{{Name: "t", ID: id32}}}
	m.Name = BackupName(m.Time, m.Keyspace, m.Host)
	for i := 0; i < chunks; i += 1000 {
		f := File{Path: fmt.Sprintf("ks/t-%s/nb-%d-big-Data.db", id32, i+1), Root: "/var/lib/cassandra/data", Mode: 0o644,
			MTime: mtime, Sum: chunk.Sum([]byte{byte(i), byte(i >> 8), byte(i >> 16)})}
		for k := range min(1000, chunks-i) {
			f.Chunks = append(f.Chunks, chunk.Ref{ID: chunk.Sum(fmt.Appendf(nil, "%d.%d", i, k)), Len: 4 << 20})
			f.Size += 4 << 20
		}
		m.Tables[0].Files = append(m.Tables[0].Files, f)
	}
	m.Sort()
	return m
}

// A manifest object of 4 GiB (sparse) costs nothing to refuse.
func TestGetRefusesHugeManifest(t *testing.T) {
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := BackupName(time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC), "ks", "h")
	key, _ := Key(name)
	file := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 4<<30); err != nil {
		t.Fatal(err)
	}
	total, _ := allocated(func() { _, err = Get(t.Context(), st, name, memChunks{}) })
	t.Logf("Get allocated %d KiB: %v", total>>10, err)
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("Get = %v, want an error naming %s", err, name)
	}
	if total > 8<<20 {
		t.Errorf("Get allocated %d MiB, want at most 8 MiB", total>>20)
	}
}

// GetHeader reads the manifest object alone: the header and each table's
// count and bytes, allocating a small part of what Get does.
func TestGetHeader(t *testing.T) {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := bigManifest(200_000)
	mc := memChunks{}
	if err := putManifest(t.Context(), st, m, mc); err != nil {
		t.Fatal(err)
	}
	var h *Manifest
	small, _ := allocated(func() { h, err = GetHeader(t.Context(), st, m.Name) })
	if err != nil {
		t.Fatal(err)
	}
	full, _ := allocated(func() { _, err = Get(t.Context(), st, m.Name, mc) })
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != m.Name || h.Session != m.Session || !h.Time.Equal(m.Time) || len(h.Tables) != 1 ||
		h.Tables[0].Count != len(m.Tables[0].Files) || h.Tables[0].Bytes != m.TotalSize() || len(h.Tables[0].Files) != 0 {
		t.Errorf("GetHeader = %+v", h)
	}
	t.Logf("GetHeader allocated %d KiB, Get %d KiB", small>>10, full>>10)
	if small > full/20 {
		t.Errorf("GetHeader allocated %d KiB, over a twentieth of Get's %d KiB", small>>10, full>>10)
	}
}
