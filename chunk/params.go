package chunk

import (
	"errors"
	"fmt"
	"sync"

	"github.com/restic/chunker"
)

// Params fixes how files are cut; stored in the store's config object so all nodes chunk identically.
// Any change to a stored Params forks deduplication: the same bytes cut differently give other IDs.
type Params struct {
	Pol     uint64 `json:"pol"` // irreducible polynomial of degree 53 (restic/chunker Pol)
	MinSize uint   `json:"min_size"`
	MaxSize uint   `json:"max_size"`
	AvgBits int    `json:"avg_bits"` // mean chunk ≈ MinSize + 2^AvgBits
	Segment int64  `json:"segment"`  // files are cut into fixed segments of this many bytes, chunked in parallel; a cut is forced at each segment boundary
	// Namer names the chunks Split cuts. It is never stored (its key is
	// the store's secret, derived from the master key by whoever opens an
	// encrypted store); the zero Namer, plain BLAKE3, is an unencrypted
	// store's.
	Namer Namer `json:"-"`
}

// The defaults. Chunk sizes were measured with BenchmarkParams: 256 MiB of random data, one core, TestPol,
// Segment 64 MiB, each chunk's BLAKE3 and the file's; median of 10 to 13 runs on the 2-vCPU dev machine
// while no other process used more than 0.3 CPU-seconds (go test -run x -bench Params -benchtime 3x ./chunk/):
//
//	min      avg bits  max      mean chunk  MB/s
//	512 KiB  20        8 MiB    1473 KiB    333   restic's defaults
//	1 MiB    20        8 MiB    1942 KiB    398
//	2 MiB    21        16 MiB   4033 KiB    387   chosen
//	4 MiB    22        32 MiB   8456 KiB    391
//
// The last three are equally fast within the noise (±5%); restic's defaults are 15% slower because the chunker
// skips the first MinSize-64 bytes of a chunk and hashes the rest, so speed follows MinSize / mean. Of the three,
// 2 MiB has half the chunks of 1 MiB, so half the index entries and requests, and half the memory per
// goroutine of 4 MiB (MaxSize is buffered). Smaller chunks buy SSTables nothing: compaction rewrites whole
// files, and compressed Data.db blocks do not repeat below file level. Components under MinSize are one
// chunk each, so they deduplicate as whole files.
//
// Segment 64 MiB, from BenchmarkSegment (a 400 MB file, par 2, median of 3 quiet runs):
//
//	segment  segments  mean chunk  MB/s
//	32 MiB   12        3551 KiB    745
//	64 MiB   6         3720 KiB    748   chosen
//	128 MiB  3         3830 KiB    660   one core does 2 segments, the other 1
//	256 MiB  2         3868 KiB    522   256 + 125 MiB
//
// A Split takes about ceil(segments / par) segment-times, so small segments balance the cores; the price is a
// forced cut per segment (about one chunk more per 16 at 64 MiB), and, for data that moved by an insertion,
// which SSTables never see, a chunk or two not shared after each boundary. 32 MiB is no faster and doubles
// that price. Files up to 64 MiB, most SSTable components, are a single segment.
const (
	DefaultMinSize = 2 << 20
	DefaultMaxSize = 16 << 20
	DefaultAvgBits = 21
	DefaultSegment = 64 << 20
)

// TestPol is a fixed irreducible polynomial of degree 53 for tests and benchmarks, so their chunk
// boundaries never change. A store uses a random one (NewParams).
const TestPol = 0x3DA3358B4DC173

// Limits checked by Validate.
const (
	minMinSize = 64      // the chunker's rolling-hash window; below it the chunker misbehaves
	maxMaxSize = 1 << 30 // MaxSize bytes are buffered per worker; Ref.Len is a uint32
	minAvgBits = 10
	maxAvgBits = 30
)

// Bounds of the Params a store may record, checked by ValidateStore: tighter than what the chunker can do,
// because a store's config is read from the store, and a node must not be made to spend more than the defaults
// cost by whoever can write there. MaxSize bytes are buffered per worker and per reader (so at most the
// default); a small mean multiplies the chunks, and so the index, manifests and requests, by up to 8 over the
// defaults; a small segment multiplies the per-segment state of a split.
const (
	StoreMinMinSize = 256 << 10
	StoreMaxMaxSize = DefaultMaxSize
	StoreMinAvgBits = 18
	StoreMinSegment = 16 << 20
	StoreMaxSegment = 1 << 30
)

// NewParams returns the defaults with a fresh random polynomial, for a new store.
func NewParams() (Params, error) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return Params{}, fmt.Errorf("random chunker polynomial: %w", err)
	}
	return DefaultParams(uint64(pol)), nil
}

// DefaultParams returns the defaults with the given polynomial.
func DefaultParams(pol uint64) Params {
	return Params{
		Pol:     pol,
		MinSize: DefaultMinSize,
		MaxSize: DefaultMaxSize,
		AvgBits: DefaultAvgBits,
		Segment: DefaultSegment,
	}
}

// irreducibleCache remembers Pol.Irreducible, which costs about 4 ms a call:
// Split validates its Params on every file, and a node has thousands.
var irreducibleCache sync.Map // chunker.Pol -> bool

func irreducible(pol chunker.Pol) bool {
	if v, ok := irreducibleCache.Load(pol); ok {
		return v.(bool)
	}
	ok := pol.Irreducible()
	irreducibleCache.Store(pol, ok)
	return ok
}

// Validate reports the first thing wrong with p, in one line.
func (p Params) Validate() error {
	pol := chunker.Pol(p.Pol)
	switch {
	case p.Pol == 0:
		return errors.New("chunk params: pol is 0")
	case pol.Deg() != 53:
		return fmt.Errorf("chunk params: pol %#x has degree %d, want 53", p.Pol, pol.Deg())
	case !irreducible(pol):
		return fmt.Errorf("chunk params: pol %#x is not irreducible", p.Pol)
	case p.MinSize < minMinSize:
		return fmt.Errorf("chunk params: min_size %d is below %d", p.MinSize, minMinSize)
	case p.MaxSize < p.MinSize:
		return fmt.Errorf("chunk params: max_size %d is below min_size %d", p.MaxSize, p.MinSize)
	case p.MaxSize > maxMaxSize:
		return fmt.Errorf("chunk params: max_size %d is above %d", p.MaxSize, maxMaxSize)
	case p.AvgBits < minAvgBits || p.AvgBits > maxAvgBits:
		return fmt.Errorf("chunk params: avg_bits %d is outside %d..%d", p.AvgBits, minAvgBits, maxAvgBits)
	case p.MaxSize < p.MinSize+1<<p.AvgBits:
		return fmt.Errorf("chunk params: max_size %d is below the mean chunk, min_size + 2^avg_bits = %d",
			p.MaxSize, p.MinSize+1<<p.AvgBits)
	case p.Segment < int64(p.MaxSize):
		return fmt.Errorf("chunk params: segment %d is below max_size %d", p.Segment, p.MaxSize)
	}
	return nil
}

// ValidateStore reports, in one line, the first thing wrong with p as the chunker params of a store: Validate,
// then the bounds above.
func (p Params) ValidateStore() error {
	if err := p.Validate(); err != nil {
		return err
	}
	switch {
	case p.MinSize < StoreMinMinSize:
		return fmt.Errorf("chunk params: min_size %d is below %d", p.MinSize, StoreMinMinSize)
	case p.MaxSize > StoreMaxMaxSize:
		return fmt.Errorf("chunk params: max_size %d is above %d", p.MaxSize, StoreMaxMaxSize)
	case p.AvgBits < StoreMinAvgBits:
		return fmt.Errorf("chunk params: avg_bits %d is below %d", p.AvgBits, StoreMinAvgBits)
	case p.Segment < StoreMinSegment || p.Segment > StoreMaxSegment:
		return fmt.Errorf("chunk params: segment %d is outside %d..%d", p.Segment, StoreMinSegment, StoreMaxSegment)
	}
	return nil
}
