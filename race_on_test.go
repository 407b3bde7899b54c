//go:build race

package cassback

// raceOn: the race detector slows the simulator several times; its long
// runs happen in test.sh without it.
const raceOn = true
