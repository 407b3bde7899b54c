package nodegen

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash"
	"hash/adler32"
	"hash/crc32"
	"os"
	"strconv"
	"sync"
	"time"
)

// baseName is an SSTable's file-name prefix without the trailing '-':
// "nb-7-big", "tmp-la-7-big", "ks-t-ka-7", "ks-t-tmp-ka-7".
func (n *Node) baseName(tb *table, gen int, marker string) string {
	g := strconv.Itoa(gen)
	if n.t.legacyNames {
		if marker != "" {
			return tb.ks + "-" + tb.cf() + "-" + marker + "-" + n.t.name + "-" + g
		}
		return tb.ks + "-" + tb.cf() + "-" + n.t.name + "-" + g
	}
	b := n.t.name + "-" + g + "-" + n.t.format
	if marker != "" {
		b = marker + "-" + b
	}
	return b
}

// create opens a new file for writing with mode 0644; it never replaces one.
func (n *Node) create(rel string) (*os.File, error) {
	f, err := os.OpenFile(n.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (n *Node) writeFile(rel string, data []byte) error {
	f, err := n.create(rel)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type writeOpts struct {
	marker  string // "tmp" for 2.x temporary names, else ""
	partial int64  // > 0: stop once this much payload is written, leaving Data and the partition index only
	estKeys int64  // expected partitions (sizes the bloom filter); 0 = from the payload length

	// created is the SSTable's time (mtimes, Statistics); zero means the
	// clock's next tick. writeSSTable touches no other Node state, so
	// calls with created set may run concurrently.
	created time.Time
}

// writeSSTable writes one SSTable of the given pieces in Cassandra's order:
// Data.db and the partition index while streaming, then Filter, Summary,
// CompressionInfo, Digest and Statistics, and TOC.txt last. It does not
// register the SSTable as live.
func (n *Node) writeSSTable(tb *table, gen int, pieces []piece, o writeOpts) (*sstable, error) {
	created := o.created
	if created.IsZero() {
		created = n.clock.tick()
	}
	base := n.baseName(tb, gen, o.marker)
	rel := func(comp string) string { return tb.dir + "/" + base + "-" + comp }
	var total int64
	for _, p := range pieces {
		total += p.length
	}
	bti := n.t.format == "bti"
	indexComp := "Index.db"
	if bti {
		indexComp = "Partitions.db"
	}

	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	open := func(comp string) (*os.File, error) {
		f, err := n.create(rel(comp))
		if err == nil {
			files = append(files, f)
		}
		return f, err
	}
	dataF, err := open("Data.db")
	if err != nil {
		return nil, err
	}
	idxF, err := open(indexComp)
	if err != nil {
		return nil, err
	}
	idxBuf := bufio.NewWriterSize(idxF, 256<<10)
	var rowsBuf *bufio.Writer
	if bti {
		rowsF, err := open("Rows.db")
		if err != nil {
			return nil, err
		}
		rowsBuf = bufio.NewWriterSize(rowsF, 64<<10)
	}
	estKeys := o.estKeys
	if estKeys == 0 {
		estKeys = max(total/int64(avgPartitionBytes(&tb.prof)), 1)
	}
	iw := newIndexWriter(n.t, idxBuf, rowsBuf, estKeys, len(tb.schema.regular))

	var digest hash.Hash32 = crc32.NewIEEE()
	if n.t.adler {
		digest = adler32.New()
	}
	var offsets []int64
	var dataOff int64
	emit := func(j *segJob) error {
		start := 0
		for _, end := range j.ends {
			offsets = append(offsets, dataOff+int64(start))
			start = end
		}
		if _, err := dataF.Write(j.out); err != nil {
			return err
		}
		digest.Write(j.out)
		dataOff += int64(len(j.out))
		for _, p := range j.parts {
			if err := iw.add(p); err != nil {
				return err
			}
		}
		if o.partial > 0 && j.b >= o.partial {
			return errStop
		}
		return nil
	}
	err = n.pipeline(total, pieces, &tb.prof, emit)
	if o.partial > 0 && errors.Is(err, errStop) {
		// An unfinished writer: what has been streamed so far, no more.
		if err := idxBuf.Flush(); err != nil {
			return nil, err
		}
		if rowsBuf != nil {
			if err := rowsBuf.Flush(); err != nil {
				return nil, err
			}
		}
		comps := []string{"Data.db", indexComp}
		if bti {
			comps = append(comps, "Rows.db")
		}
		st := &sstable{gen: gen}
		for _, c := range comps {
			st.info.Components = append(st.info.Components, Component{Name: c, Path: rel(c)})
		}
		if err := closeAll(&files); err != nil {
			return nil, err
		}
		return st, n.stampAll(st, created)
	}
	if err != nil {
		return nil, err
	}
	if err := iw.finish(total); err != nil {
		return nil, err
	}
	// The streamed files are closed before the small components appear, as
	// Cassandra's writer does (a watcher sees Data.db closed before TOC.txt).
	if err := closeAll(&files); err != nil {
		return nil, err
	}

	sizes := map[string]int64{"Data.db": dataOff, indexComp: iw.pos}
	if bti {
		sizes["Rows.db"] = iw.rowPos
	}
	small := func(comp string, b []byte) error {
		sizes[comp] = int64(len(b))
		return n.writeFile(rel(comp), b)
	}
	if err := small("Filter.db", iw.filterBytes()); err != nil {
		return nil, err
	}
	if !bti {
		if err := small("Summary.db", iw.summaryBytes()); err != nil {
			return nil, err
		}
	}
	if err := small("CompressionInfo.db", compressionInfo(n.t, n.chunk, total, offsets)); err != nil {
		return nil, err
	}
	if err := small(n.t.digest, digestBytes(digest.Sum32())); err != nil {
		return nil, err
	}
	st := &sstable{gen: gen, pieces: pieces}
	maxTS := created.UnixMicro()
	st.stats = statsParams{
		partitions: iw.count, rows: iw.rows, dataLength: total, compressed: dataOff,
		minTS: maxTS - total/1024*1_000_000, maxTS: maxTS,
		partSizes: iw.partSizes, cellCounts: iw.cellCounts,
		hostID: n.hostID, hll: derive(tb.seed, "hll", gen), schema: tb.schema,
	}
	if err := small("Statistics.db", statistics(n.t, &st.stats)); err != nil {
		return nil, err
	}
	if err := small("TOC.txt", tocBytes(n.toc)); err != nil {
		return nil, err
	}

	st.info = SSTableInfo{
		Keyspace: tb.ks, Table: tb.name, Index: tb.index, TableID: tb.id,
		Version: n.t.name, Format: n.t.format, Gen: strconv.Itoa(gen),
		Dir: tb.dir, Prefix: tb.dir + "/" + base,
		DataLength: total, Partitions: iw.count, Rows: iw.rows,
	}
	for _, c := range n.toc {
		st.info.Components = append(st.info.Components, Component{Name: c, Path: rel(c), Size: sizes[c]})
		st.info.Bytes += sizes[c]
	}
	return st, n.stampAll(st, created)
}

// closeAll closes the streamed files and forgets them.
func closeAll(files *[]*os.File) error {
	var err error
	for _, f := range *files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	*files = nil
	return err
}

// stampAll sets every component's mtime to t (simulated clock only).
func (n *Node) stampAll(st *sstable, t time.Time) error {
	for _, c := range st.info.Components {
		if err := n.stamp(c.Path, t); err != nil {
			return err
		}
	}
	return nil
}

// avgPartitionBytes estimates a partition's payload size for a profile.
func avgPartitionBytes(p *profile) int {
	row := 8 + p.textCols*(1+(p.wordsMax+1)*9/2) + 8*p.intCols + p.blobPct*(16+p.blobMax)/200
	return 31 + p.rowsMean*row
}

var errStop = errors.New("stop")

// segJob is one segment of an SSTable's payload on its way through the
// pipeline: generated and compressed by a worker, written in order.
type segJob struct {
	a, b    int64 // payload range
	payload []byte
	parts   []partition
	hints   []hint
	out     []byte // compressed chunks, each followed by its checksum
	ends    []int  // end offset of each chunk (with checksum) in out
	done    chan struct{}
}

// pipeline generates and compresses an SSTable's payload segment by
// segment on n.workers goroutines and hands the segments to emit in order.
// emit runs on the calling goroutine; if it fails, pipeline stops early
// and returns its error.
func (n *Node) pipeline(total int64, pieces []piece, prof *profile, emit func(*segJob) error) error {
	nseg := int((total + segmentSize - 1) / segmentSize)
	work := func(j *segJob, c *compressor, scratch *[]byte) {
		j.payload, j.parts, j.hints = fillRange(j.payload, j.a, j.b, pieces, prof, scratch, j.parts[:0], j.hints[:0])
		j.out, j.ends = j.out[:0], j.ends[:0]
		k := 0
		for i := 0; i < len(j.payload); i += n.chunk {
			end := min(i+n.chunk, len(j.payload))
			h := k
			for k < len(j.hints) && j.hints[k].pos() < end {
				k++
			}
			start := len(j.out)
			j.out = c.zlibChunk(j.out, j.payload[i:end], j.hints[h:k], i)
			// Each chunk is followed by a checksum of its compressed bytes:
			// Adler-32 in 2.x, CRC-32 from 3.0.
			var sum uint32
			if n.t.adler {
				sum = adler32.Checksum(j.out[start:])
			} else {
				sum = crc32.ChecksumIEEE(j.out[start:])
			}
			j.out = binary.BigEndian.AppendUint32(j.out, sum)
			j.ends = append(j.ends, len(j.out))
		}
	}
	bounds := func(j *segJob, i int) {
		j.a = int64(i) * segmentSize
		j.b = min(j.a+segmentSize, total)
	}
	workers := min(n.workers, nseg)
	if workers <= 1 {
		w := n.getWorker()
		defer n.putWorker(w)
		j := n.getJob()
		defer n.putJob(j)
		for i := range nseg {
			bounds(j, i)
			work(j, w.c, &w.scratch)
			if err := emit(j); err != nil {
				return err
			}
		}
		return nil
	}

	jobs := make(chan *segJob, workers)
	order := make(chan *segJob, 2*workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := n.getWorker()
			defer n.putWorker(w)
			for j := range jobs {
				work(j, w.c, &w.scratch)
				close(j.done)
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(jobs)
		for i := range nseg {
			j := n.getJob()
			bounds(j, i)
			j.done = make(chan struct{})
			select {
			case order <- j:
			case <-stop:
				return
			}
			jobs <- j // every job in order is also in jobs, so it completes
		}
	}()
	var err error
	for j := range order {
		<-j.done
		if err == nil {
			if err = emit(j); err != nil {
				close(stop)
			}
		}
		n.putJob(j)
	}
	wg.Wait()
	return err
}

// worker is a compressor and a scratch buffer, kept across SSTables.
type worker struct {
	c       *compressor
	scratch []byte
}

// The pools keep megabyte-sized buffers across SSTables; allocating them
// per SSTable kept the garbage collector busy. sync.Pool is safe for the
// pipeline's goroutines.
func (n *Node) getWorker() *worker {
	if w, ok := n.workerPool.Get().(*worker); ok {
		return w
	}
	return &worker{c: newCompressor(n.cfg.FlateLevel)}
}

func (n *Node) putWorker(w *worker) { n.workerPool.Put(w) }

func (n *Node) getJob() *segJob {
	if j, ok := n.jobPool.Get().(*segJob); ok {
		return j
	}
	return &segJob{}
}

func (n *Node) putJob(j *segJob) { n.jobPool.Put(j) }
