package nccl

import "github.com/gomegatron/gomegatron/kernels/cuda/dl"

// addrOf is the address of a Go variable as a call word, moved to the heap (dl.Addr); the
// variable must stay live across the call.
func addrOf[T any](p *T) uintptr { return dl.Addr(p) }
