// Package cuda is the GPU implementation of kernels.Backend: the CUDA driver API, NVRTC and
// cuBLASLt bound through cgo with our own declarations and dlopen (package dl), so it
// builds, vets and tests on machines without CUDA.
//
// # Libraries
//
// Available reports whether this process can use a GPU, and why not. Libraries are looked
// up in this order (dl.SearchFromEnv): GOMEGATRON_CUDA_LIB_DIRS, NVIDIA's pip wheel folders
// (nvidia/cu13/lib, nvidia/cuda_nvrtc/lib, nvidia/cublas/lib, nvidia/nccl/lib, …) under the
// site-packages of PYTHONPATH, $VIRTUAL_ENV, a python3 on PATH, ~/.local and the system
// Python, then the system loader, then CUDA_HOME/lib64. libcuda.so.1 comes from the system
// loader only (or GOMEGATRON_LIBCUDA). LibDirs returns the folders a launcher should pass
// to its workers.
//
// # Threading
//
// A Device owns one goroutine locked to its OS thread with the GPU's primary context
// current; every driver call runs there (Device.Do). Work is queued on one stream, so ops
// execute in call order; Download, Sync, SumSquares and CastWithAmax wait. Worker threads
// (Device.NewWorker) share the context for work that blocks (NCCL).
//
// # Memory
//
// One cuMemAlloc at start-up (Options.ArenaBytes, GOMEGATRON_CUDA_ARENA_MB, default 90% of
// free memory) is sub-allocated by an Arena (first fit, 256-byte aligned); transfers go
// through a pinned staging buffer (Options.PinnedBytes).
//
// # Kernels
//
// src/*.cu are header-free CUDA C++ (inline PTX for indices, shuffles, atomics and the
// bf16/f16/fp8 conversions), embedded with go:embed and compiled at start-up by NVRTC for
// the device (sm_90a on an H100), cached under os.UserCacheDir()/gomegatron/cubin (or
// GOMEGATRON_CUBIN_CACHE) by source hash, architecture and NVRTC version.
// scripts/kernels-check.sh compiles them with clang-19 for sm_80 and sm_90a; the host
// emulator (testdata/emu, TestEmulator) runs them on the CPU against kernels/cpu. Each op
// takes F32 or BF16 activations (kernels' "BF16 activations"): a kernel body is a template
// over the activation type with _f32 and _bf16 extern "C" wrappers, loading through ld
// (BF16 widened exactly) and storing through st (rounded once), so the math is the F32
// kernel's. GEMMs go to cuBLASLt (F32 with TF32 off unless Backend.TF32, BF16, F16, with an
// F32 C or, for BF16, a BF16 C; FP8 TN with device scale and amax pointers through GemmFP8).
package cuda
