#!/usr/bin/env bash
# Rehearse the GPU check without a GPU: build the bundle (make gpu-bundle) and the kernel
# emulator (the real kernel sources on the CPU, with the fake NVRTC and cuBLASLt), then run
# scripts/gpu/check.sh's test steps from the bundle against the emulator, as the GPU
# machine would run them. It catches what the bundle gets wrong (paths, skips, groups);
# speed and the training steps need the real GPU. The emulator is slow, so every limit is
# stretched 6× (CHECK_SLOWDOWN). Report: $OUT/report.md (default out/gpu-rehearsal).
# Usage: scripts/gpu/rehearse.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
make gpu-bundle >/dev/null
out=${OUT:-$PWD/out/gpu-rehearsal}
emu=$out/emulator
rm -rf "$out"
mkdir -p "$emu"
GOMEGATRON_EMU_OUT=$emu go test -count=1 -run '^TestBuildEmulatorInto$' ./kernels/cuda >/dev/null
cd "$out"
OUT=$out GOMEGATRON_LIBCUDA=$emu/libcuda.so.1 GOMEGATRON_CUDA_LIB_DIRS=$emu/wheel \
	GOMEGATRON_CUDA_ARENA_MB=1024 GOMEGATRON_CUBIN_CACHE=$out/cubin CHECK_STEPS='^(dl|cuda-.*|nccl)$' CHECK_SLOWDOWN=6 CHECK_BUDGET_S=1800 \
	bash "$repo/scripts/gpu/check.sh" "$repo/out/gpu-bundle"
