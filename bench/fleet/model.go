package fleet

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/cassback/cassback/chunk"
)

// derive names a random stream: the BLAKE3 of the seed, a label and
// numbers. Every stream the generator draws from is named this way, so what
// a host gets does not depend on which worker makes it, or when.
func derive(seed uint64, label string, xs ...uint64) [32]byte {
	b := make([]byte, 0, 8+len(label)+8*len(xs))
	b = binary.LittleEndian.AppendUint64(b, seed)
	b = append(b, label...)
	for _, x := range xs {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return chunk.Sum(b)
}

// stream is a ChaCha8 stream: random numbers and random bytes.
type stream struct {
	src *rand.ChaCha8
	*rand.Rand
}

func newStream(seed [32]byte) stream {
	src := rand.NewChaCha8(seed)
	return stream{src: src, Rand: rand.New(src)}
}

// id draws a random 32-byte ID.
func (s stream) id() chunk.ID {
	var id chunk.ID
	_, _ = s.src.Read(id[:]) // ChaCha8.Read never fails
	return id
}

// sstable is one SSTable of a host's plan: what its files are made from.
type sstable struct {
	gen  int
	data int64 // Data.db bytes; the other components follow from it
	born int   // the backup that first saw it; -1 for the initial ones
}

// table is one table of a host: its live SSTables.
type table struct {
	ks, name, id string
	k, t         int // keyspace and table ordinals, which name the streams
	shared       bool
	live         []sstable
	nextGen      int
}

// host is the plan of one host, changed backup by backup.
type host struct {
	i      int
	name   string
	tables []*table
	r      stream            // churn, generations and sizes
	nodes  map[chunk.ID]bool // nodes of manifest trees written, each once
}

// HostName is the name Generate gives the i-th host.
func HostName(i int) string { return fmt.Sprintf("host%03d", i) }

// tableID is a table's ID: the same on every host, as Cassandra's are.
func tableID(seed uint64, k, t int) string {
	id := newStream(derive(seed, "table-id", uint64(k), uint64(t))).id()
	return id.String()[:32]
}

// sharedSSTables is how many fleet_shared SSTables every host has: enough
// that their chunks (one a component, all being small) make about
// SharedFraction of a host's chunks.
func (c Config) sharedSSTables() int {
	if c.SharedFraction == 0 {
		return 0
	}
	const meanChunk = 3720 << 10 // measured at the default parameters (chunk/params.go)
	userSST := c.Keyspaces * c.TablesPerKeyspace * c.SSTablesPerTable
	chunks := float64(c.BytesPerHost)/meanChunk + float64(userSST*len(components))
	return int(math.Ceil(c.SharedFraction * chunks / float64(len(components))))
}

// sharedData is the Data.db size of the j-th fleet_shared SSTable: 64 KiB
// to 1 MiB, so every component is one chunk.
func sharedData(seed uint64, j int) int64 {
	return 64<<10 + newStream(derive(seed, "shared-size", uint64(j))).Int64N(960<<10)
}

// overhead is the bytes the components other than Data.db add to an
// SSTable of data bytes of Data.db, but for Statistics.db.
func overhead(data int64) int64 {
	sizes := componentSizes(data, 0)
	var n int64
	for _, s := range sizes[1:] {
		n += s
	}
	return n
}

// componentSizes are the sizes of an SSTable's components, in the order of
// components: Index.db 2% of Data.db (small partitions), Filter.db 0.2%
// (a 1% false-positive chance), Summary.db 0.02%, CompressionInfo.db 8
// bytes a 16 KiB block, Statistics.db as given, Digest.crc32 ten digits,
// TOC.txt the component names a line each.
func componentSizes(data, stats int64) [8]int64 {
	return [8]int64{data, data/50 + 16, data/500 + 16, data/5000 + 64,
		(data+16383)/16384*8 + 48, stats, 10, tocSize}
}

var tocSize = int64(len(strings.Join(components, "\n")) + 1)

// plan lays out host i before its first backup.
func (c Config) plan(i int) *host {
	h := &host{i: i, name: HostName(i), r: newStream(derive(c.Seed, "host", uint64(i)))}
	nShared := c.sharedSSTables()
	var sharedBytes int64
	for j := range nShared {
		sharedBytes += sharedData(c.Seed, j)
	}
	budget := float64(max(c.BytesPerHost-sharedBytes-int64(nShared)*overhead(1<<20), 0))

	// Table weights are the schema's, the same on every host; the sizes of
	// the SSTables in them are each host's own.
	weights := make([]float64, c.Keyspaces*c.TablesPerKeyspace)
	var wsum float64
	for k := range c.Keyspaces {
		for t := range c.TablesPerKeyspace {
			w := 0.25 + 1.5*newStream(derive(c.Seed, "table-weight", uint64(k), uint64(t))).Float64()
			weights[k*c.TablesPerKeyspace+t] = w
			wsum += w
		}
	}
	for k := range c.Keyspaces {
		for t := range c.TablesPerKeyspace {
			tb := &table{ks: fmt.Sprintf("ks%02d", k), name: fmt.Sprintf("t%02d", t), id: tableID(c.Seed, k, t), k: k, t: t, nextGen: 1}
			share := budget * weights[k*c.TablesPerKeyspace+t] / wsum
			for _, b := range tierSizes(share, c.SSTablesPerTable, h.r) {
				tb.nextGen += h.r.IntN(4) // generations compacted away before
				tb.live = append(tb.live, sstable{gen: tb.nextGen, data: dataFor(b), born: -1})
				tb.nextGen++
			}
			h.tables = append(h.tables, tb)
		}
	}
	if nShared > 0 {
		k := c.Keyspaces
		for t := range min(sharedTables, nShared) {
			h.tables = append(h.tables, &table{ks: sharedKeyspace, name: fmt.Sprintf("s%d", t), id: tableID(c.Seed, k, t), k: k, t: t, shared: true})
		}
		for j := range nShared {
			tb := h.tables[len(h.tables)-min(sharedTables, nShared)+j%sharedTables]
			tb.live = append(tb.live, sstable{gen: j/sharedTables + 1, data: sharedData(c.Seed, j), born: -1})
		}
	}
	return h
}

// tierSizes splits budget bytes into n SSTable sizes, largest first: two
// SSTables a tier, each tier a quarter of the one above, at most seven
// tiers, each size within ±25% of its tier's.
func tierSizes(budget float64, n int, r stream) []float64 {
	sizes := make([]float64, n)
	var sum float64
	for i := range sizes {
		sizes[i] = math.Pow(0.25, float64(min(i/2, 6))) * (0.75 + 0.5*r.Float64())
		sum += sizes[i]
	}
	for i := range sizes {
		sizes[i] *= budget / sum
	}
	return sizes
}

// dataFor is the Data.db size of an SSTable of about size bytes in all.
func dataFor(size float64) int64 {
	const statsMean = 8 << 10
	ratio := 1 + 1.0/50 + 1.0/500 + 1.0/5000 + 8.0/16384
	return max(int64((size-statsMean-float64(tocSize)-200)/ratio), 1<<10)
}

// churn replaces about c.Churn of every user table's SSTables by new
// ones of the same size: the outputs of a day's compactions and flushes.
// It returns the new SSTables' tables and positions.
func (c Config) churn(h *host, backup int) (added [][2]int) {
	for ti, tb := range h.tables {
		if tb.shared {
			continue
		}
		for si := range tb.live {
			if h.r.Float64() >= c.Churn {
				continue
			}
			tb.nextGen += h.r.IntN(3)
			tb.live[si] = sstable{gen: tb.nextGen, data: tb.live[si].data, born: backup}
			tb.nextGen++
			added = append(added, [2]int{ti, si})
		}
	}
	return added
}

// fileSeed names the stream of one component file's content. A
// fleet_shared file's does not depend on the host.
func (c Config) fileSeed(h *host, tb *table, gen, comp int) [32]byte {
	if tb.shared {
		return derive(c.Seed, "shared-file", uint64(tb.t), uint64(gen), uint64(comp))
	}
	return derive(c.Seed, "file", uint64(h.i), uint64(tb.k), uint64(tb.t), uint64(gen), uint64(comp))
}

// fileMeta is what a manifest records of a file besides its chunks.
type fileMeta struct {
	stats int64 // Statistics.db size
	inode uint64
	mtime time.Time
}

// meta draws an SSTable's Statistics.db size, inode and mtime: created
// before the first backup, or during the day before the backup that first
// saw it.
func (c Config) meta(h *host, tb *table, s sstable) fileMeta {
	hostIdx := uint64(h.i)
	if tb.shared {
		hostIdx = math.MaxUint64
	}
	r := newStream(derive(c.Seed, "sstable", hostIdx, uint64(tb.k), uint64(tb.t), uint64(s.gen)))
	m := fileMeta{stats: 4<<10 + r.Int64N(8<<10), inode: 1<<20 + r.Uint64N(1<<32)}
	if s.born < 0 {
		m.mtime = c.Start.Add(-time.Duration(1+r.Int64N(90*24*3600)) * time.Second)
	} else {
		m.mtime = c.Start.Add(time.Duration(s.born)*24*time.Hour - time.Duration(1+r.Int64N(24*3600))*time.Second)
	}
	return m
}

// fileChunks calls fn with each chunk of a file of size bytes whose
// content is named by seed, and returns the file's BLAKE3 (the chunk's ID
// when the file is one chunk, as it is for real content). The model of
// the chunker: a file is cut into p.Segment-byte segments, and a segment
// into chunks of p.MinSize plus an exponential of mean 2^p.AvgBits,
// capped at p.MaxSize; the rest of a segment shorter than p.MinSize is
// one chunk.
func fileChunks(seed [32]byte, size int64, p chunk.Params, fn func(chunk.Ref)) chunk.ID {
	r := newStream(seed)
	minSize, maxSize, mean := int64(p.MinSize), int64(p.MaxSize), float64(int64(1)<<p.AvgBits)
	var first chunk.ID
	n := 0
	for off := int64(0); off < size; off += p.Segment {
		rest := min(p.Segment, size-off)
		for rest > 0 {
			l := rest
			if rest > minSize {
				l = min(minSize+int64(r.ExpFloat64()*mean), maxSize, rest)
			}
			id := r.id()
			if n == 0 {
				first = id
			}
			n++
			fn(chunk.Ref{ID: id, Len: uint32(l)})
			rest -= l
		}
	}
	if n == 1 {
		return first
	}
	return r.id()
}
