//go:build !race

package cassback

const raceOn = false
