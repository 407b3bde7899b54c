package chunk

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

var benchData = sync.OnceValue(func() []byte { return randomBytes(1, 256<<20) })

// BenchmarkSplit measures Split over 256 MiB of random data with the default params, on one core and on all.
func BenchmarkSplit(b *testing.B) {
	data := benchData()
	p := DefaultParams(TestPol)
	for _, par := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("par=%d", par), func(b *testing.B) {
			benchSplit(b, data, p, par)
		})
	}
}

// BenchmarkParams compares chunk sizes on one core; the numbers are in params.go.
func BenchmarkParams(b *testing.B) {
	data := benchData()
	for _, c := range []struct {
		min, max uint
		bits     int
	}{
		{512 << 10, 8 << 20, 20},
		{1 << 20, 8 << 20, 20},
		{2 << 20, 16 << 20, 21},
		{4 << 20, 32 << 20, 22},
	} {
		p := Params{Pol: TestPol, MinSize: c.min, MaxSize: c.max, AvgBits: c.bits, Segment: DefaultSegment}
		b.Run(fmt.Sprintf("min=%dKiB/bits=%d/max=%dMiB", c.min>>10, c.bits, c.max>>20), func(b *testing.B) {
			benchSplit(b, data, p, 1)
		})
	}
}

// BenchmarkSegment compares segment sizes for a 400 MB file on all cores; the numbers are in params.go.
func BenchmarkSegment(b *testing.B) {
	if testing.Short() {
		b.Skip("400 MB")
	}
	data := randomBytes(2, 400_000_000)
	for _, seg := range []int64{32 << 20, 64 << 20, 128 << 20, 256 << 20} {
		p := DefaultParams(TestPol)
		p.Segment = seg
		b.Run(fmt.Sprintf("segment=%dMiB", seg>>20), func(b *testing.B) {
			benchSplit(b, data, p, runtime.GOMAXPROCS(0))
		})
	}
}

func benchSplit(b *testing.B, data []byte, p Params, par int) {
	r := bytes.NewReader(data)
	var f File
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var err error
		f, err = Split(b.Context(), r, int64(len(data)), p, par, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data))/float64(len(f.Chunks))/(1<<10), "KiB/chunk")
}
