#!/usr/bin/env bash
# End-to-end benchmark of tools/preprocess beside a Megatron-style Python peer.
#
# usage: scripts/bench/preprocess.sh [SIZE_MB] [WORKERS ...]     (defaults: 50, then 1 2)
#
# Generates a deterministic mixed Chinese/English corpus of SIZE_MB (preprocess_corpus.py),
# then for each worker count runs
#   - preprocess with Megatron's Llama2Tokenizer on the real Llama-2 tokenizer.model,
#   - the Python peer (preprocess_peer.py: python3-sentencepiece + multiprocessing, the same
#     jsonl → ids → .bin/.idx work as Megatron's preprocess_data.py), checking that both
#     write byte-identical files,
#   - preprocess with the Qwen3 tokenizer.json (HuggingFaceTokenizer; no Python peer: Debian
#     has no Hugging Face tokenizers package),
#   - preprocess --wudao with Pai's LLamaTokenizer on the same documents written as a raw
#     WuDaoCorpora folder, beside Pai's two steps in CPython (preprocess_peer_wudao.py),
#     again checking byte-identical output,
# and prints a markdown table: wall seconds and input MB/s, CPU seconds (user+sys, children
# included) and MB per CPU second (the fairer number on a busy machine), peak RSS, and the
# Go/Python ratios of both.
# Needs `make testdata`, /usr/bin/python3 with python3-sentencepiece and numpy, GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-50}
shift || true
workers=("$@")
[ ${#workers[@]} -eq 0 ] && workers=(1 2)
py=/usr/bin/python3
sp=testdata/large/tokenizers/sentencepiece/llama2_tokenizer.model
qwen=testdata/large/tokenizers/qwen3/tokenizer.json
for f in "$sp" "$qwen"; do
  [ -f "$f" ] || { echo "missing $f: run make testdata" >&2; exit 1; }
done
work=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$work/qwen3"
ln -sf "$PWD/$qwen" "$work/qwen3/tokenizer.json"
cp tools/preprocess/testdata/qwen3_tokenizer_config.json "$work/qwen3/tokenizer_config.json"
go build -o "$work/preprocess" ./tools/preprocess
corpus=$work/corpus.jsonl
[ -d "$work/wudao" ] || $py scripts/bench/preprocess_corpus.py data/wudao/testdata/corpus.jsonl "$corpus" "$size" "$work/wudao" 2>/dev/null
bytes=$(stat -c %s "$corpus")
wbytes=$(cat "$work"/wudao/*.json | wc -c)
mkdir -p "$work/load"
ln -sf "$PWD/$sp" "$work/load/tokenizer.model"

# timed NAME CMD...: runs CMD, records wall seconds, peak RSS (KB) and CPU seconds
# (user+sys, waited-for children included) in $secs, $rss and $cpu.
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M %U %S" -o "$work/time.$name" "$@" >"$work/log.$name" 2>&1 || { cat "$work/log.$name" >&2; exit 1; }
  local u s
  read -r secs rss u s <"$work/time.$name"
  cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}

echo "corpus: $corpus, $bytes bytes; machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| tokenizer | workers | tool | wall s | MB/s | CPU s | MB per CPU s | peak RSS MB | Go ÷ Python (wall, CPU) |"
echo "|---|---|---|---|---|---|---|---|---|"
for w in "${workers[@]}"; do
  timed "go-llama-$w" "$work/preprocess" --input "$corpus" --output-prefix "$work/go_llama_$w" --tokenizer-type Llama2Tokenizer \
    --tokenizer-model "$sp" --append-eod --workers "$w" --progress none
  gs=$secs; grss=$rss; gc=$cpu
  timed "py-llama-$w" $py scripts/bench/preprocess_peer.py "$corpus" "$sp" "$work/py_llama_$w" "$w"
  ps=$secs; prss=$rss; pc=$cpu
  for ext in bin idx; do
    cmp -s "$work/go_llama_${w}_text_document.$ext" "$work/py_llama_${w}_text_document.$ext" || { echo "Go and Python .$ext differ (workers $w)" >&2; exit 1; }
  done
  awk -v b="$bytes" -v w="$w" -v gs="$gs" -v ps="$ps" -v gr="$grss" -v pr="$prss" -v gc="$gc" -v pc="$pc" 'BEGIN {
    printf "| Llama-2 (sentencepiece) | %s | gomegatron preprocess | %.1f | %.2f | %.1f | %.2f | %.0f | %.2f×, %.2f× |\n", w, gs, b/gs/1e6, gc, b/gc/1e6, gr/1024, ps/gs, pc/gc
    printf "| Llama-2 (sentencepiece) | %s | Python peer | %.1f | %.2f | %.1f | %.2f | %.0f (parent) | |\n", w, ps, b/ps/1e6, pc, b/pc/1e6, pr/1024 }'
  timed "go-qwen-$w" "$work/preprocess" --input "$corpus" --output-prefix "$work/go_qwen_$w" --tokenizer-type HuggingFaceTokenizer \
    --tokenizer-model "$work/qwen3" --append-eod --workers "$w" --progress none
  awk -v b="$bytes" -v w="$w" -v gs="$secs" -v gr="$rss" -v gc="$cpu" 'BEGIN {
    printf "| Qwen3 (tokenizer.json) | %s | gomegatron preprocess | %.1f | %.2f | %.1f | %.2f | %.0f | no peer |\n", w, gs, b/gs/1e6, gc, b/gc/1e6, gr/1024 }'
  timed "go-wudao-$w" "$work/preprocess" --wudao --input "$work/wudao" --output-prefix "$work/go_wudao_$w" --patch-tokenizer-type LLamaTokenizer \
    --load "$work/load" --append-eod --workers "$w" --progress none
  gs=$secs; grss=$rss; gc=$cpu
  timed "py-wudao-$w" $py scripts/bench/preprocess_peer_wudao.py "$work/wudao" "$sp" "$work/py_wudao_$w" "$w"
  ps=$secs; prss=$rss; pc=$cpu
  for ext in bin idx; do
    cmp -s "$work/go_wudao_${w}_text_document.$ext" "$work/py_wudao_${w}_text_document.$ext" || { echo "Go and Python WuDao .$ext differ (workers $w)" >&2; exit 1; }
  done
  awk -v b="$wbytes" -v w="$w" -v gs="$gs" -v ps="$ps" -v gr="$grss" -v pr="$prss" -v gc="$gc" -v pc="$pc" 'BEGIN {
    printf "| WuDao raw → Llama-2 (Pai) | %s | gomegatron preprocess --wudao | %.1f | %.2f | %.1f | %.2f | %.0f | %.2f×, %.2f× |\n", w, gs, b/gs/1e6, gc, b/gc/1e6, gr/1024, ps/gs, pc/gc
    printf "| WuDao raw → Llama-2 (Pai) | %s | Python peer (Pai two steps) | %.1f | %.2f | %.1f | %.2f | %.0f (parent) | |\n", w, ps, b/ps/1e6, pc, b/pc/1e6, pr/1024 }'
done
echo
echo "Go and Python outputs are byte-identical for every worker count and both pipelines. Logs and outputs: $work"
