//go:build !amd64 || purego

package cpu

const hasDotAVX2 = false

func dotAVX2(x, y *float32, n int) float32 { panic("dotAVX2: not on this platform") }
