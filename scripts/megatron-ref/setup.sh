#!/usr/bin/env bash
# Builds the CPU harness that runs Megatron-LM itself beside gomegatron: a Debian trixie
# chroot with PyTorch 2.6 (CPU, gloo) and Megatron-LM's June 2025 tree, with which
# ckpt/megatron/testdata's fixtures and references were made (see
# ckpt/megatron/testdata/torch_dist/README.md). Needs root, Debian's mirror and a clone of
# NVIDIA/Megatron-LM; takes a few minutes.
#
#   scripts/megatron-ref/setup.sh [ROOT] [MEGATRON_GIT]
#
# Then, for example:
#   chroot ROOT bash -c "cd /megatron && python3 make_torch_dist.py /tmp/out 2 2"
#   chroot ROOT bash -c "cd /megatron && python3 megatron_forward.py /tmp/out /tmp/ref.pt"
set -euo pipefail
ROOT=${1:-/opt/trixie}
GIT=${2:-/work/.mirror/NVIDIA+Megatron-LM/repo}
COMMIT=0e3af7e4347705108d70d4907f65f26d7965f37f # Megatron-Core 0.13 development, June 2025
HERE=$(cd "$(dirname "$0")" && pwd)
TESTDATA=$HERE/../../ckpt/megatron/testdata

if [ ! -x "$ROOT/usr/bin/python3" ]; then
	command -v debootstrap >/dev/null || apt-get install -y debootstrap
	debootstrap --variant=minbase trixie "$ROOT" http://deb.debian.org/debian
fi
cp /etc/resolv.conf "$ROOT/etc/"
mountpoint -q "$ROOT/proc" || mount --bind /proc "$ROOT/proc"
chroot "$ROOT" apt-get update
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	python3-torch python3-numpy python3-einops python3-six python3-sentencepiece python3-setuptools \
	python3-packaging python3-yaml python3-regex python3-tqdm python3-safetensors

rm -rf "$ROOT/megatron" && mkdir -p "$ROOT/megatron"
git --git-dir="$GIT" archive "$COMMIT" megatron | tar -x -C "$ROOT/megatron"
# Three fusion modules decorate Triton kernels at import time; without Triton the
# decorators become no-ops (no kernel is ever launched on the CPU). The legacy model's GQA
# query view is made a reshape (below).
python3 - "$ROOT/megatron" <<'PY'
import sys, pathlib
root = pathlib.Path(sys.argv[1]) / "megatron/core/fusions"
for name in ("fused_indices_converter.py", "fused_mla_yarn_rope_apply.py", "fused_pad_routing_map.py"):
    p = root / name
    s = p.read_text()
    s = s.replace("import triton\nimport triton.language as tl\n",
                  "try:\n    import triton\n    import triton.language as tl\nexcept ImportError:\n"
                  "    triton = None\n    tl = None\n", 1) if name == "fused_pad_routing_map.py" else s
    s = s.replace("    tl = None\n", "    import types; tl = types.SimpleNamespace(constexpr=int)\n")
    s = s.replace("@triton.jit", "@(triton.jit if triton else (lambda f: f))")
    p.write_text(s)
# The legacy model views a split tensor, which fails with more than one query group per TP
# rank; reshape is what the view means.
p = pathlib.Path(sys.argv[1]) / "megatron/legacy/model/transformer.py"
s = p.read_text()
s = s.replace("query_layer = query_layer.view(query_layer.size(0), query_layer.size(1), -1, self.hidden_size_per_attention_head)",
              "query_layer = query_layer.reshape(query_layer.size(0), query_layer.size(1), -1, self.hidden_size_per_attention_head)")
p.write_text(s)
PY
cp "$TESTDATA/make_torch_dist.py" "$TESTDATA/megatron_forward.py" "$ROOT/megatron/"
chroot "$ROOT" bash -c "cd /megatron && python3 -c 'import megatron.core, megatron.training.checkpointing; print(\"Megatron-LM imports\")'" 2>&1 | tail -1
