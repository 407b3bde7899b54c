package index

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/cassback/cassback/chunk"
)

// A layout keeps the filters of many files in the scratch file by region
// of the IDs rather than by file: region r holds, file after file, the
// blocks of each file's filter that cover the IDs of r (a filter's block
// covers a range of IDs: bytes 0–7 pick it by multiplication). A lookup
// then reads its region once, one read of some hundred KB, and probes
// every file's block in memory, where probing file by file made a read
// for each file (lookups × files reads: minutes for 80,000 lookups against
// 1,700 files). Files loaded after the layout was built are probed one
// by one until there are enough of them to build it again.
type layout struct {
	h       *heads  // its own scratch: a layout built again leaves the old one to the collector
	at      int64   // region 0's first byte in h
	regions uint64  // a power of two
	starts  []int64 // region r is [starts[r], starts[r+1]) after at
	files   []*lazyFile
	in      map[*lazyFile]bool
}

const (
	layoutMinFiles = 64       // fewer files are probed one by one
	layoutRegion   = 64 << 10 // bytes a region holds of the files' blocks at least
	layoutStale    = 10       // rebuild when more than 1/layoutStale of the files are not in it
	layoutBatch    = 1 << 20  // bytes of regions built at a time
)

// regionRange returns the IDs (bytes 0–7, little-endian) of region r of n:
// [lo, hi].
func regionRange(r, n uint64) (lo, hi uint64) {
	shift := 64 - uint(bits.TrailingZeros64(n))
	if shift == 64 {
		return 0, ^uint64(0)
	}
	return r << shift, (r+1)<<shift - 1
}

// span returns the blocks of a filter of nb blocks that cover IDs [lo, hi].
func span(lo, hi, nb uint64) (b0, b1 uint64) {
	b0, _ = bits.Mul64(lo, nb)
	b1, _ = bits.Mul64(hi, nb)
	return b0, b1
}

// relayout builds a new layout of the files known by their heads when
// there are enough of them and too many are not in the current one (a
// continuous backup meets new files at every load). One that cannot be
// built leaves lookups probing file by file.
func (l *lazy) relayout() {
	if l == nil {
		return
	}
	l.mu.Lock()
	var live []*lazyFile
	for _, f := range l.order {
		if !f.loaded && f.n > 0 {
			live = append(live, f)
		}
	}
	old, dir := l.layout, l.cache
	l.mu.Unlock()
	if len(live) < layoutMinFiles {
		return
	}
	if old != nil {
		outside := 0
		for _, f := range live {
			if !old.in[f] {
				outside++
			}
		}
		if outside*layoutStale <= len(live) && len(old.files) <= 2*len(live) {
			return
		}
	}
	lay, err := l.buildLayout(dir, live)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.layout = lay
	l.mu.Unlock()
}

// buildLayout writes the layout of files into the heads, layoutBatch
// bytes of regions at a time: of each file it reads once the blocks that
// cover the batch's IDs, and deals them out to the batch's regions.
func (l *lazy) buildLayout(dir string, files []*lazyFile) (*layout, error) {
	var total int64
	for _, f := range files {
		total += f.filterLen()
	}
	per := max(int64(len(files))*filterBlock, layoutRegion) // the least a region holds
	n := uint64(1)
	for int64(n)*per < total && n < 1<<16 {
		n *= 2
	}
	lay := &layout{h: &heads{}, regions: n, starts: make([]int64, n+1), files: files, in: map[*lazyFile]bool{}}
	for r := range n {
		lo, hi := regionRange(r, n)
		size := int64(0)
		for _, f := range files {
			b0, b1 := span(lo, hi, uint64(f.filterLen()/filterBlock))
			size += int64(b1-b0+1) * filterBlock
		}
		lay.starts[r+1] = lay.starts[r] + size
	}
	at, err := lay.h.grow(dir, lay.starts[n])
	if err != nil {
		return nil, err
	}
	lay.at = at
	var batch, fbuf []byte
	cursor := make([]int64, n)
	for r0 := uint64(0); r0 < n; {
		r1 := r0 + 1 // the batch is [r0, r1)
		for r1 < n && lay.starts[r1+1]-lay.starts[r0] <= layoutBatch {
			r1++
		}
		size := lay.starts[r1] - lay.starts[r0]
		if int64(cap(batch)) < size {
			batch = make([]byte, size)
		}
		batch = batch[:size]
		for r := r0; r < r1; r++ {
			cursor[r] = lay.starts[r] - lay.starts[r0]
		}
		lo, _ := regionRange(r0, n)
		_, hi := regionRange(r1-1, n)
		for _, f := range files {
			nb := uint64(f.filterLen() / filterBlock)
			b0, b1 := span(lo, hi, nb)
			m := int64(b1-b0+1) * filterBlock
			if int64(cap(fbuf)) < m {
				fbuf = make([]byte, m)
			}
			fbuf = fbuf[:m]
			if err := l.heads.readAt(fbuf, f.at+int64(b0)*filterBlock); err != nil {
				return nil, err
			}
			for r := r0; r < r1; r++ {
				rlo, rhi := regionRange(r, n)
				c0, c1 := span(rlo, rhi, nb)
				k := int64(c1-c0+1) * filterBlock
				copy(batch[cursor[r]:cursor[r]+k], fbuf[int64(c0-b0)*filterBlock:])
				cursor[r] += k
			}
		}
		if err := lay.h.writeAt(batch, at+lay.starts[r0]); err != nil {
			return nil, err
		}
		r0 = r1
	}
	for _, f := range files {
		lay.in[f] = true
	}
	return lay, nil
}

// regionBufs holds the buffers lookups read a region into.
var regionBufs sync.Pool

// probe returns the files of the layout whose filter may hold id, in the
// layout's order, reading id's region once.
func (lay *layout) probe(id chunk.ID) ([]*lazyFile, error) {
	v := binary.LittleEndian.Uint64(id[:8])
	r, _ := bits.Mul64(v, lay.regions)
	lo, hi := regionRange(r, lay.regions)
	size := lay.starts[r+1] - lay.starts[r]
	bp, _ := regionBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer regionBufs.Put(bp)
	if int64(cap(*bp)) < size {
		*bp = make([]byte, size)
	}
	buf := (*bp)[:size]
	if err := lay.h.readAt(buf, lay.at+lay.starts[r]); err != nil {
		return nil, err
	}
	var hits []*lazyFile
	pos := int64(0)
	for _, f := range lay.files {
		nb := uint64(f.filterLen() / filterBlock)
		b0, b1 := span(lo, hi, nb)
		b, _ := bits.Mul64(v, nb)
		if blockHas(buf[pos+int64(b-b0)*filterBlock:][:filterBlock], id) {
			hits = append(hits, f)
		}
		pos += int64(b1-b0+1) * filterBlock
	}
	return hits, nil
}
