#!/usr/bin/env bash
# GPU check: runs on the GPU machine with no Go, within 8 minutes. It runs the test
# binaries built by scripts/gpu/bundle.sh (make gpu-bundle), the cuBLASLt GEMM benchmark
# and its PyTorch peer, and writes a markdown report (pass/fail per test, GEMM TFLOP/s ours
# vs torch as ratios) to $OUT/report.md (./gpu-report/report.md without $OUT), beside the
# full logs.
# Usage: check.sh [bundle-dir]   (default: this script's folder if it holds cuda.test,
#                                 else out/gpu-bundle)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${1:-}
if [ -z "$B" ]; then
	if [ -x "$here/cuda.test" ]; then B=$here; else B=out/gpu-bundle; fi
fi
B=$(cd "$B" && pwd) || { echo "check.sh: no bundle folder (run make gpu-bundle)" >&2; exit 2; }
R=${OUT:-$PWD/gpu-report}
mkdir -p "$R"
start=$(date +%s)
PY=${PYTHON:-python3}

# NVIDIA's pip wheel folders on python3's sys.path: the libraries the Go binaries dlopen
# (kernels/cuda/dl also finds them itself; exporting them makes the run independent of
# where python3's virtualenv lives) and NVRTC's builtins, which it loads by soname.
LIBDIRS=$("$PY" - <<'PY' 2>/dev/null
import glob, os, sys
out = []
for p in sys.path:
    for d in sorted(glob.glob(os.path.join(p or ".", "nvidia", "*", "lib"))):
        if d not in out and glob.glob(os.path.join(d, "lib*.so*")):
            out.append(d)
print(":".join(out))
PY
)
export GOMEGATRON_CUDA_LIB_DIRS=${LIBDIRS:-${GOMEGATRON_CUDA_LIB_DIRS:-}} # a preset list stands when python finds none
export LD_LIBRARY_PATH=${LIBDIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GOMEGATRON_CUBIN_CACHE=${GOMEGATRON_CUBIN_CACHE:-/tmp/gomegatron-cubin}
export GOMEGATRON_CUDA_ARENA_MB=${GOMEGATRON_CUDA_ARENA_MB:-16384}
# cuBLASLt says why it refuses a matmul (level 1: errors only) into the step's log.
export CUBLASLT_LOG_LEVEL=${CUBLASLT_LOG_LEVEL:-1}

# step NAME SECONDS DIR CMD...: run CMD in DIR (when DIR exists) with a hard time limit,
# log to $R/NAME.log, keep the status. Tests run in their package folder when the source
# tree is here (the repository copy on the GPU machine), so the fake-library and emulator
# tests find their C sources; elsewhere those skip. Every limit is cut to what is left of
# the whole script's budget (CHECK_BUDGET_S, 470 s: the report within 8 minutes).
# CHECK_STEPS, an extended regex, runs only the steps whose names match it (all by default;
# scripts/gpu/rehearse.sh runs the test steps on the kernel emulator, with CHECK_SLOWDOWN
# multiplying every step's limit and its test binaries' -test.timeout).
declare -A status
deadline=$((start + ${CHECK_BUDGET_S:-470}))
slow=${CHECK_SLOWDOWN:-1}
step() {
	local name=$1 secs=$(($2 * slow)) dir=$3
	shift 3
	local t0=$(date +%s)
	local left=$((deadline - t0))
	if ! [[ $name =~ ${CHECK_STEPS:-.} ]]; then
		echo "== $name: not selected (CHECK_STEPS)" | tee "$R/$name.log"
		status[$name]=skipped
		return
	fi
	if [ "$left" -lt "$secs" ]; then secs=$left; fi
	if [ "$secs" -lt 5 ]; then
		echo "== $name: skipped, the time budget is spent" | tee "$R/$name.log"
		status[$name]=skipped
		return
	fi
	echo "== $name (limit ${secs}s): $*"
	(
		if [ -d "$dir" ]; then cd "$dir"; fi
		timeout --kill-after=10 "$secs" "$@"
	) >"$R/$name.log" 2>&1
	status[$name]=$?
	echo "== $name: exit ${status[$name]} after $(($(date +%s) - t0))s"
}

step dl 20 kernels/cuda/dl "$B/dl.test" -test.v -test.timeout $((15 * slow))s
# The GPU tests in groups, each its own process: a CUDA error panics the backend, and a panic
# ends its test binary; groups keep one failure from hiding the others' results. The host
# emulator's tests (TestEmulator, TestProfileOnEmulator) run in CI, not here.
cuda_groups=(
	"cuda-setup:^(TestEnvironment|TestCubinCache|TestArenaDevice|TestBind)$"
	"cuda-conformance:^TestConformance$"
	"cuda-ops:^(TestVsCPU|TestGemmVsCPU|TestGemmFP8|TestFP8SoftwareRounding)$"
	"cuda-attention:^(TestAttentionVsCPU|TestFlashAttentionVsCPU|TestFlashAttentionWideVsCPU|TestFlashAttentionPipeVsCPU)$"
	"cuda-model:^(TestModelVsCPU|TestDecodeVsCPU|TestLossFallsOnGPU)$"
)
for g in "${cuda_groups[@]}"; do
	step "${g%%:*}" 60 kernels/cuda "$B/cuda.test" -test.v -test.timeout $((55 * slow))s -test.run "${g#*:}"
done
step cuda-host 30 kernels/cuda "$B/cuda.test" -test.v -test.timeout $((25 * slow))s \
	-test.skip '^(TestEmulator|TestProfileOnEmulator|TestEnvironment|TestCubinCache|TestArenaDevice|TestBind|TestConformance|TestVsCPU|TestGemmVsCPU|TestGemmFP8|TestFP8SoftwareRounding|TestAttentionVsCPU|TestFlashAttentionVsCPU|TestFlashAttentionWideVsCPU|TestFlashAttentionPipeVsCPU|TestModelVsCPU|TestDecodeVsCPU|TestLossFallsOnGPU)$'
step nccl 40 comm/nccl "$B/nccl.test" -test.v -test.timeout $((35 * slow))s
step bench 75 . "$B/cuda.test" -test.run '^$' -test.bench 'Gemm|Ops' -test.benchtime 20x -test.timeout $((70 * slow))s
step peer 50 . "$PY" "$B/peer_matmul.py"

# Training through golaunch on the GPU (the arena takes its default, 90% of free memory).
# small: the demo's Llama on real text (Go sources, SentencePiece BPE 2k) for 100 iterations.
# 1b: a TinyLlama-1.1B-shaped model, bf16, seq 2048, 4 microbatches of 2, on mock data, beside
# transformers' LlamaForCausalLM with SDPA on the same shapes (peer_llama.py).
L1B=(22 2048 5632 32 4 32000 2048 2 4) # layers hidden ffn heads groups vocab seq mbs accum
common=(--swiglu --normalization RMSNorm --position-embedding-type rope --untie-embeddings-and-output-weights
	--disable-bias-linear --attention-dropout 0 --hidden-dropout 0 --bf16 --log-interval 1 --eval-iters 0)
step train-small 60 . env -u GOMEGATRON_CUDA_ARENA_MB "$B/golaunch" --standalone --nproc-per-node 1 pretrain --device cuda \
	--num-layers 4 --hidden-size 256 --num-attention-heads 8 --group-query-attention --num-query-groups 4 \
	--ffn-hidden-size 688 --seq-length 128 --max-position-embeddings 128 "${common[@]}" \
	--micro-batch-size 8 --global-batch-size 16 --train-iters 100 --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine \
	--lr-warmup-iters 10 --data-path "$B/data/gostd_text_document" --split 98,2,0 --data-cache-path /tmp/gm-cache \
	--tokenizer-type Llama2Tokenizer --tokenizer-model "$B/data/tokenizer.model"
llama1b=(--num-layers ${L1B[0]} --hidden-size ${L1B[1]} --ffn-hidden-size ${L1B[2]} --num-attention-heads ${L1B[3]}
	--group-query-attention --num-query-groups ${L1B[4]} --vocab-size ${L1B[5]} --mock-data --data-cache-path /tmp/gm-cache
	--seq-length ${L1B[6]} --max-position-embeddings ${L1B[6]} --micro-batch-size ${L1B[7]}
	--global-batch-size $((L1B[7] * L1B[8])) --lr 1e-4 --clip-grad 1.0 "${common[@]}")
step train-1b 150 . env -u GOMEGATRON_CUDA_ARENA_MB "$B/golaunch" --standalone --nproc-per-node 1 pretrain --device cuda \
	"${llama1b[@]}" --train-iters 7
step peer-1b 90 . "$PY" "$B/peer_llama.py" --layers ${L1B[0]} --hidden ${L1B[1]} --ffn ${L1B[2]} --heads ${L1B[3]} \
	--kv-heads ${L1B[4]} --vocab ${L1B[5]} --seq ${L1B[6]} --mbs ${L1B[7]} --accum ${L1B[8]}
step profile-1b 80 . env -u GOMEGATRON_CUDA_ARENA_MB GOMEGATRON_CUDA_PROFILE="$R/profile-1b.txt" "$B/golaunch" --standalone \
	--nproc-per-node 1 pretrain --device cuda "${llama1b[@]}" --train-iters 3
step train-1b-fp8 100 . env -u GOMEGATRON_CUDA_ARENA_MB "$B/golaunch" --standalone --nproc-per-node 1 pretrain --device cuda \
	"${llama1b[@]}" --train-iters 6 --fp8-format hybrid --fp8-amax-history-len 16 --fp8-amax-compute-algo max
# The same bf16 run with 128 query rows per forward and dq flash block (GOMEGATRON_FLASH_WIDE=1).
step train-1b-wide 60 . env -u GOMEGATRON_CUDA_ARENA_MB GOMEGATRON_FLASH_WIDE=1 "$B/golaunch" --standalone \
	--nproc-per-node 1 pretrain --device cuda "${llama1b[@]}" --train-iters 5
# The same bf16 run with the cp.async/ldmatrix flash kernels (GOMEGATRON_FLASH_PIPE=1).
step train-1b-pipe 60 . env -u GOMEGATRON_CUDA_ARENA_MB GOMEGATRON_FLASH_PIPE=1 "$B/golaunch" --standalone \
	--nproc-per-node 1 pretrain --device cuda "${llama1b[@]}" --train-iters 5
# The same bf16 run with F32 activations (GOMEGATRON_ACTIVATIONS=f32): what BF16 activations save.
step train-1b-f32act 80 . env -u GOMEGATRON_CUDA_ARENA_MB GOMEGATRON_ACTIVATIONS=f32 "$B/golaunch" --standalone \
	--nproc-per-node 1 pretrain --device cuda "${llama1b[@]}" --train-iters 5

# ---- report -----------------------------------------------------------------------------
cuda_steps="$(for g in "${cuda_groups[@]}"; do printf '%s ' "${g%%:*}"; done)cuda-host"
steps="dl $cuda_steps nccl bench peer train-small train-1b peer-1b profile-1b train-1b-fp8 train-1b-wide train-1b-pipe train-1b-f32act"
rep=$R/report.md
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
torchv=$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null)
{
	echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	echo "- commit: $(cat "$B/COMMIT" 2>/dev/null || echo unknown)"
	echo "- GPU: ${gpu:-unknown (nvidia-smi failed)}"
	echo "- PyTorch: ${torchv:-not importable}"
	echo "- CUDA backend: $(grep -m1 -o 'CUDA available=.*' "$R/cuda-setup.log" || echo 'no environment line (see cuda-setup.log)')"
	echo "- library folders: ${LIBDIRS:-none found on sys.path}"
	echo
	echo "## Tests"
	echo
	echo "| binary | test | result | seconds |"
	echo "|---|---|---|---|"
	for bin in dl $cuda_steps nccl; do
		awk -v bin="$bin" '/^ *--- (PASS|FAIL|SKIP): / {
			res=$2; sub(":", "", res); t=$4; gsub(/[()s]/, "", t)
			printf "| %s | %s | %s | %s |\n", bin, $3, (res=="FAIL" ? "**FAIL**" : res), t }' "$R/$bin.log"
		case ${status[$bin]} in
		0) ;;
		124|137) echo "| $bin | (binary) | **TIMEOUT** (exit ${status[$bin]}) | |" ;;
		*) echo "| $bin | (binary) | **exit ${status[$bin]}** | |" ;;
		esac
	done
	echo
	count() { for b in dl $cuda_steps nccl; do cat "$R/$b.log"; done | grep -c -- "--- $1"; }
	passes=$(count PASS)
	fails=$(count FAIL)
	skips=$(count SKIP)
	echo "Totals (subtests included): $passes passed, $fails failed, $skips skipped."
	echo
	echo "## GEMM TFLOP/s: cuBLASLt through kernels/cuda vs torch on the same GPU"
	echo
	echo "| case | ours | torch | ours / torch |"
	echo "|---|---|---|---|"
	for kind in bf16 bf16-f32 fp8; do
		for n in 4096 8192; do
			ours=$(awk -v k="BenchmarkGemm/$kind/$n" '$1 ~ "^"k"(-[0-9]+)?$" { for (i = 1; i < NF; i++) if ($(i+1) == "TFLOP/s") print $i }' "$R/bench.log" | tail -1)
			pk=${kind%-f32}
			peer=$(awk -v k="$pk/$n" '$1 == "peer" && $2 == k { print $3 }' "$R/peer.log" | tail -1)
			ratio=""
			if [ -n "$ours" ] && [ -n "$peer" ]; then ratio=$(awk -v a="$ours" -v b="$peer" 'BEGIN { printf "%.2f", a / b }'); fi
			echo "| $kind $n³ | ${ours:-n/a} | ${peer:-n/a} | ${ratio:-n/a} |"
		done
	done
	echo
	echo "bf16: NN, D bf16 (torch.matmul); bf16-f32: Backend.Gemm (D f32, compared with torch's bf16-out matmul);"
	echo "fp8: E4M3 TN, D bf16, per-tensor scales (ours folded into α, torch's as device scalars), fast accumulation (torch._scaled_mm). Targets (issue 8):"
	echo "GEMM ≥ 0.95 of torch; FP8 ≥ 1.6× bf16:"
	for n in 4096 8192; do
		b16=$(awk -v k="BenchmarkGemm/bf16/$n" '$1 ~ "^"k"(-[0-9]+)?$" { for (i = 1; i < NF; i++) if ($(i+1) == "TFLOP/s") print $i }' "$R/bench.log" | tail -1)
		f8=$(awk -v k="BenchmarkGemm/fp8/$n" '$1 ~ "^"k"(-[0-9]+)?$" { for (i = 1; i < NF; i++) if ($(i+1) == "TFLOP/s") print $i }' "$R/bench.log" | tail -1)
		if [ -n "$b16" ] && [ -n "$f8" ]; then
			echo "- $n³: ours fp8 / ours bf16 = $(awk -v a="$f8" -v b="$b16" 'BEGIN { printf "%.2f", a / b }')"
		fi
	done
	echo
	echo "## Memory-bound ops and flash attention of a 1B step (BenchmarkOps), F32 vs BF16 activations"
	echo
	echo "| op | F32 | BF16 | unit |"
	echo "|---|---|---|---|"
	awk '$1 ~ /^BenchmarkOps\// {
		split($1, p, "/"); dt = p[3]; sub(/-[0-9]+$/, "", dt)
		for (i = 2; i < NF; i++) if ($(i+1) == "GB/s" || $(i+1) == "TFLOP/s") { v[p[2], dt] = $i; u[p[2]] = $(i+1) }
		if (!(p[2] in seen)) { seen[p[2]] = 1; order[++n] = p[2] } }
		END { for (i = 1; i <= n; i++) { o = order[i]
			printf "| %s | %s | %s | %s |\n", o, ((o, "float32") in v) ? v[o, "float32"] : "n/a", ((o, "bfloat16") in v) ? v[o, "bfloat16"] : "n/a", u[o] } }' "$R/bench.log"
	echo
	echo "GB/s counts the activations each op must read and write (H100 SXM HBM3 ≈ 3350 GB/s); flash attention"
	echo "counts the causal half of 4·B·H·S²·D (backward 2.5×), B 2, H 32 (4 groups), S 2048, D 64."
	echo
	echo "## Training through golaunch pretrain --device cuda"
	echo
	losses=$(awk '/ lm loss: / { for (i = 1; i < NF; i++) if ($i == "loss:") print $(i+1) }' "$R/train-small.log")
	first=$(echo "$losses" | head -1)
	last=$(echo "$losses" | tail -1)
	echo "- small Llama (4 layers, hidden 256, real text): $(echo "$losses" | grep -c .) iterations logged, lm loss ${first:-n/a} → ${last:-n/a}$(awk -v a="$first" -v b="$last" 'BEGIN { if (a != "" && b != "") print (b < a ? " (falls)" : " (**does not fall**)") }')"
	# Median ms per iteration from the 3rd logged iteration on (the 1st compiles the kernels).
	median_ms() {
		awk '/elapsed time per iteration/ { n++; for (i = 1; i < NF; i++) if ($i == "(ms):") if (n >= 3) print $(i+1) }' "$1" 2>/dev/null |
			sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
	}
	ours_ms=$(median_ms "$R/train-1b.log")
	peer_ms=$(grep -o 'ms_per_iter=[0-9.]*' "$R/peer-1b.log" | cut -d= -f2)
	# Model FLOPs per token (PaLM's MFU): 6 × GEMM parameters + 12 × layers × hidden × seq
	# (attention scores and values, not halved for causality); peak: H100/H200 dense bf16.
	read -r ours_tok peer_tok ours_mfu peer_mfu < <(awk -v L="${L1B[0]}" -v h="${L1B[1]}" -v f="${L1B[2]}" -v H="${L1B[3]}" \
		-v G="${L1B[4]}" -v V="${L1B[5]}" -v s="${L1B[6]}" -v b="$((L1B[7] * L1B[8]))" -v om="$ours_ms" -v pm="$peer_ms" -v gpu="$gpu" 'BEGIN {
		d = h / H; n = L * (h * (h + 2 * G * d) + h * h + 3 * h * f) + h * V
		fpt = 6 * n + 12 * L * h * s; peak = (gpu ~ /H100|H200/) ? 989.4e12 : 0
		ot = om > 0 ? b * s / om * 1e3 : 0; pt = pm > 0 ? b * s / pm * 1e3 : 0
		printf "%s %s %s %s\n", ot ? sprintf("%.0f", ot) : "n/a", pt ? sprintf("%.0f", pt) : "n/a",
			(peak && ot) ? sprintf("%.1f%%", 100 * ot * fpt / peak) : "n/a", (peak && pt) ? sprintf("%.1f%%", 100 * pt * fpt / peak) : "n/a" }')
	echo "- 1B Llama (${L1B[0]} layers, hidden ${L1B[1]}, ffn ${L1B[2]}, ${L1B[3]} heads / ${L1B[4]} groups, vocab ${L1B[5]}), bf16, seq ${L1B[6]}, ${L1B[7]}×${L1B[8]} sequences per iteration:"
	echo
	# Peak device memory: Megatron's report_memory line (max allocated, MiB) and torch's
	# max_memory_allocated, in GiB.
	peak_gib() { grep -o 'max allocated: [0-9.]*' "$1" 2>/dev/null | head -1 | awk '{ printf "%.1f", $3 / 1024 }'; }
	peer_gib=$(grep -o 'max_mem_gib=[0-9.]*' "$R/peer-1b.log" | cut -d= -f2)
	echo "| | ms / iteration | tokens/s | MFU | peak memory (GiB) |"
	echo "|---|---|---|---|---|"
	echo "| gomegatron (golaunch pretrain; BF16 activations) | ${ours_ms:-n/a} | ${ours_tok} | ${ours_mfu} | $(peak_gib "$R/train-1b.log") |"
	echo "| transformers LlamaForCausalLM, SDPA, autocast bf16, fused AdamW | ${peer_ms:-n/a} | ${peer_tok} | ${peer_mfu} | ${peer_gib:-n/a} |"
	for v in "fp8:--fp8-format hybrid (FP8 GEMMs where shapes allow; F32 activations)" "wide:128 query rows per flash block (GOMEGATRON_FLASH_WIDE=1)" "pipe:cp.async + ldmatrix flash kernels (GOMEGATRON_FLASH_PIPE=1)" "f32act:F32 activations (GOMEGATRON_ACTIVATIONS=f32)"; do
		v_ms=$(median_ms "$R/train-1b-${v%%:*}.log")
		echo "| gomegatron ${v#*:} | ${v_ms:-n/a} | $(awk -v b="$((L1B[7] * L1B[8] * L1B[6]))" -v m="$v_ms" 'BEGIN { print (m > 0 ? sprintf("%.0f", b / m * 1e3) : "n/a") }') | | $(peak_gib "$R/train-1b-${v%%:*}.log") |"
	done
	echo
	echo "Ratio (ours / PyTorch tokens/s): $(awk -v a="$ours_tok" -v b="$peer_tok" 'BEGIN { print (a + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", a / b) : "n/a" }'). Targets (issue 8): MFU ≥ 35% first, ≥ 55% after flash attention and fusion."
	echo "MFU counts 6 × GEMM parameters + 12·layers·hidden·seq FLOPs per token against 989.4 TFLOP/s."
	echo
	echo "### Where the 1B step's GPU time goes (3 iterations, GOMEGATRON_CUDA_PROFILE, top 30)"
	echo
	echo '```'
	head -32 "$R/profile-1b.txt" 2>/dev/null || echo "(no profile: see profile-1b.log)"
	echo '```'
	echo
	echo "## Step status"
	echo
	for s in $steps; do echo "- $s: exit ${status[$s]}"; done
	echo "- wall time: $(($(date +%s) - start)) s"
	for s in $steps; do
		if [ "${status[$s]}" != 0 ] && [ "${status[$s]}" != skipped ]; then
			echo
			echo "### $s.log (last 40 lines)"
			echo
			echo '```'
			tail -40 "$R/$s.log"
			echo '```'
		fi
	done
} >"$rep"
cat "$rep"
