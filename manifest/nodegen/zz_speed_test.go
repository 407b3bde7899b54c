package nodegen

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

func cpuThread() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestZZSpeed(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, p := range []profile{
		{rowsMean: 6, textCols: 3, wordsMax: 6, intCols: 2, blobPct: 10, blobMax: 1024},
		{rowsMean: 48, textCols: 2, wordsMax: 5, intCols: 3, blobPct: 0, blobMax: 1024},
		{rowsMean: 3, textCols: 2, wordsMax: 8, intCols: 2, blobPct: 30, blobMax: 1500},
	} {
		const total = 32 << 20
		pcs := []piece{{seed: 7, length: total}}
		var scratch []byte
		buf := make([]byte, 0, segmentSize+rowSlack)
		var parts []partition
		var hints []hint
		c := newCompressor(0)
		var out []byte
		bestGen, bestComp := time.Hour, time.Hour
		var comp int
		for _, search := range []bool{true, false} {
			for k := 0; k < 3; k++ {
				var g, cc time.Duration
				comp = 0
				for a := int64(0); a < total; a += segmentSize {
					t0 := cpuThread()
					buf, parts, hints = fillRange(buf, a, a+segmentSize, pcs, &p, &scratch, parts[:0], hints[:0])
					t1 := cpuThread()
					kk := 0
					for i := 0; i < len(buf); i += 16384 {
						h := kk
						for kk < len(hints) && hints[kk].pos() < i+16384 {
							kk++
						}
						out = c.zlibChunk(out[:0], buf[i:i+16384], hints[h:kk], i, search)
						comp += len(out) + 4
					}
					cc += cpuThread() - t1
					g += t1 - t0
				}
				bestGen, bestComp = min(bestGen, g), min(bestComp, cc)
			}
			t.Logf("search %v rows %d blob %d: ratio %.2f gen %.0f MB/s, compress %.0f MB/s in; output per cpu-s %.0f MB/s", search,
				p.rowsMean, p.blobPct, float64(total)/float64(comp), total/bestGen.Seconds()/1e6, total/bestComp.Seconds()/1e6,
				float64(comp)/(bestGen+bestComp).Seconds()/1e6)
			bestGen, bestComp = time.Hour, time.Hour
		}
	}
}
