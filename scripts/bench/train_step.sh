#!/usr/bin/env bash
# CPU training-step throughput of gomegatron beside PyTorch on the same machine and threads.
# Usage: scripts/bench/train_step.sh [threads]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
ours=$(GOMAXPROCS=$threads go test -run '^$' -bench BenchmarkTrainStep -benchtime 5x ./train/ | awk '/tokens\/s/ {for (i=1;i<=NF;i++) if ($i=="tokens/s") print $(i-1)}')
peer=$(OMP_NUM_THREADS=$threads /usr/bin/python3 scripts/bench/train_step_torch.py --threads "$threads")
ptok=$(printf '%s' "$peer" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
printf 'machine: %s, %s threads, %s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$threads" "$(date -u +%F)"
printf '| step | tokens/s |\n|---|---|\n| gomegatron | %.0f |\n| %s | %.0f |\n' "$ours" "$(printf '%s' "$peer" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["peer"])')" "$ptok"
/usr/bin/python3 -c "print('ratio gomegatron/pytorch: %.2f' % ($ours/$ptok))"
