#!/usr/bin/env bash
# Build everything the GPU check needs on a CPU machine (make gpu-bundle): test binaries of
# kernels/cuda (its GEMM benchmark included), kernels/cuda/dl and comm/nccl, golaunch, a
# small preprocessed dataset, check.sh and the PyTorch peer scripts, into one folder of at
# most 60 MB that runs with no Go.
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
go build -trimpath -ldflags='-s -w' -o "$OUTDIR/" ./cmd/golaunch ./tools/preprocess
cp scripts/gpu/check.sh scripts/gpu/peer_matmul.py scripts/gpu/peer_llama.py "$OUTDIR/"
# A small real dataset for the GPU training check (the demo's: Go sources, SentencePiece BPE).
mkdir -p "$OUTDIR/data"
tok=data/tokenizer/testdata/sp_bpe2k.model
cp "$tok" "$OUTDIR/data/tokenizer.model"
go run ./scripts/demo/corpus -out "$OUTDIR/data/corpus.jsonl" -max-mb 2
"$OUTDIR/preprocess" --input "$OUTDIR/data/corpus.jsonl" --output-prefix "$OUTDIR/data/gostd" \
	--tokenizer-type Llama2Tokenizer --tokenizer-model "$tok" --append-eod --workers 2 --progress none
rm -f "$OUTDIR/data/corpus.jsonl" "$OUTDIR/preprocess"
git rev-parse --short HEAD >"$OUTDIR/COMMIT" 2>/dev/null || echo unknown >"$OUTDIR/COMMIT"
size=$(du -sb "$OUTDIR" | cut -f1)
limit=$((60 * 1000 * 1000))
echo "gpu-bundle: $OUTDIR holds $((size / 1000000)) MB:"
ls -l "$OUTDIR"
if [ "$size" -gt "$limit" ]; then
	echo "gpu-bundle: $size bytes is over the 60 MB limit" >&2
	exit 1
fi
