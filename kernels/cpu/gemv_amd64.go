//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

//go:noescape
func dotAVX2(x, y *float32, n int) float32

var hasDotAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
