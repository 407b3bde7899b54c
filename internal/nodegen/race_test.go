//go:build race

package nodegen

// The race detector slows generation about tenfold; tests shrink their
// nodes by this factor under it.
const raceScale = 4
