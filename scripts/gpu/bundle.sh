#!/usr/bin/env bash
# Build everything the GPU check needs on a CPU machine (make gpu-bundle): test binaries of
# kernels/cuda (its GEMM benchmark included), kernels/cuda/dl and comm/nccl, plus check.sh
# and the PyTorch peer script, into one folder of at most 60 MB that runs with no Go.
# Usage: scripts/gpu/bundle.sh [out-dir]   (default out/gpu-bundle)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${1:-out/gpu-bundle}
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
export CGO_ENABLED=1
build() { # name package
	go test -c -trimpath -ldflags='-s -w' -o "$OUTDIR/$1.test" "$2"
}
build cuda ./kernels/cuda
build dl ./kernels/cuda/dl
build nccl ./comm/nccl
cp scripts/gpu/check.sh scripts/gpu/peer_matmul.py "$OUTDIR/"
git rev-parse --short HEAD >"$OUTDIR/COMMIT" 2>/dev/null || echo unknown >"$OUTDIR/COMMIT"
size=$(du -sb "$OUTDIR" | cut -f1)
limit=$((60 * 1000 * 1000))
echo "gpu-bundle: $OUTDIR holds $((size / 1000000)) MB:"
ls -l "$OUTDIR"
if [ "$size" -gt "$limit" ]; then
	echo "gpu-bundle: $size bytes is over the 60 MB limit" >&2
	exit 1
fi
