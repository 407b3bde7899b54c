package survey

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cassback/cassback/chunk"
	"github.com/cassback/cassback/index"
	"github.com/cassback/cassback/index/pack"
	"github.com/cassback/cassback/remote"
	"github.com/cassback/cassback/remote/local"
	"github.com/cassback/cassback/remote/remotetest"
)

// TestConformance runs the shared suite. Its keys are all outside packs/,
// so it checks the pass-through to the meta store: a pack's data cannot be
// read back by design (TestPackStub covers packs). Every survey file the
// suite leaves must parse, which shows that the lines of its concurrent
// writers stayed whole.
func TestConformance(t *testing.T) {
	remotetest.Run(t, func(t *testing.T) remote.Store {
		s, logPath, _ := openTest(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			readEvents(t, logPath) // fails the test on a malformed line
		})
		return s
	})
}

// openTest opens a store in a fresh folder, returning it with the paths of
// its survey file and meta dir.
func openTest(t *testing.T) (*Store, string, string) {
	t.Helper()
	dir := t.TempDir()
	logPath, metaDir := filepath.Join(dir, "log", "survey.log"), filepath.Join(dir, "meta")
	s, err := Open(logPath, metaDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logPath, metaDir
}

func readEvents(t *testing.T, path string) []Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	events, err := Parse(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return events
}

// fakePack returns a pack-shaped object: data, then a header of one entry
// per chunk length and a trailer. The IDs and checksum are not real; only
// the shape matters to the stub.
func fakePack(chunkLens ...int) []byte {
	var b []byte
	for i, n := range chunkLens {
		b = append(b, bytes.Repeat([]byte{byte('a' + i)}, n)...)
	}
	for i, n := range chunkLens {
		b = append(b, bytes.Repeat([]byte{byte(i)}, 32)...)
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
	}
	b = append(b, bytes.Repeat([]byte{0xee}, 32)...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(chunkLens)))
	return append(b, "CBPACK02"...)
}

// plainReader hides the ReaderAt and Seeker of a reader, so Put streams it.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

func readAll(t *testing.T, s remote.Store, key string, off, n int64) ([]byte, error) {
	t.Helper()
	rc, err := s.Get(t.Context(), key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestPackStub(t *testing.T) {
	pack := fakePack(1000, 2000, 3000)
	size := int64(len(pack))
	tail := int64(3*36 + trailerSlack) // the header and a KiB for the trailer
	hdr := int64(3*36 + 44)            // fakePack's header and trailer
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"seekable", func() io.Reader { return bytes.NewReader(pack) }},
		{"stream", func() io.Reader { return plainReader{bytes.NewReader(pack)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, metaDir := openTest(t)
			ctx := t.Context()
			key := "packs/ab/abcdef"
			if err := s.Put(ctx, key, tc.r(), size); err != nil {
				t.Fatal(err)
			}
			info, err := s.Stat(ctx, key)
			if err != nil || info.Size != size {
				t.Fatalf("Stat: got size %d, error %v; want %d", info.Size, err, size)
			}
			var listed []remote.Info
			if err := s.List(ctx, "packs/", func(i remote.Info) error { listed = append(listed, i); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(listed) != 1 || listed[0].Key != key || listed[0].Size != size || listed[0].ETag != info.ETag {
				t.Errorf("List: got %+v, want %s with size %d and ETag %s", listed, key, size, info.ETag)
			}
			// The meta dir lists like a real store, with a small file.
			fi, err := os.Stat(filepath.Join(metaDir, "packs", "ab", "abcdef"))
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(stubHeaderSize) + tail; fi.Size() != want {
				t.Errorf("stub file: got %d bytes, want %d (16-byte stub header and the pack's last %d bytes)", fi.Size(), want, tail)
			}

			for _, r := range []struct{ off, n int64 }{
				{size - 44, 44},        // trailer
				{size - hdr, hdr - 44}, // header
				{size - tail, -1},      // all that is kept
				{size - 10, 100},       // clipped
				{size, -1}, {size, 5},  // at the end: empty
				{0, 0}, {size - tail - 1, 0}, // nothing asked: no data needed
			} {
				got, err := readAll(t, s, key, r.off, r.n)
				if err != nil {
					t.Errorf("Get(%d, %d): %v", r.off, r.n, err)
					continue
				}
				want := pack[r.off:][:clip(size, r.off, r.n)]
				if !bytes.Equal(got, want) {
					t.Errorf("Get(%d, %d): got %d bytes, want %d", r.off, r.n, len(got), len(want))
				}
			}
			for _, r := range []struct{ off, n int64 }{{0, -1}, {0, 1}, {size - tail - 1, 2}, {100, 10}} {
				_, err := readAll(t, s, key, r.off, r.n)
				if !errors.Is(err, ErrNoData) {
					t.Errorf("Get(%d, %d) of chunk data: got %v, want ErrNoData", r.off, r.n, err)
				}
			}
			for _, r := range []struct{ off, n int64 }{{size + 1, -1}, {-1, 10}} {
				if _, err := readAll(t, s, key, r.off, r.n); !errors.Is(err, remote.ErrInvalidRange) {
					t.Errorf("Get(%d, %d): got %v, want ErrInvalidRange", r.off, r.n, err)
				}
			}
		})
	}
}

// TestPackStubNotAPack: an object under packs/ without a pack trailer keeps
// its last KiB (all of a smaller one).
func TestPackStubNotAPack(t *testing.T) {
	s, _, _ := openTest(t)
	for _, n := range []int{0, 10, trailerSlack, trailerSlack + 1, 5000} {
		key := fmt.Sprintf("packs/00/x%d", n)
		data := remotetest.Data(uint64(n), n)
		if err := s.Put(t.Context(), key, plainReader{bytes.NewReader(data)}, int64(n)); err != nil {
			t.Fatal(err)
		}
		keep := min(n, trailerSlack)
		got, err := readAll(t, s, key, int64(n-keep), -1)
		if err != nil || !bytes.Equal(got, data[n-keep:]) {
			t.Errorf("%d bytes: Get of the last %d: got %d bytes, error %v", n, keep, len(got), err)
		}
		if n > keep {
			if _, err := readAll(t, s, key, int64(n-keep-1), -1); !errors.Is(err, ErrNoData) {
				t.Errorf("%d bytes: Get before the last %d: got %v, want ErrNoData", n, keep, err)
			}
		}
	}
}

// TestPackStubHugeHeader: a header beyond maxStreamTail is kept whole from
// a seekable reader, and in part from a stream.
func TestPackStubHugeHeader(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 4 MB pack")
	}
	lens := make([]int, maxStreamTail/36+10)
	for i := range lens {
		lens[i] = 1
	}
	pack := fakePack(lens...)
	size := int64(len(pack))
	hdrStart := size - 44 - int64(len(lens))*36
	s, _, _ := openTest(t)
	if err := s.Put(t.Context(), "packs/aa/seek", bytes.NewReader(pack), size); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "packs/aa/stream", plainReader{bytes.NewReader(pack)}, size); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, s, "packs/aa/seek", hdrStart-trailerSlack+44, -1); err != nil || !bytes.Equal(got, pack[hdrStart-trailerSlack+44:]) {
		t.Errorf("seekable: Get of the header: got %d bytes, error %v", len(got), err)
	}
	if got, err := readAll(t, s, "packs/aa/stream", size-maxStreamTail, -1); err != nil || !bytes.Equal(got, pack[size-maxStreamTail:]) {
		t.Errorf("stream: Get of the last %d bytes: got %d bytes, error %v", maxStreamTail, len(got), err)
	}
	if _, err := readAll(t, s, "packs/aa/stream", hdrStart, -1); !errors.Is(err, ErrNoData) {
		t.Errorf("stream: Get of the whole header: got %v, want ErrNoData", err)
	}
}

type errReader struct{ n int }

func (e *errReader) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, errors.New("boom")
	}
	k := min(len(p), e.n)
	e.n -= k
	return k, nil
}

// TestPackPutBadData: a pack Put whose data is short, long or failing
// stores nothing and logs nothing, by either path.
func TestPackPutBadData(t *testing.T) {
	s, logPath, _ := openTest(t)
	pack := fakePack(100)
	n := int64(len(pack))
	for _, tc := range []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"short-seek", bytes.NewReader(pack[:n-1]), n},
		{"long-seek", bytes.NewReader(pack), n - 1},
		{"short-stream", plainReader{bytes.NewReader(pack[:n-1])}, n},
		{"long-stream", plainReader{bytes.NewReader(pack)}, n - 1},
		{"fails", &errReader{n: 50}, n},
		{"negative", bytes.NewReader(nil), -1},
	} {
		key := "packs/ba/" + tc.name
		if err := s.Put(t.Context(), key, tc.r, tc.size); err == nil {
			t.Errorf("%s: Put: got nil error, want one", tc.name)
		}
		if _, err := s.meta.Stat(t.Context(), key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: stub after a failed Put: got %v, want none", tc.name, err)
		}
	}
	for _, e := range readEvents(t, logPath) {
		if e.Op == OpStored {
			t.Errorf("failed Put logged: %s", e)
		}
	}
}

// TestLog pins the survey lines of each operation, with a fixed clock.
func TestLog(t *testing.T) {
	s, logPath, _ := openTest(t)
	ctx := t.Context()
	tick := time.Date(2026, 11, 26, 1, 2, 3, 123456789, time.UTC)
	s.now = func() time.Time { tick = tick.Add(time.Second); return tick }
	pack := fakePack(5000)
	put := func(key string, b []byte) {
		t.Helper()
		if err := s.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	put("config", []byte("cfg"))
	put("packs/ab/ab01", pack)
	if _, err := s.Stat(ctx, "packs/ab/ab01"); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, s, "packs/ab/ab01", int64(len(pack)-44), 44); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, s, "config", 1, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "packs/zz/none", 0, -1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := s.List(ctx, "", func(remote.Info) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListDirs(ctx, "packs/"); err != nil {
		t.Fatal(err)
	}
	etag, err := s.PutIf(ctx, "gc/lease", []byte("lease-1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIf(ctx, "gc/lease", []byte("x"), ""); !errors.Is(err, remote.ErrPrecondition) {
		t.Fatal(err)
	}
	if _, err := s.PutIf(ctx, "gc/lease", []byte("lease-22"), etag); err != nil {
		t.Fatal(err)
	}
	put("config", []byte("config"))
	if err := s.Delete(ctx, "packs/ab/ab01"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "packs/ab/ab01"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := len(pack) // 5000 + 36 + 44 = 5080
	want := fmt.Sprintf(`2026-11-26T01:02:04.123456Z stored config 3
2026-11-26T01:02:05.123456Z stored packs/ab/ab01 %d
2026-11-26T01:02:06.123456Z stat packs/ab/ab01 %d
2026-11-26T01:02:07.123456Z restored packs/ab/ab01 44
2026-11-26T01:02:08.123456Z restored config 2
2026-11-26T01:02:09.123456Z missing nothing 0
2026-11-26T01:02:10.123456Z missing packs/zz/none 0
2026-11-26T01:02:11.123456Z listed * 2
2026-11-26T01:02:12.123456Z listed-dirs packs/* 1
2026-11-26T01:02:13.123456Z stored gc/lease 7
2026-11-26T01:02:14.123456Z conflict gc/lease 0
2026-11-26T01:02:15.123456Z stored gc/lease 8 replaced 7
2026-11-26T01:02:16.123456Z stored config 6 replaced 3
2026-11-26T01:02:17.123456Z removed packs/ab/ab01 %d
2026-11-26T01:02:18.123456Z removed packs/ab/ab01 0
`, p, p, p)
	if string(got) != want {
		t.Errorf("survey file:\n%s\nwant:\n%s", got, want)
	}
	if err := s.Put(ctx, "config", strings.NewReader("x"), 1); err == nil {
		t.Errorf("Put after Close: got nil error, want one (the survey would miss it)")
	}
}

// TestConcurrentLines: lines of many goroutines are whole and in time order.
func TestConcurrentLines(t *testing.T) {
	s, logPath, _ := openTest(t)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("packs/%02x/w%d-%d", w, w, i)
				b := fakePack(i + 1)
				if err := s.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	events := readEvents(t, logPath)
	if len(events) != writers*each {
		t.Fatalf("got %d lines, want %d", len(events), writers*each)
	}
	var total int64
	for i, e := range events {
		total += e.N
		if i > 0 && e.Time.Before(events[i-1].Time) {
			t.Errorf("line %d is earlier than line %d", i+1, i)
		}
	}
	// Σ over i of (i+1) + 36 + 44, for each writer.
	want := int64(writers) * (each*(each+1)/2 + each*80)
	if total != want {
		t.Errorf("bytes stored: got %d, want %d", total, want)
	}
}

// TestRealPacks writes real packs with index.Writer through the survey
// store: their headers read back with index.ReadPackHeader, a fresh index
// loads from the store, and fetching a chunk fails with ErrNoData.
func TestRealPacks(t *testing.T) {
	s, logPath, _ := openTest(t)
	ctx := t.Context()
	cfg, err := index.NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	w, err := index.NewWriter(ctx, s, index.New(), cfg, index.WriterOptions{Host: "h", PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p := w.NewPacker()
	var ids []chunk.ID
	for i := range 40 {
		d := remotetest.Data(uint64(i), 100_000+i)
		id := chunk.Sum(d)
		ids = append(ids, id)
		if _, err := p.Add(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	chunks, packs := 0, 0
	err = s.List(ctx, "packs/", func(info remote.Info) error {
		entries, size, err := pack.ReadHeader(ctx, s, info.Key)
		if err != nil {
			return err
		}
		if size != info.Size {
			t.Errorf("%s: ReadPackHeader size %d, List size %d", info.Key, size, info.Size)
		}
		packs++
		chunks += len(entries)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if chunks != len(ids) || packs < 2 {
		t.Errorf("pack headers: got %d chunks in %d packs, want %d chunks in 2 or more", chunks, packs, len(ids))
	}

	idx := index.New()
	if _, err := idx.Load(ctx, s, ""); err != nil {
		t.Fatal(err)
	}
	if idx.Len() != len(ids) {
		t.Errorf("index loaded from the survey: %d chunks, want %d", idx.Len(), len(ids))
	}
	var fetchErr error
	err = index.Fetch(ctx, s, idx, ids[:1], index.FetchOptions{}, func(_ chunk.ID, _ []byte, err error) error {
		fetchErr = err
		return nil
	})
	if err != nil || !errors.Is(fetchErr, ErrNoData) {
		t.Errorf("Fetch of a chunk: got %v, %v; want ErrNoData", err, fetchErr)
	}

	// The survey's stored bytes equal the store's logical size.
	var listed int64
	if err := s.List(ctx, "", func(i remote.Info) error { listed += i.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r := Summarize(readEvents(t, logPath), time.Time{})
	if r.FinalBytes() != listed {
		t.Errorf("survey report: %d bytes stored, store lists %d", r.FinalBytes(), listed)
	}
}

// TestTreeNodesKept checks that the survey store keeps the nodes of
// manifests' trees and not the file chunks of the pack they share
// (index.Writer.AddTree puts a commit's nodes after its open pack's
// chunks), nor of a pack of nodes only.
func TestTreeNodesKept(t *testing.T) {
	for _, withChunks := range []bool{true, false} {
		t.Run(fmt.Sprint("with chunks ", withChunks), func(t *testing.T) {
			s, _, _ := openTest(t)
			ctx := t.Context()
			cfg, err := index.NewConfig()
			if err != nil {
				t.Fatal(err)
			}
			idx := index.New()
			w, err := index.NewWriter(ctx, s, idx, cfg, index.WriterOptions{Host: "h"})
			if err != nil {
				t.Fatal(err)
			}
			p := w.NewPacker()
			var chunks []chunk.ID
			for i := range 3 {
				if !withChunks {
					break
				}
				d := remotetest.Data(uint64(i), 100_000+i)
				chunks = append(chunks, chunk.Sum(d))
				if _, err := p.Add(ctx, chunks[i], d); err != nil {
					t.Fatal(err)
				}
			}
			var nodes []chunk.ID
			var data [][]byte
			for i := range 5 {
				d := remotetest.Data(uint64(100+i), 3000+i)
				nodes, data = append(nodes, chunk.Sum(d)), append(data, d)
			}
			if err := w.AddTree(ctx, nodes, data, true); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			n := 0
			s.List(ctx, "packs/", func(remote.Info) error { n++; return nil })
			if n != 1 {
				t.Errorf("%d packs, want the one that holds chunks and nodes", n)
			}
			got := map[chunk.ID]error{}
			var mu sync.Mutex // Fetch calls back from several goroutines
			err = index.Fetch(ctx, s, idx, append(slices.Clone(nodes), chunks...), index.FetchOptions{}, func(id chunk.ID, _ []byte, err error) error {
				mu.Lock()
				got[id] = err
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range nodes {
				if err, ok := got[id]; !ok || err != nil {
					t.Errorf("tree node %s: %v (fetched %v), want it kept", id, err, ok)
				}
			}
			for _, id := range chunks {
				if err := got[id]; !errors.Is(err, ErrNoData) {
					t.Errorf("file chunk %s: got %v, want ErrNoData", id, err)
				}
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("2026-11-26T01:02:03.000000Z stored config 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, log, meta, wantErr string
	}{
		{"new folders", filepath.Join(dir, "a", "b", "survey.log"), filepath.Join(dir, "c", "meta"), ""},
		{"existing file", file, filepath.Join(dir, "m2"), ""},
		{"log is a folder", dir, filepath.Join(dir, "m3"), "not a regular file"},
		{"log is a fifo", fifo, filepath.Join(dir, "m4"), "not a regular file"},
		{"log inside meta", filepath.Join(dir, "m5", "survey.log"), filepath.Join(dir, "m5"), "inside the meta dir"},
		{"meta is a file", filepath.Join(dir, "s6.log"), file, "not a directory"},
		{"no meta", filepath.Join(dir, "s7.log"), "", "meta dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.log, tc.meta)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Open: got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Put(t.Context(), "k", strings.NewReader("v"), 1); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(tc.meta); err != nil || !fi.IsDir() {
				t.Errorf("meta dir: %v", err)
			}
			if _, err := local.Open(tc.meta); err != nil {
				t.Error(err)
			}
			events := readEvents(t, tc.log)
			if last := events[len(events)-1]; last.Op != OpStored || last.Key != "k" {
				t.Errorf("last line: got %s, want stored k", last)
			}
			if tc.log == file && len(events) != 2 {
				t.Errorf("existing file: got %d lines, want the old one and a new one", len(events))
			}
		})
	}
}

// TestNotAStub: a meta dir holding real packs is reported, not misread.
func TestNotAStub(t *testing.T) {
	s, _, metaDir := openTest(t)
	m, err := local.Open(metaDir)
	if err != nil {
		t.Fatal(err)
	}
	pack := fakePack(10)
	if err := m.Put(t.Context(), "packs/cd/real", bytes.NewReader(pack), int64(len(pack))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "packs/cd/real"); err == nil || !strings.Contains(err.Error(), "not a survey pack stub") {
		t.Errorf("Stat of a real pack: got %v, want \"not a survey pack stub\"", err)
	}
}
