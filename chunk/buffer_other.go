//go:build !unix

package chunk

// allocBuffer returns an empty heap buffer of capacity n: on this system
// the chunk buffers stay in the Go heap.
func allocBuffer(n int) ([]byte, bool) { return make([]byte, 0, n), false }

func freeBuffer([]byte) {}

// mapsBuffers says whether allocBuffer maps its buffers outside the heap.
const mapsBuffers = false
