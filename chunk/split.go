package chunk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/restic/chunker"
	"golang.org/x/sync/errgroup"
)

// Chunk is one piece of a file handed to Split's callback.
type Chunk struct {
	ID   ID
	Off  int64  // offset in the file
	Data []byte // valid only during the callback
}

// File is the result of splitting a whole file.
type File struct {
	Sum    ID    // BLAKE3-256 of the whole file
	Size   int64 // bytes split
	Chunks []Ref // in file order; lengths add up to Size
}

// Split cuts the first size bytes of r into content-defined chunks, named by p.Namer, and returns their list and
// the file's BLAKE3-256 (always plain: it is recorded only inside manifests).
//
// The bytes are cut into fixed segments of p.Segment bytes, and each segment is chunked on its own, so every
// segment boundary is also a chunk boundary. The result depends only on the bytes and p, never on par or timing.
// Up to par segments are chunked at once (par <= 0 means runtime.GOMAXPROCS(0)), each by its own goroutine
// holding about p.MaxSize + 512 KiB of pooled buffers; r must allow concurrent ReadAt calls, as *os.File does.
//
// fn, which may be nil, is called once per chunk. It is called concurrently from up to par goroutines, in offset
// order within a segment but in no order across segments; Chunk.Data is only valid until fn returns (it lies
// in a buffer outside the Go heap that the next chunk overwrites and that is unmapped once unused).
// The first error from fn or r, or the cancellation of ctx, stops all goroutines at their next chunk or read
// (every 512 KiB) and is returned, wrapped with the offset; File is then zero. If r ends before size bytes,
// the error wraps io.ErrUnexpectedEOF. A size of 0 gives no chunks and the BLAKE3 of empty input.
func Split(ctx context.Context, r io.ReaderAt, size int64, p Params, par int, fn func(c Chunk) error) (File, error) {
	if err := p.Validate(); err != nil {
		return File{}, err
	}
	if size < 0 {
		return File{}, fmt.Errorf("split: negative size %d", size)
	}
	if err := ctx.Err(); err != nil {
		return File{}, fmt.Errorf("split: %w", context.Cause(ctx))
	}
	if size == 0 {
		return File{Sum: p.Namer.NewHasher().Sum()}, nil
	}
	nseg := int((size-1)/p.Segment) + 1
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	par = min(par, nseg)

	g, gctx := errgroup.WithContext(ctx)
	s := &splitter{
		ctx:  gctx,
		r:    r,
		size: size,
		p:    p,
		fn:   fn,
		refs: make([][]Ref, nseg),
		sum:  newFileSum(r, size, p.Segment, nseg, p.Namer),
	}
	var next atomic.Int64
	for range par {
		g.Go(func() error {
			w := getWorker(p)
			defer workers.Put(w)
			for k := int(next.Add(1) - 1); k < nseg; k = int(next.Add(1) - 1) {
				if err := s.segment(w, k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	// Every goroutine is done with the hasher: the next file reuses it
	// (a BLAKE3 hasher is some 10 KB, and a node has many small files).
	defer s.sum.release()
	if err != nil {
		return File{}, err
	}

	sum, err := s.sum.result()
	if err != nil {
		return File{}, err
	}
	n := 0
	for _, refs := range s.refs {
		n += len(refs)
	}
	f := File{Sum: sum, Size: size, Chunks: make([]Ref, 0, n)}
	for _, refs := range s.refs {
		f.Chunks = append(f.Chunks, refs...)
	}
	return f, nil
}

// splitter is the state of one Split call shared by its goroutines.
type splitter struct {
	ctx  context.Context
	r    io.ReaderAt
	size int64
	p    Params
	fn   func(Chunk) error
	refs [][]Ref // per segment, written by the goroutine that chunks it
	sum  *fileSum
}

// worker holds one goroutine's reusable buffers: the chunker with its 512 KiB read buffer, and the chunk
// buffer (a region outside the Go heap, buffer.go), which starts at 1 MiB and is replaced, in powers of two,
// by one that holds the longest chunk of the largest segment seen: MaxSize for a segment of at least MaxSize
// bytes. Workers are pooled across Split calls, so memory is about MaxSize + 512 KiB per goroutine chunking
// at once, and small files never pay for a MaxSize buffer.
type worker struct {
	c   *chunker.Chunker
	buf *region
}

var workers sync.Pool

// workerBuf is a worker's first chunk buffer; it is also the whole-file hash's re-read buffer.
const workerBuf = 1 << 20

func getWorker(p Params) *worker {
	if w, ok := workers.Get().(*worker); ok {
		return w
	}
	w := &worker{c: chunker.NewWithBoundaries(nil, chunker.Pol(p.Pol), p.MinSize, p.MaxSize), buf: &region{}}
	w.buf.resize(workerBuf)
	runtime.AddCleanup(w, (*region).free, w.buf) // a worker the pool drops frees its buffer
	return w
}

// segment chunks segment k, calling fn for each chunk and recording the refs.
func (s *splitter) segment(w *worker, k int) error {
	start := int64(k) * s.p.Segment
	sr := &segReader{s: s, k: k, off: start, end: min(start+s.p.Segment, s.size)}
	w.c.ResetWithBoundaries(sr, chunker.Pol(s.p.Pol), s.p.MinSize, s.p.MaxSize)
	w.c.SetAverageBits(s.p.AvgBits) // after the reset, which restores the chunker's default of 20
	// No chunk is longer than MaxSize or crosses the segment's end, so a buffer of the longest chunk this
	// segment can hold never grows. Let the chunker grow it by append instead, and the way to 16 MiB leaves
	// about four times that behind as garbage. A backup takes the largest files first, so a worker's buffer
	// is usually replaced once.
	if need := min(sr.end-start, int64(s.p.MaxSize)); int64(cap(w.buf.b)) < need {
		w.buf.resize(int(min(int64(1)<<bits.Len64(uint64(need-1)), int64(s.p.MaxSize))))
	}
	var refs []Ref
	for {
		c, err := w.c.Next(w.buf.b)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		id := s.p.Namer.Sum(c.Data)
		off := start + int64(c.Start)
		refs = append(refs, Ref{ID: id, Len: uint32(c.Length)})
		if s.fn == nil {
			continue
		}
		if err := s.ctx.Err(); err != nil {
			return fmt.Errorf("split at offset %d: %w", off, context.Cause(s.ctx))
		}
		if err := s.fn(Chunk{ID: id, Off: off, Data: c.Data}); err != nil {
			return fmt.Errorf("chunk at offset %d: %w", off, err)
		}
	}
	s.refs[k] = refs
	// The chunk buffer is free now; 1 MiB of it keeps a re-read hot in the cache for BLAKE3.
	return s.sum.finish(k, w.buf.b[:workerBuf])
}

// segReader reads one segment for the chunker, and feeds the whole-file hash when its segment is next in it.
type segReader struct {
	s        *splitter
	k        int   // segment number
	off, end int64 // next byte to read, end of the segment
}

func (r *segReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	s := r.s
	if err := s.ctx.Err(); err != nil {
		return 0, fmt.Errorf("split at offset %d: %w", r.off, context.Cause(s.ctx))
	}
	p = p[:min(int64(len(p)), r.end-r.off)]
	head := s.sum.isHead(r.k)
	if head {
		// This segment became the head while we were reading it: hash what we read before, using p as scratch.
		if err := s.sum.hashTo(p, r.off); err != nil {
			return 0, err
		}
	}
	if err := readFull(s.r, p, r.off); err != nil {
		return 0, err
	}
	if head {
		s.sum.write(p)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// readFull reads len(p) bytes at off, turning an early end of r into io.ErrUnexpectedEOF.
// The error must not be io.ErrUnexpectedEOF itself: the chunker would take it for the end of its input.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	switch {
	case n == len(p):
		return nil // ReaderAt may return io.EOF with the last bytes
	case err == nil || errors.Is(err, io.EOF):
		return fmt.Errorf("read at offset %d: got %d of %d bytes: %w", off, n, len(p), io.ErrUnexpectedEOF)
	default:
		return fmt.Errorf("read at offset %d: %w", off, err)
	}
}

// fileSum computes the BLAKE3 of the whole file from the segments' reads, without a pass of its own.
//
// BLAKE3 must see the bytes in order, but the segments are read in parallel. So the goroutine of the head (the
// first segment whose bytes are not all hashed yet) hashes its bytes as it reads them, and it alone touches the
// hasher. When the head finishes, the next segment becomes the head: if its goroutine is still reading it, that
// goroutine hashes what it had read so far again from r (from the page cache, as it was read moments before)
// and carries on hashing as it reads; if it has finished, the goroutine handing over reads and hashes the whole
// segment, and moves on. Segments are taken in order by at most par goroutines, so a re-read is at most about
// par segments behind the reads. With par = 1, or a file of one segment, nothing is read twice.
//
// Measured with BenchmarkSplit against a separate goroutine hashing the file sequentially with its own reads
// (256 MiB, 2 cores): see doc.go.
type fileSum struct {
	r       io.ReaderAt
	size    int64
	segment int64
	nseg    int

	head atomic.Int64 // the head segment; nseg when done. Advanced only by its owner, under mu
	mu   sync.Mutex
	done []bool // per segment: its goroutine has read and chunked it all; guarded by mu

	h   *Hasher // owned by the head's goroutine
	pos int64   // bytes hashed; owned by the head's goroutine
}

func newFileSum(r io.ReaderAt, size, segment int64, nseg int, nm Namer) *fileSum {
	return &fileSum{r: r, size: size, segment: segment, nseg: nseg, done: make([]bool, nseg), h: nm.getHasher()}
}

// release returns the hasher to its pool, once no goroutine uses it.
func (f *fileSum) release() { putHasher(f.h) }

// isHead reports whether segment k is the head. Once true it stays true until k's goroutine calls finish.
func (f *fileSum) isHead(k int) bool { return f.head.Load() == int64(k) }

// write hashes the next bytes of the file; only the head's goroutine calls it.
func (f *fileSum) write(p []byte) {
	f.h.Write(p)
	f.pos += int64(len(p))
}

// hashTo reads and hashes the file up to offset to, using scratch as buffer; only the head's goroutine calls it.
func (f *fileSum) hashTo(scratch []byte, to int64) error {
	for f.pos < to {
		p := scratch[:min(int64(len(scratch)), to-f.pos)]
		if err := readFull(f.r, p, f.pos); err != nil {
			return fmt.Errorf("hash: %w", err)
		}
		f.write(p)
	}
	return nil
}

// finish records that segment k is read and chunked. If k is the head, it completes the hash of k, then hands
// the head on, hashing every following segment that is already finished too.
func (f *fileSum) finish(k int, scratch []byte) error {
	f.mu.Lock()
	f.done[k] = true
	head := f.isHead(k)
	f.mu.Unlock()
	if !head {
		return nil // the goroutine that hands the head to k will hash it
	}
	for {
		if err := f.hashTo(scratch, min((int64(k)+1)*f.segment, f.size)); err != nil {
			return err
		}
		f.mu.Lock()
		k++
		f.head.Store(int64(k))
		mine := k < f.nseg && f.done[k]
		f.mu.Unlock()
		if !mine {
			return nil // k's goroutine is still reading it and will see it is the head
		}
	}
}

// result returns the hash once every segment has finished.
func (f *fileSum) result() (ID, error) {
	if h := f.head.Load(); h != int64(f.nseg) || f.pos != f.size {
		return ID{}, fmt.Errorf("split: internal error: hashed %d of %d bytes, head segment %d of %d", f.pos, f.size, h, f.nseg)
	}
	return f.h.Sum(), nil
}
