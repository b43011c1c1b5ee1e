#!/usr/bin/env bash
# Copies the large reference files tests need into testdata/large/ (git-ignored).
# Source: ../shared/fixtures when present. Tests that need a missing file skip and name
# this script.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared/fixtures
dst=testdata/large
mkdir -p "$dst"
if [ -d "$shared/tokenizers" ]; then
  for d in llama2 llama3 qwen3 gpt2 cl100k; do
    if [ -f "$shared/tokenizers/$d/tokenizer.json" ]; then
      mkdir -p "$dst/tokenizers/$d"
      cp -u "$shared/tokenizers/$d/tokenizer.json" "$dst/tokenizers/$d/"
    fi
  done
  if [ -f "$shared/tokenizers/sentencepiece/llama2_tokenizer.model" ]; then
    mkdir -p "$dst/tokenizers/sentencepiece"
    cp -u "$shared/tokenizers/sentencepiece/llama2_tokenizer.model" "$dst/tokenizers/sentencepiece/"
  fi
fi
