//go:build !amd64 || purego

package cpu

// gemmDefaultKernel is the portable kernel on CPUs without an assembly kernel.
var gemmDefaultKernel = gemmGeneric

// gemmKernels lists every kernel this CPU can run, for tests and benchmarks.
func gemmKernels() []*gemmKernel { return []*gemmKernel{gemmGeneric} }
