// Package random is where cassback draws the random bytes that name things
// in the store (session and condemned-set IDs, pack nonces): from
// crypto/rand, except in the simulator, which substitutes a seeded stream
// so a schedule replays exactly from its seed.
package random

import (
	"crypto/rand"
	"io"
	"sync"
)

var (
	mu     sync.Mutex
	source io.Reader // nil: crypto/rand
)

// Read fills b with random bytes.
func Read(b []byte) {
	mu.Lock()
	src := source
	mu.Unlock()
	if src == nil {
		rand.Read(b)
		return
	}
	mu.Lock()
	defer mu.Unlock()
	io.ReadFull(source, b)
}

// SetSource makes Read draw from r (nil: crypto/rand again) and returns a
// function that restores the previous source. Tests only.
func SetSource(r io.Reader) (restore func()) {
	mu.Lock()
	defer mu.Unlock()
	prev := source
	source = r
	return func() {
		mu.Lock()
		defer mu.Unlock()
		source = prev
	}
}
