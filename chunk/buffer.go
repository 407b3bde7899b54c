package chunk

// region is a chunk buffer, mapped outside the Go heap where the system
// allows it (buffer_unix.go).
//
// Why outside: the chunk buffers are most of what a backup holds (one per
// goroutine chunking, up to MaxSize, 16 MiB, each) and they live as long as
// it runs. In the heap they would count toward the collector's goal, which
// lets the heap grow to twice what is live before it collects (GOGC=100):
// four workers' 64 MiB of buffers would let 64 MiB more of garbage pile up
// between collections. Mapped, they cost the pages they touch, and the
// heap's goal follows the few MiB the heap really holds. A one-shot backup
// of the 1 GiB bench node (4 workers, docs/benchmarks.md) peaked at 115 MiB
// RSS with the buffers in the heap and 76 MiB outside it (medians of 8).
type region struct {
	b      []byte // empty, with the buffer's capacity
	mapped bool
}

// resize replaces r's buffer by an empty one of capacity n, freeing the old
// one, which must no longer be used.
func (r *region) resize(n int) {
	r.free()
	r.b, r.mapped = allocBuffer(n)
}

// free releases r's buffer.
func (r *region) free() {
	if r.mapped {
		freeBuffer(r.b)
	}
	r.b, r.mapped = nil, false
}
