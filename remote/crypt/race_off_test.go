//go:build !race

package crypt

const raceOn = false
