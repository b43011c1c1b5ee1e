#!/usr/bin/env bash
# Tokenization speed, one core, beside the peers in the same run (docs/perf/*-tokenizers.md):
#   Go   BenchmarkEncodeLlama2SP, BenchmarkEncodeQwen3, BenchmarkEncodeUnigram2k (go test -cpu 1;
#        MB/s wall and MB/cpu-s)
#   peer python3-sentencepiece (C++) on the same llama2 tokenizer.model and sp_unigram2k.model
#   peer HF tokenizers 0.23.2 (Rust, npm binding) on the same qwen3 tokenizer.json,
#        with TOKENIZERS_PARALLELISM=false so its batch encode uses one core
#   Go   BenchmarkEncodePretokChains (Falcon's, StarCoder's and BLOOM's pre-tokenizer chains
#        on small BPEs, data/tokenizer/testdata/pretok), peer: HF tokenizers on the same files
# Input: the visible fixture corpus, each string one input. Needs `make testdata`.
# usage: scripts/bench/tokenize.sh [runs]   (env TOKENIZERS_NODE_MODULES: a node_modules
#        holding tokenizers@0.23.2; otherwise it is installed into a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
corpus=data/tokenizer/testdata/corpus.jsonl
spmodel=testdata/large/tokenizers/sentencepiece/llama2_tokenizer.model
qwen=testdata/large/tokenizers/qwen3/tokenizer.json
for f in "$spmodel" "$qwen"; do
  [ -f "$f" ] || { echo "missing $f: run make testdata" >&2; exit 1; }
done
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# go: $(go version)"
go test -run '^$' -bench 'EncodeLlama2SP|EncodeQwen3|EncodeUnigram2k|EncodePretokChains' -cpu 1 -benchtime 3s -count "$runs" ./data/tokenizer/ | grep -E '^Benchmark'
if /usr/bin/python3 -c 'import sentencepiece' 2>/dev/null; then
  /usr/bin/python3 scripts/bench/tokenize_peer_sp.py "$corpus" "$spmodel" "$runs"
  /usr/bin/python3 scripts/bench/tokenize_peer_sp.py "$corpus" data/tokenizer/testdata/sp_unigram2k.model "$runs"
else
  echo "# python3-sentencepiece not installed (apt-get install python3-sentencepiece): SentencePiece peer skipped"
fi
nm=${TOKENIZERS_NODE_MODULES:-}
if [ -z "$nm" ] && command -v npm >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm install --silent --no-audit --no-fund tokenizers@0.23.2 >/dev/null)
  nm=$tmp/node_modules
fi
if [ -n "$nm" ] && [ -d "$nm/tokenizers" ]; then
  TOKENIZERS_PARALLELISM=false NODE_PATH=$nm node scripts/bench/tokenize_peer_hf.js "$corpus" "$qwen" "$runs"
  for chain in falcon starcoder bloom; do
    echo "# $chain chain (data/tokenizer/testdata/pretok/$chain.tokenizer.json)"
    TOKENIZERS_PARALLELISM=false NODE_PATH=$nm node scripts/bench/tokenize_peer_hf.js "$corpus" \
      "data/tokenizer/testdata/pretok/$chain.tokenizer.json" "$runs"
  done
else
  echo "# node tokenizers@0.23.2 unavailable: HF peer skipped"
fi
