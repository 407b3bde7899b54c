//go:build !race

package nodegen

const raceScale = 1
