// Package device opens the compute backend a command's --device flag names: kernels/cpu,
// or kernels/cuda on the GPU a worker owns.
package device

import (
	"fmt"
	"os"
	"strconv"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/kernels/cuda"
)

// Options select the backend.
type Options struct {
	// Name is --device: "cpu", "cuda", or "auto" (also ""): cuda when the CUDA libraries
	// load and the GPU opens, else cpu.
	Name string
	// Index is the GPU ordinal (LocalRank() under golaunch).
	Index int
	// TF32 runs F32 GEMMs on TF32 tensor cores (for bf16/fp16 runs, whose weights TF32
	// holds exactly).
	TF32 bool
	// FlashAttention runs attention on the tensor cores with bf16 products (cuda.Backend).
	FlashAttention bool
}

// Open returns the backend and a function that releases it.
func Open(o Options) (kernels.Backend, func(), error) {
	switch o.Name {
	case "cpu":
		return cpu.New(), func() {}, nil
	case "cuda", "auto", "":
		if ok, why := cuda.Available(); !ok {
			if o.Name == "cuda" {
				return nil, nil, fmt.Errorf("--device cuda: %s", why)
			}
			return cpu.New(), func() {}, nil
		}
		g, err := cuda.New(cuda.Options{Index: o.Index})
		if err != nil {
			if o.Name == "cuda" {
				return nil, nil, fmt.Errorf("--device cuda: GPU %d: %w", o.Index, err)
			}
			fmt.Fprintf(os.Stderr, "gomegatron: the CUDA libraries load but GPU %d does not open (%v); using the CPU\n", o.Index, err)
			return cpu.New(), func() {}, nil
		}
		g.TF32, g.FlashAttention = o.TF32, o.FlashAttention
		return g, func() { _ = g.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--device %q: want cpu, cuda or auto", o.Name)
}

// LocalRank is LOCAL_RANK (set by golaunch and torchrun), 0 when unset: the GPU a worker
// drives.
func LocalRank() int {
	n, err := strconv.Atoi(os.Getenv("LOCAL_RANK"))
	if err != nil || n < 0 {
		return 0
	}
	return n
}
