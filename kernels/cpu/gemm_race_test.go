//go:build race

package cpu

const gemmRaceEnabled = true
