package chunk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic/chunker"
)

// testParams cut 48 MiB into about 190 chunks in 6 segments.
var testParams = Params{Pol: TestPol, MinSize: 128 << 10, MaxSize: 1 << 20, AvgBits: 17, Segment: 8 << 20}

// tinyParams give chunks of about 2 KiB in 64 KiB segments, so small inputs exercise every path quickly.
var tinyParams = Params{Pol: TestPol, MinSize: 1 << 10, MaxSize: 8 << 10, AvgBits: 10, Segment: 64 << 10}

// randomBytes returns n pseudo-random bytes, the same for the same seed on every platform and Go version.
func randomBytes(seed byte, n int) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

var vectorData = sync.OnceValue(func() []byte { return randomBytes(48, 48<<20) })

// emptySum is the BLAKE3-256 of no bytes, from the BLAKE3 reference test vectors.
const emptySum = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"

// vectorSum is the BLAKE3-256 of vectorData.
const vectorSum = "f037f26a75951adf5366fd442394d40d3af331173bdc7293fd5a532417a5e92d"

// TestSplitVector pins the chunk boundaries and IDs of 48 MiB of fixed pseudo-random bytes. If it fails,
// chunking has changed and every store made before would stop deduplicating against new backups.
func TestSplitVector(t *testing.T) {
	data := vectorData()
	tests := []struct {
		name string
		p    Params
		lens []uint32 // every chunk's length, in order
		ids  []string // the first chunks' IDs
	}{
		{
			name: "test params",
			p:    testParams,
			lens: []uint32{
				134916, 212138, 371742, 208688, 297721, 223406, 288215, 153776,
				183866, 202431, 158092, 595546, 179055, 192573, 257572, 507940,
				290988, 490919, 381827, 131765, 341793, 288237, 144777, 157366,
				154702, 472896, 236784, 133339, 208941, 414114, 333896, 38587,
				155769, 291066, 385060, 182216, 210041, 169661, 134588, 161268,
				272727, 402031, 135336, 139114, 177146, 150979, 313052, 232772,
				247928, 382590, 135106, 193701, 209193, 291791, 232582, 222353,
				137645, 165490, 191151, 285895, 144717, 246787, 415565, 481584,
				610172, 195305, 86227, 333621, 189276, 163278, 318059, 246255,
				194720, 241484, 223609, 207738, 151169, 267718, 149196, 332926,
				174778, 276790, 597190, 159878, 139705, 192680, 263503, 167561,
				146959, 744312, 394820, 159237, 471348, 223446, 152800, 472208,
				160270, 161104, 201113, 109857, 163948, 212593, 146550, 136022,
				140653, 252819, 217638, 231129, 187723, 571587, 191052, 309383,
				293311, 252704, 181645, 506271, 222778, 386751, 135771, 436477,
				198164, 228926, 138727, 215931, 144776, 246401, 210656, 205414,
				230932, 605883, 165091, 150269, 357040, 113593, 134141, 171957,
				135257, 177518, 151305, 220708, 205969, 207225, 245117, 195455,
				168383, 137200, 310896, 442241, 290566, 293346, 207522, 234595,
				287024, 133257, 187256, 383435, 140130, 354336, 249224, 316233,
				172902, 281862, 223016, 151054, 284886, 203182, 190211, 371081,
				447864, 82254, 214804, 194924, 236572, 172046, 320735, 200699,
				201975, 153820, 367764, 344547, 442176, 167388, 140132, 212677,
				133776, 248717, 173860, 136215, 541803, 151477, 176708, 300345,
				308520, 133224, 296507, 300757, 490857, 217738, 142568, 186755,
				142342, 371364, 215328, 189931, 159557,
			},
			ids: []string{
				"c3d38f8026ecb1b1ac16e0e06474cf1b2887651f9eb371afc34b35f7a78daa66",
				"58f38a23f22522ca8f635a97e3214aa7dfe939ce78e767a8ebf862c0985a6364",
				"12f4195cfc31926afb9382856e3527a3142c86fcf5699748b723634cca71f85f",
			},
		},
		{
			name: "default params",
			p:    DefaultParams(TestPol),
			lens: []uint32{
				4265056, 7884306, 5150751, 5913565, 3270894, 3490759, 2823263, 6498864,
				4074973, 6423479, 535738,
			},
			ids: []string{
				"a9b005966751b89bf6e1ec32eae995f0bdf3c67eaa17e510f23aaaec5134e00a",
				"392d78dae5a2e3e88bfafd8c00f344f18bfa9bc561b7afe16936a7c84aba8db2",
				"118f676c3062efb6aaf0f5400dc6fe83df74f723a2bbc998e7a8494a8909867d",
			},
		},
	}
	for _, tt := range tests {
		for _, par := range []int{1, runtime.GOMAXPROCS(0)} {
			t.Run(fmt.Sprintf("%s/par=%d", tt.name, par), func(t *testing.T) {
				f, err := Split(t.Context(), bytes.NewReader(data), int64(len(data)), tt.p, par, nil)
				if err != nil {
					t.Fatalf("Split: %v", err)
				}
				checkFile(t, f, data, tt.p)
				var lens []uint32
				var ids []string
				for i, c := range f.Chunks {
					lens = append(lens, c.Len)
					if i < 3 {
						ids = append(ids, c.ID.String())
					}
				}
				if !slices.Equal(lens, tt.lens) {
					t.Errorf("chunk lengths:\ngot  %s\nwant %#v", goSlice(lens), tt.lens)
				}
				if !slices.Equal(ids, tt.ids) {
					t.Errorf("first chunk IDs:\ngot  %#v\nwant %#v", ids, tt.ids)
				}
				if got := f.Sum.String(); got != vectorSum {
					t.Errorf("Sum: got %s, want %s", got, vectorSum)
				}
			})
		}
	}
}

// TestSplitMatchesChunker checks Split against restic/chunker run by hand on each segment, so the pinned vector
// above is restic's content-defined chunking and not an artefact of Split.
func TestSplitMatchesChunker(t *testing.T) {
	data := vectorData()
	p := testParams
	var want []uint32
	for off := int64(0); off < int64(len(data)); off += p.Segment {
		seg := data[off:min(off+p.Segment, int64(len(data)))]
		c := chunker.NewWithBoundaries(bytes.NewReader(seg), chunker.Pol(p.Pol), p.MinSize, p.MaxSize)
		c.SetAverageBits(p.AvgBits)
		buf := make([]byte, p.MaxSize)
		for {
			k, err := c.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chunker: %v", err)
			}
			want = append(want, uint32(k.Length))
		}
	}
	f, err := Split(t.Context(), bytes.NewReader(data), int64(len(data)), p, 0, nil)
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	var got []uint32
	for _, c := range f.Chunks {
		got = append(got, c.Len)
	}
	if !slices.Equal(got, want) {
		t.Errorf("chunk lengths:\ngot  %v\nwant %v", got, want)
	}
}

// goSlice prints lens as a Go literal to paste into the test, ten a line.
func goSlice(lens []uint32) string {
	var b strings.Builder
	b.WriteString("[]uint32{")
	for i, n := range lens {
		if i%10 == 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%d, ", n)
	}
	b.WriteString("\n}")
	return b.String()
}

// checkFile checks the invariants of f as the split of data with p: sizes, the whole-file sum, chunk IDs,
// chunk sizes within bounds, and a cut at every segment boundary.
func checkFile(t *testing.T, f File, data []byte, p Params) {
	t.Helper()
	if f.Size != int64(len(data)) {
		t.Errorf("Size: got %d, want %d", f.Size, len(data))
	}
	if want := p.Namer.Sum(data); f.Sum != want {
		t.Errorf("Sum: got %s, want %s", f.Sum, want)
	}
	var off int64
	for i, c := range f.Chunks {
		end := off + int64(c.Len)
		if end > int64(len(data)) {
			t.Fatalf("chunk %d at %d: length %d runs past the end, %d", i, off, c.Len, len(data))
		}
		if want := p.Namer.Sum(data[off:end]); c.ID != want {
			t.Errorf("chunk %d at %d: ID got %s, want %s", i, off, c.ID, want)
		}
		if segEnd := (off/p.Segment + 1) * p.Segment; end > segEnd {
			t.Errorf("chunk %d at %d: ends at %d, past the segment boundary %d", i, off, end, segEnd)
		}
		last := end%p.Segment == 0 || end == int64(len(data)) // a cut is forced here
		if c.Len == 0 || uint(c.Len) > p.MaxSize || (!last && uint(c.Len) < p.MinSize) {
			t.Errorf("chunk %d at %d: length %d outside %d..%d", i, off, c.Len, p.MinSize, p.MaxSize)
		}
		off = end
	}
	if off != int64(len(data)) {
		t.Errorf("chunk lengths add up to %d, want %d", off, len(data))
	}
}

// splitAll splits data and collects the chunks handed to the callback, in file order.
func splitAll(t *testing.T, data []byte, p Params, par int) (File, []Chunk) {
	t.Helper()
	var (
		mu     sync.Mutex
		chunks []Chunk
	)
	f, err := Split(t.Context(), bytes.NewReader(data), int64(len(data)), p, par, func(c Chunk) error {
		c.Data = bytes.Clone(c.Data)
		mu.Lock()
		chunks = append(chunks, c)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	slices.SortFunc(chunks, func(a, b Chunk) int { return int(a.Off - b.Off) })
	return f, chunks
}

func TestSplitPar(t *testing.T) {
	data := randomBytes(1, 20*int(tinyParams.Segment)+12345)
	want, _ := splitAll(t, data, tinyParams, 1)
	checkFile(t, want, data, tinyParams)
	for _, par := range []int{1, 2, 3, 8, 64, 0, -1} {
		t.Run(fmt.Sprintf("par=%d", par), func(t *testing.T) {
			got, chunks := splitAll(t, data, tinyParams, par)
			if got.Sum != want.Sum || got.Size != want.Size || !slices.Equal(got.Chunks, want.Chunks) {
				t.Fatalf("got %d chunks, sum %s; want %d chunks, sum %s, as with par=1",
					len(got.Chunks), got.Sum, len(want.Chunks), want.Sum)
			}
			if len(chunks) != len(got.Chunks) {
				t.Fatalf("callback got %d chunks, want %d", len(chunks), len(got.Chunks))
			}
			var off int64
			for i, c := range chunks {
				ref := got.Chunks[i]
				if c.Off != off || c.ID != ref.ID || len(c.Data) != int(ref.Len) || !bytes.Equal(c.Data, data[off:off+int64(ref.Len)]) {
					t.Fatalf("callback chunk %d: got off %d len %d id %s, want off %d len %d id %s",
						i, c.Off, len(c.Data), c.ID, off, ref.Len, ref.ID)
				}
				off += int64(ref.Len)
			}
		})
	}
}

func TestSplitSizes(t *testing.T) {
	seg := int(tinyParams.Segment)
	tests := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"below min", int(tinyParams.MinSize) - 1},
		{"min", int(tinyParams.MinSize)},
		{"one segment less one", seg - 1},
		{"one segment", seg},
		{"one segment and one byte", seg + 1},
		{"three segments and a part", 3*seg + 12345},
		{"eight segments", 8 * seg},
	}
	data := randomBytes(2, 8*seg+1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// r holds more than size bytes: Split must stop at size.
			f, err := Split(t.Context(), bytes.NewReader(data), int64(tt.size), tinyParams, 3, nil)
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			checkFile(t, f, data[:tt.size], tinyParams)
			if want := (tt.size-1)/seg + 1; len(f.Chunks) < want {
				t.Errorf("got %d chunks, want at least one per segment, %d", len(f.Chunks), want)
			}
		})
	}
}

func TestSplitEmpty(t *testing.T) {
	for _, par := range []int{1, 4} {
		t.Run(fmt.Sprintf("par=%d", par), func(t *testing.T) {
			f, err := Split(t.Context(), bytes.NewReader(nil), 0, tinyParams, par, func(c Chunk) error {
				t.Errorf("callback called with a chunk at %d", c.Off)
				return nil
			})
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			if f.Sum.String() != emptySum || f.Size != 0 || len(f.Chunks) != 0 {
				t.Errorf("got sum %s, size %d, %d chunks; want sum %s, size 0, no chunks", f.Sum, f.Size, len(f.Chunks), emptySum)
			}
		})
	}
}

func TestSplitEqualFiles(t *testing.T) {
	a := randomBytes(3, 10*int(tinyParams.Segment)+777)
	b := bytes.Clone(a)
	fa, _ := splitAll(t, a, tinyParams, 2)
	fb, _ := splitAll(t, b, tinyParams, 5)
	if fa.Sum != fb.Sum || !slices.Equal(fa.Chunks, fb.Chunks) {
		t.Errorf("equal files: got %d chunks, sum %s and %d chunks, sum %s; want the same", len(fa.Chunks), fa.Sum, len(fb.Chunks), fb.Sum)
	}
}

// TestSplitResync edits a file and checks that most chunks of the result are shared with the original. Content
// defined cuts re-synchronise after an edit; segment boundaries are at fixed offsets, so after a shift each
// segment loses its first chunk or two.
func TestSplitResync(t *testing.T) {
	orig := randomBytes(4, 64*int(tinyParams.Segment))
	mid := len(orig) / 2
	insert := randomBytes(5, 1000)
	tests := []struct {
		name   string
		edited []byte
		want   float64 // least fraction of the edited file's chunks found in the original
	}{
		{"prefix inserted", slices.Concat(insert, orig), 0.85},
		{"insert in the middle", slices.Concat(orig[:mid], insert, orig[mid:]), 0.90},
		{"bytes deleted in the middle", slices.Concat(orig[:mid], orig[mid+1000:]), 0.90},
		{"bytes overwritten", slices.Concat(orig[:mid], insert, orig[mid+len(insert):]), 0.98},
		{"appended", slices.Concat(orig, insert), 0.98},
	}
	fo, _ := splitAll(t, orig, tinyParams, 0)
	have := make(map[ID]bool)
	for _, c := range fo.Chunks {
		have[c.ID] = true
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe, _ := splitAll(t, tt.edited, tinyParams, 0)
			shared := 0
			for _, c := range fe.Chunks {
				if have[c.ID] {
					shared++
				}
			}
			if got := float64(shared) / float64(len(fe.Chunks)); got < tt.want {
				t.Errorf("shared chunks: got %d of %d (%.3f), want at least %.2f", shared, len(fe.Chunks), got, tt.want)
			}
		})
	}
}

func TestSplitCallbackError(t *testing.T) {
	data := randomBytes(6, 16*int(tinyParams.Segment))
	errBoom := errors.New("boom")
	tests := []struct {
		par, failAt int
	}{
		{1, 1}, {1, 10}, {4, 1}, {4, 100},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("par=%d/fail=%d", tt.par, tt.failAt), func(t *testing.T) {
			var calls, late atomic.Int64
			var failed atomic.Bool
			_, err := Split(t.Context(), bytes.NewReader(data), int64(len(data)), tinyParams, tt.par, func(c Chunk) error {
				if failed.Load() {
					late.Add(1)
				}
				if calls.Add(1) == int64(tt.failAt) {
					failed.Store(true)
					return errBoom
				}
				return nil
			})
			if !errors.Is(err, errBoom) || !strings.HasPrefix(err.Error(), "chunk at offset ") {
				t.Fatalf("Split: got error %v, want chunk at offset …: %v", err, errBoom)
			}
			// Each other goroutine may have been past its last check when the error came.
			if got := late.Load(); got > int64(tt.par-1) {
				t.Errorf("calls after the error: got %d, want at most %d", got, tt.par-1)
			}
		})
	}
}

func TestSplitCanceled(t *testing.T) {
	data := randomBytes(7, 16*int(tinyParams.Segment))
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Split(ctx, bytes.NewReader(data), int64(len(data)), tinyParams, 2, func(c Chunk) error {
			t.Errorf("callback called with a chunk at %d", c.Off)
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Split: got error %v, want %v", err, context.Canceled)
		}
	})
	for _, par := range []int{1, 4} {
		t.Run(fmt.Sprintf("during/par=%d", par), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var calls, late atomic.Int64
			_, err := Split(ctx, bytes.NewReader(data), int64(len(data)), tinyParams, par, func(c Chunk) error {
				if ctx.Err() != nil {
					late.Add(1)
				}
				if calls.Add(1) == 5 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Split: got error %v, want %v", err, context.Canceled)
			}
			if got := late.Load(); got > int64(par-1) {
				t.Errorf("calls after cancel: got %d, want at most %d", got, par-1)
			}
		})
	}
}

// readerAt wraps an io.ReaderAt with a hook called before every read.
type readerAt struct {
	r    io.ReaderAt
	hook func(p []byte, off int64) (int, error, bool) // when it returns true, its result replaces the read
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if n, err, ok := r.hook(p, off); ok {
		return n, err
	}
	return r.r.ReadAt(p, off)
}

func TestSplitReadErrors(t *testing.T) {
	seg := tinyParams.Segment
	data := randomBytes(8, int(4*seg))
	errDisk := errors.New("disk on fire")
	tests := []struct {
		name string
		size int64 // bytes to split
		hook func(p []byte, off int64) (int, error, bool)
		want error
	}{
		{"file shrank within the last segment", int64(len(data)) + 100, nil, io.ErrUnexpectedEOF},
		{"file shrank by whole segments", 8 * seg, nil, io.ErrUnexpectedEOF},
		{"file is empty", 10, func(p []byte, off int64) (int, error, bool) { return 0, io.EOF, true }, io.ErrUnexpectedEOF},
		{"short read without error", int64(len(data)), func(p []byte, off int64) (int, error, bool) {
			if off == 2*seg {
				return 10, nil, true // breaks the io.ReaderAt contract, but must not pass unnoticed
			}
			return 0, nil, false
		}, io.ErrUnexpectedEOF},
		{"read error", int64(len(data)), func(p []byte, off int64) (int, error, bool) {
			if off == 3*seg {
				return 0, errDisk, true
			}
			return 0, nil, false
		}, errDisk},
	}
	for _, tt := range tests {
		for _, par := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/par=%d", tt.name, par), func(t *testing.T) {
				var r io.ReaderAt = bytes.NewReader(data)
				if tt.hook != nil {
					r = readerAt{r: r, hook: tt.hook}
				}
				f, err := Split(t.Context(), r, tt.size, tinyParams, par, nil)
				if !errors.Is(err, tt.want) || !strings.HasPrefix(err.Error(), "read at offset ") {
					t.Fatalf("Split: got error %v, want read at offset …: %v", err, tt.want)
				}
				if f.Size != 0 || f.Chunks != nil {
					t.Errorf("File: got size %d with %d chunks, want the zero File", f.Size, len(f.Chunks))
				}
			})
		}
	}
}

// TestSplitEOFWithData checks a reader that returns io.EOF with the last bytes, as io.ReaderAt allows.
func TestSplitEOFWithData(t *testing.T) {
	data := randomBytes(9, 3*int(tinyParams.Segment)+5)
	r := readerAt{r: bytes.NewReader(data), hook: func(p []byte, off int64) (int, error, bool) {
		n := copy(p, data[min(off, int64(len(data))):])
		if off+int64(n) == int64(len(data)) {
			return n, io.EOF, true
		}
		return n, nil, true
	}}
	f, err := Split(t.Context(), r, int64(len(data)), tinyParams, 2, nil)
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	checkFile(t, f, data, tinyParams)
}

// TestSplitHashHandover forces the interleavings of the whole-file hash: later segments finishing before the
// head, and the head passing to a segment halfway through its reads.
func TestSplitHashHandover(t *testing.T) {
	p := tinyParams
	p.Segment = 3 << 19 // three reads of 512 KiB per segment
	seg := p.Segment
	data := randomBytes(10, int(5*seg+seg/2))
	want, _ := splitAll(t, data, p, 1)

	// wait blocks until ch is closed, or fails the test rather than hang it.
	wait := func(t *testing.T, ch chan struct{}) {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Error("gate never opened")
		}
	}
	tests := []struct {
		name string
		par  int
		hook func(t *testing.T) func(p []byte, off int64) (int, error, bool)
	}{
		{
			// Segment 0's reads wait until the goroutines of segments 1 and 2 have finished them and started on
			// 3 and 4, so the head, handed on from 0, finds 1 and 2 done and hashes them itself.
			"later segments finish first", 3,
			func(t *testing.T) func(p []byte, off int64) (int, error, bool) {
				gate := openAt(3*seg, 4*seg)
				return func(p []byte, off int64) (int, error, bool) {
					gate.saw(off)
					if off < seg {
						wait(t, gate.open)
					}
					return 0, nil, false
				}
			},
		},
		{
			// Segment 1's second read waits until segment 0 is finished and its goroutine started on segment 2,
			// so at its third read segment 1 is the head with two thirds of its bytes read, and hashes them again.
			"head passes mid-segment", 2,
			func(t *testing.T) func(p []byte, off int64) (int, error, bool) {
				gate := openAt(2 * seg)
				return func(p []byte, off int64) (int, error, bool) {
					gate.saw(off)
					if off == seg+512<<10 {
						wait(t, gate.open)
					}
					return 0, nil, false
				}
			},
		},
	}
	errReread := errors.New("read twice")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := readerAt{r: bytes.NewReader(data), hook: tt.hook(t)}
			got, err := Split(t.Context(), r, int64(len(data)), p, tt.par, nil)
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			if got.Sum != want.Sum || !slices.Equal(got.Chunks, want.Chunks) {
				t.Errorf("got %d chunks, sum %s; want %d chunks, sum %s", len(got.Chunks), got.Sum, len(want.Chunks), want.Sum)
			}
		})
		t.Run(tt.name+"/re-read fails", func(t *testing.T) {
			hook := tt.hook(t)
			var mu sync.Mutex
			seen := make(map[int64]bool)
			r := readerAt{r: bytes.NewReader(data), hook: func(p []byte, off int64) (int, error, bool) {
				mu.Lock()
				again := seen[off]
				seen[off] = true
				mu.Unlock()
				if again {
					return 0, errReread, true
				}
				return hook(p, off)
			}}
			_, err := Split(t.Context(), r, int64(len(data)), p, tt.par, nil)
			if !errors.Is(err, errReread) || !strings.HasPrefix(err.Error(), "hash: read at offset ") {
				t.Errorf("Split: got error %v, want hash: read at offset …: %v", err, errReread)
			}
		})
	}
}

// gate opens once reads at all of some offsets have been seen.
type gate struct {
	mu   sync.Mutex
	left map[int64]bool
	open chan struct{}
}

func openAt(offs ...int64) *gate {
	g := &gate{left: make(map[int64]bool), open: make(chan struct{})}
	for _, off := range offs {
		g.left[off] = true
	}
	return g
}

func (g *gate) saw(off int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.left[off] {
		delete(g.left, off)
		if len(g.left) == 0 {
			close(g.open)
		}
	}
}

func TestSplitBadArgs(t *testing.T) {
	data := randomBytes(11, 100)
	bad := tinyParams
	bad.MaxSize = bad.MinSize - 1
	tests := []struct {
		name string
		size int64
		p    Params
		want string
	}{
		{"invalid params", 100, bad, "chunk params: max_size"},
		{"negative size", -1, tinyParams, "split: negative size -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Split(t.Context(), bytes.NewReader(data), tt.size, tt.p, 1, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Split: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
