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
}

// The defaults, measured with BenchmarkParams (256 MiB of random data, one core, TestPol,
// chunking plus a BLAKE3 ID per chunk, Segment 64 MiB; go test -run x -bench Params -benchtime 3x):
//
//	min      avg bits  max      mean chunk  MB/s
//	512 KiB  20        8 MiB    1.46 MiB    351   restic's defaults
//	1 MiB    20        8 MiB    1.93 MiB    372
//	2 MiB    21        16 MiB   3.98 MiB    394   chosen
//	4 MiB    22        32 MiB   7.94 MiB    391
//
// 2 MiB / 21 / 16 MiB is the fastest of these, and the chunker only gets faster as min grows relative to the mean,
// because it does not roll its hash over the first MinSize-64 bytes of a chunk. Smaller chunks buy SSTables
// nothing: compaction rewrites whole files and compressed Data.db blocks do not repeat below file level, so they
// only multiply index entries and requests (see docs). Components under MinSize become one chunk each.
// 4 MiB / 22 is no faster and doubles the memory per worker (MaxSize) and the size of a resent chunk.
//
// Segment 64 MiB: a 400 MB Data.db is 6 segments, so 2 cores get 3 each and finish together; BenchmarkSegment
// (400 MB, par 2) measured 64 MiB 703 MB/s, 128 MiB (3 segments, one core idles for the last) 555 MB/s,
// 256 MiB (256 + 125 MiB) 520 MB/s. The price is one forced cut per segment: about 1 more chunk per 16 (6%),
// and, only for data that moved by an insertion (which SSTables never see, they are immutable), the chunk or
// two after each boundary is not shared. Files under 64 MiB, most SSTable components, are a single segment.
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
