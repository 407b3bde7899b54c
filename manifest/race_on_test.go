//go:build race

package manifest

// raceOn: the race detector makes the tests that decode hundreds of MiB
// of files to measure a memory bound take minutes; test.sh runs them
// without it (memBound).
const raceOn = true
