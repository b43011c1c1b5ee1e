#!/usr/bin/env bash
# make demo: gomegatron end to end on a laptop, with nothing but Go — no download, no GPU.
#   1. build a corpus from the Go standard library sources already on this machine
#   2. tokenize it into Megatron's .bin/.idx with tools/preprocess (a SentencePiece model
#      shipped in the repository)
#   3. pretrain a small Llama on 2 processes (tensor parallel 2 + sequence parallel) with
#      golaunch, Megatron's log lines showing the loss fall, saving a checkpoint
#   4. convert the Megatron checkpoint to Hugging Face format with tools/convert
#   5. evaluate the converted model and generate a few samples from it
# Everything goes to $DEMO_OUT (default out/demo). DEMO_MINUTES caps training (default 4).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${DEMO_OUT:-$repo/out/demo}
minutes=${DEMO_MINUTES:-4}
tok=$repo/data/tokenizer/testdata/sp_bpe2k.model # SentencePiece BPE, 2000 pieces (see its README)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$(date +%s)

mkdir -p "$out/bin" "$out/data"
rm -rf "$out/checkpoint" "$out/hf" "$out/tensorboard"
step "building golaunch, preprocess and convert"
(cd "$repo" && go build -o "$out/bin/" ./cmd/golaunch ./tools/preprocess ./tools/convert)

step "1. corpus: Go standard library sources"
(cd "$repo" && go run ./scripts/demo/corpus -out "$out/data/corpus.jsonl" -max-mb 2)

step "2. preprocess to Megatron .bin/.idx"
"$out/bin/preprocess" --input "$out/data/corpus.jsonl" --output-prefix "$out/data/gostd" \
  --tokenizer-type Llama2Tokenizer --tokenizer-model "$tok" --append-eod --workers 2 --progress log

step "3. pretrain a small Llama: golaunch --nproc-per-node 2, TP=2 with sequence parallelism"
"$out/bin/golaunch" --standalone --nproc-per-node 2 --local-ranks-filter 1 pretrain \
  --tensor-model-parallel-size 2 --sequence-parallel \
  --num-layers 4 --hidden-size 256 --num-attention-heads 8 --group-query-attention --num-query-groups 4 \
  --ffn-hidden-size 688 --seq-length 128 --max-position-embeddings 128 \
  --swiglu --normalization RMSNorm --position-embedding-type rope \
  --untie-embeddings-and-output-weights --disable-bias-linear --attention-dropout 0 --hidden-dropout 0 \
  --micro-batch-size 8 --global-batch-size 16 --train-iters 400 \
  --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine --lr-warmup-iters 20 --bf16 \
  --data-path "$out/data/gostd_text_document" --split 98,2,0 \
  --tokenizer-type Llama2Tokenizer --tokenizer-model "$tok" \
  --log-interval 20 --eval-interval 200 --eval-iters 4 --exit-duration-in-mins "$minutes" \
  --save "$out/checkpoint" --save-interval 200 --tensorboard-dir "$out/tensorboard"

step "4. convert the Megatron checkpoint to Hugging Face"
"$out/bin/convert" --load_path "$out/checkpoint" --save_path "$out/hf" --model_name llama \
  --convert_checkpoint_from_megatron_to_transformers --progress none
cp "$tok" "$out/hf/tokenizer.model"

step "5. evaluate the converted model and generate from it"
"$out/bin/golaunch" evaluate --load "$out/hf" --data-path "$out/data/gostd_text_document" --max-samples 4 --seq-length 128
if "$out/bin/golaunch" generate --help >/dev/null 2>&1; then
  "$out/bin/golaunch" generate --load "$out/hf" --tokenizer-type Llama2Tokenizer --tokenizer-model "$tok" \
    --top-k 5 --temperature 0.8 --out-seq-length 60 --seed 1 \
    --prompt 'func main() {' --prompt 'package strings' --prompt '// Copyright 2009 The Go Authors.'
else
  echo "(golaunch generate is not available in this build)"
fi

step "done in $(( $(date +%s) - start )) s — everything is under $out"
cat <<EOF2
  corpus            $out/data/corpus.jsonl
  Megatron dataset  $out/data/gostd_text_document.{bin,idx}
  checkpoint        $out/checkpoint  (Megatron torch format; latest_checkpointed_iteration.txt)
  TensorBoard       $out/tensorboard
  Hugging Face      $out/hf  (config.json + model.safetensors)
EOF2
