//go:build !amd64 || purego

package cpu

// gemmDefaultKernel is the portable kernel on CPUs without an assembly kernel.
var gemmDefaultKernel = gemmGeneric

// gemmKernels lists every kernel this CPU can run, for tests and benchmarks.
func gemmKernels() []*gemmKernel { return []*gemmKernel{gemmGeneric} }

// gemmPackRowsAsm and gemmPackColsAsm have no assembly here: the Go loops pack everything.
func gemmPackRowsAsm(dst []float32, w int, src []float32, ld, r0, kc, c0, n int) bool {
	return false
}

func gemmPackColsAsm(dst []float32, w int, src []float32, ld, r0, n, c0, kc int) (rows, cols int) {
	return 0, 0
}
