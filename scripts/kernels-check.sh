#!/usr/bin/env bash
# Compile-check every CUDA kernel source for sm_80 and sm_90a with clang (no CUDA toolkit:
# -nocudainc -nocudalib), which checks the C++ and LLVM's NVPTX code generation, then
# assemble the PTX with NVIDIA's ptxas for sm_80 and sm_90, which checks the inline PTX
# too (ptxas from $PTXAS, PATH or out/tools/cuda: scripts/fetch-ptxas.sh; CUDA 11.8's knows
# no sm_90a, so sm_90a-only code is left to NVRTC on the GPU). Without ptxas the second
# half is skipped with a warning. Register use and spills are printed with KERNELS_VERBOSE=1.
# Usage: scripts/kernels-check.sh [clang binary]
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${1:-${CLANG:-clang-19}}
if ! command -v "$CLANG" >/dev/null; then
	echo "kernels-check: $CLANG not found (apt-get install -y clang-19)" >&2
	exit 1
fi
PTXAS=${PTXAS:-$(command -v ptxas || true)}
if [ -z "$PTXAS" ] && [ -x out/tools/cuda/usr/bin/ptxas ]; then PTXAS=out/tools/cuda/usr/bin/ptxas; fi
shopt -s nullglob
srcs=(kernels/cuda/src/*.cu)
if [ ${#srcs[@]} -eq 0 ]; then
	echo "kernels-check: no sources under kernels/cuda/src" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
compile() { # arch source → $tmp/out.ptx
	"$CLANG" --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch="$1" \
		-std=c++17 -O3 -Wall -Werror -Wno-unknown-cuda-version -S -o "$tmp/out.ptx" "$2"
}
for arch in sm_80 sm_90a; do
	for f in "${srcs[@]}"; do
		if ! compile "$arch" "$f"; then
			echo "kernels-check: $f failed for $arch" >&2
			fail=1
		fi
	done
done
[ $fail -eq 0 ] && echo "kernels-check: ${#srcs[@]} sources compile for sm_80 and sm_90a"
if [ -z "$PTXAS" ]; then
	echo "kernels-check: WARNING: no ptxas (scripts/fetch-ptxas.sh): inline PTX not assembled" >&2
	exit $fail
fi
verbose=()
[ -n "${KERNELS_VERBOSE:-}" ] && verbose=(-v)
for arch in sm_80 sm_90; do
	for f in "${srcs[@]}"; do
		if ! compile "$arch" "$f" || ! "$PTXAS" "${verbose[@]}" -arch="$arch" -o "$tmp/out.cubin" "$tmp/out.ptx"; then
			echo "kernels-check: ptxas rejects $f for $arch" >&2
			fail=1
		fi
	done
done
[ $fail -eq 0 ] && echo "kernels-check: ${#srcs[@]} sources assemble with $("$PTXAS" --version | grep -o 'release [0-9.]*') ptxas for sm_80 and sm_90"
exit $fail
