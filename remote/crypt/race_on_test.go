//go:build race

package crypt

// raceOn: under the race detector the reader attacks leave out their
// largest cases (attack_reader_test.go); test.sh runs them all without it.
const raceOn = true
