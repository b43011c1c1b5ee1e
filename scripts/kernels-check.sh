#!/usr/bin/env bash
# Compile-check every CUDA kernel source for sm_80 and sm_90a with clang (no CUDA toolkit:
# -nocudainc -nocudalib). clang emits PTX (-S): without NVIDIA's ptxas it cannot assemble,
# so inline-PTX text is checked later by NVRTC on the GPU; the C++ and the LLVM NVPTX code
# generation are checked here. Usage: scripts/kernels-check.sh [clang binary]
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${1:-${CLANG:-clang-19}}
if ! command -v "$CLANG" >/dev/null; then
	echo "kernels-check: $CLANG not found (apt-get install -y clang-19)" >&2
	exit 1
fi
shopt -s nullglob
srcs=(kernels/cuda/src/*.cu)
if [ ${#srcs[@]} -eq 0 ]; then
	echo "kernels-check: no sources under kernels/cuda/src" >&2
	exit 1
fi
fail=0
for arch in sm_80 sm_90a; do
	for f in "${srcs[@]}"; do
		if ! "$CLANG" --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch="$arch" \
			-std=c++17 -O3 -Wall -Werror -Wno-unknown-cuda-version -S -o /dev/null "$f"; then
			echo "kernels-check: $f failed for $arch" >&2
			fail=1
		fi
	done
done
[ $fail -eq 0 ] && echo "kernels-check: ${#srcs[@]} sources compile for sm_80 and sm_90a"
exit $fail
