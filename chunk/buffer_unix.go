//go:build unix

package chunk

import "syscall"

// allocBuffer returns an empty buffer of capacity n in zeroed anonymous
// memory mapped outside the Go heap, and true; or, if the mapping fails, a
// heap buffer and false.
func allocBuffer(n int) ([]byte, bool) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, 0, n), false
	}
	return b[:0], true
}

// freeBuffer unmaps a buffer allocBuffer mapped.
func freeBuffer(b []byte) { syscall.Munmap(b[:cap(b)]) }

// mapsBuffers says whether allocBuffer maps its buffers outside the heap.
const mapsBuffers = true
