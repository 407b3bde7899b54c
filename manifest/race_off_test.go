//go:build !race

package manifest

const raceOn = false
