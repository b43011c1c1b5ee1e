package nccl

import "unsafe"

// addrOf is the address of a Go variable as a call word; the variable must stay live
// across the call.
func addrOf[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }
