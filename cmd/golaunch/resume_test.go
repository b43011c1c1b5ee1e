package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/tensor"
)

var lossField = regexp.MustCompile(`iteration +(\d+)/.*(lm loss: [^|]*\| loss scale: [^|]*\| grad norm: [^|]*)`)

// iterationLosses maps iteration number → "lm loss … grad norm …" text of the log.
func iterationLosses(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if s := lossField.FindStringSubmatch(line); s != nil {
			m[s[1]] = s[2]
		}
	}
	return m
}

func resumeArgs(dir string) []string {
	return strings.Fields("pretrain --num-layers 4 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 128 " +
		"--seq-length 32 --micro-batch-size 2 --global-batch-size 8 --train-iters 8 --lr 3e-3 --lr-warmup-iters 2 " +
		"--vocab-size 256 --log-interval 1 --swiglu --normalization RMSNorm --position-embedding-type rope " +
		"--attention-dropout 0 --hidden-dropout 0.1 --mock-data --bf16 --eval-iters 0 --data-cache-path " + dir)
}

func runGolaunch(t *testing.T, args ...string) string {
	cmd := exec.Command(golaunchBin, args...)
	cmd.Env = append(os.Environ(), "GOLAUNCH_GRACE_PERIOD=5")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%v\n%s", args, out)
	return string(out)
}

// TestExactResume: 8 iterations in one go, and 4 + resume to 8, give the same losses, grad
// norms and final weights bit for bit, for one process, TP2·PP2, TP2·DP2 with the
// distributed optimizer, and PP2·DP2 with two virtual stages and FP8 (bf16 with fp32 main
// params, dropout on).
func TestExactResume(t *testing.T) {
	for name, layout := range map[string][]string{
		"single":                nil,
		"tp2pp2":                {"--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"},
		"tp2dp2-distop":         {"--tensor-model-parallel-size", "2", "--use-distributed-optimizer"},
		"tp2-attention-dropout": {"--tensor-model-parallel-size", "2", "--attention-dropout", "0.1"},
		// Many buckets: shards per bucket, distrib_optim.pt without the buckets' end padding.
		"dp4-distop-overlap": {"--use-distributed-optimizer", "--overlap-grad-reduce", "--ddp-bucket-size", "20000"},
		"single-fp8":         {"--fp8-hybrid", "--fp8-amax-history-len", "4", "--fp8-amax-compute-algo", "max"},
		// A weight decay rising over the run: the resumed run goes on from the checkpoint's step.
		"dp2-wd-cosine": {"--weight-decay-incr-style", "cosine", "--start-weight-decay", "0.01", "--end-weight-decay", "0.8"},
		// Interleaved schedule: model0/model1 chunks in each stage's file, Megatron's keys.
		"pp2vp2dp2-fp8": {"--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1",
			"--fp8-hybrid", "--fp8-amax-history-len", "4"},
		// Mixture of experts: router and experts saved under Megatron-Core's names.
		"tp2dp2-sp-moe": {"--tensor-model-parallel-size", "2", "--sequence-parallel", "--use-distributed-optimizer",
			"--num-experts", "4", "--moe-router-topk", "2", "--moe-aux-loss-coeff", "1e-2", "--moe-z-loss-coeff", "1e-3", "--disable-bias-linear"},
		// Expert parallelism: mp_rank_XX_EEE shards written by each expert-parallel rank;
		// expert weights in buckets of their own, sharded over the expert-data-parallel group
		// (several, reduced while backward runs).
		"dp4-ep2-distop-moe": {"--use-distributed-optimizer", "--num-experts", "4", "--moe-router-topk", "2",
			"--expert-model-parallel-size", "2", "--disable-bias-linear", "--overlap-grad-reduce", "--ddp-bucket-size", "20000"},
		"pp2dp2-ep2-moe": {"--pipeline-model-parallel-size", "2", "--num-experts", "4", "--moe-router-topk", "2",
			"--expert-model-parallel-size", "2", "--disable-bias-linear"},
		"tp2dp2-sp-ep2-moe": {"--tensor-model-parallel-size", "2", "--sequence-parallel", "--num-experts", "4",
			"--moe-router-topk", "1", "--moe-aux-loss-coeff", "1e-2", "--expert-model-parallel-size", "2", "--disable-bias-linear"},
		// DeepSeek-V3's router: the expert bias (an fp32 buffer outside the optimizer) is
		// saved and restored, and moves on from where it was.
		"tp2dp2-distop-expert-bias": {"--tensor-model-parallel-size", "2", "--sequence-parallel", "--use-distributed-optimizer",
			"--num-experts", "8", "--moe-router-topk", "4", "--moe-router-score-function", "sigmoid", "--moe-router-enable-expert-bias",
			"--moe-router-bias-update-rate", "0.05", "--moe-router-num-groups", "4", "--moe-router-group-topk", "2",
			"--moe-router-topk-scaling-factor", "2.5", "--disable-bias-linear", "--bf16"},
		// GroupedMLP experts: weight1/weight2 per layer and expert-parallel rank.
		"tp2dp2-ep2-grouped": {"--tensor-model-parallel-size", "2", "--use-distributed-optimizer", "--num-experts", "4",
			"--moe-router-topk", "2", "--expert-model-parallel-size", "2", "--disable-bias-linear", "--moe-grouped-gemm"},
		// Baichuan 2's NormHead output layer (Pai's --use-normhead), saved in the args.
		"dp4-normhead": {"--untie-embeddings-and-output-weights", "--use-normhead"},
		// Context parallelism: each sequence split over 2 ranks; CP rank 0 writes the shard.
		"cp2dp2-distop": {"--context-parallel-size", "2", "--use-distributed-optimizer", "--hidden-dropout", "0", "--attention-dropout", "0"},
		// A buffer per model chunk, as Megatron's, in distrib_optim.pt too.
		"pp2vp2dp2-distop": {"--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1",
			"--use-distributed-optimizer"},
		// torch_dist: the distributed optimizer's state by model tensor, each rank its ranges.
		"torch_dist-tp2dp2-distop": {"--ckpt-format", "torch_dist", "--tensor-model-parallel-size", "2", "--use-distributed-optimizer"},
		// The non-distributed optimizer's torch_dist form (states in the model's shapes),
		// GroupedMLP experts (--moe-grouped-gemm) included.
		"torch_dist-tp2dp2": {"--ckpt-format", "torch_dist", "--tensor-model-parallel-size", "2"},
		"torch_dist-dp2-moe-gmm": {"--ckpt-format", "torch_dist", "--num-experts", "4", "--moe-router-topk", "2",
			"--moe-grouped-gemm", "--disable-bias-linear"},
		"torch_dist-pp2vp2dp2-distop": {"--ckpt-format", "torch_dist", "--pipeline-model-parallel-size", "2",
			"--num-layers-per-virtual-pipeline-stage", "1", "--use-distributed-optimizer"},
		"torch_dist-moe-dp4ep2-distop": {"--ckpt-format", "torch_dist", "--use-distributed-optimizer", "--num-experts", "4",
			"--moe-router-topk", "2", "--expert-model-parallel-size", "2", "--disable-bias-linear", "--overlap-grad-reduce", "--ddp-bucket-size", "20000"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			launcher := []string{"--standalone"}
			if layout != nil && name != "single-fp8" {
				launcher = append(launcher, "--nproc-per-node", "4")
			}
			run := func(extra ...string) string {
				return runGolaunch(t, append(append(append([]string{}, launcher...), resumeArgs(dir)...), append(layout, extra...)...)...)
			}
			straight := iterationLosses(run("--save", filepath.Join(dir, "a")))
			half := run("--save", filepath.Join(dir, "b"), "--exit-interval", "4")
			require.Contains(t, half, "exiting program at iteration 4")
			resumed := run("--load", filepath.Join(dir, "b"), "--save", filepath.Join(dir, "b"))
			require.Contains(t, resumed, "successfully loaded checkpoint")
			got := iterationLosses(resumed)
			require.Len(t, got, 4, "iterations 5–8 only:\n%s", resumed)
			for it, want := range straight {
				if it >= "5" {
					require.Equal(t, want, got[it], "iteration %s", it)
				}
			}
			if strings.Contains(name, "grouped") {
				requireGroupedLoads(t, dir, launcher, layout)
			}
			if strings.Contains(name, "normhead") { // the same weights without NormHead: another model
				args := append(append(append([]string{}, launcher...), resumeArgs(dir)...), "--untie-embeddings-and-output-weights", "--load", filepath.Join(dir, "b"))
				out, err := exec.Command(golaunchBin, args...).CombinedOutput()
				require.Error(t, err)
				require.Contains(t, string(out), "the checkpoint's args say use_normhead true (Baichuan 2's NormHead output layer), this run has --use-normhead false: pass --use-normhead")
			}
			if strings.Contains(name, "-ep2") {
				requireSameExpertShards(t, filepath.Join(dir, "a"), filepath.Join(dir, "b"), 8)
				// At EP 1 the experts are resharded (weights only: the optimizer state cannot follow).
				args := append(append(append([]string{}, launcher...), resumeArgs(dir)...),
					append(layout, "--expert-model-parallel-size", "1", "--load", filepath.Join(dir, "b"))...)
				out, err := exec.Command(golaunchBin, args...).CombinedOutput()
				require.Error(t, err)
				require.Contains(t, string(out), "was saved with TP=")
				require.Contains(t, string(out), "EP=2, this run has")
				resharded := iterationLosses(runGolaunch(t, append(args, "--no-load-optim", "--train-iters", "9")...))
				require.Len(t, resharded, 1, "iteration 9 only")
				// The same run at EP 1 ends with the same weights, expert for expert: Open
				// numbers each rank's local experts globally.
				run("--save", filepath.Join(dir, "c"), "--expert-model-parallel-size", "1")
				ep2, err := megatron.Open(filepath.Join(dir, "a"))
				require.NoError(t, err)
				defer ep2.Close()
				ep1, err := megatron.Open(filepath.Join(dir, "c"))
				require.NoError(t, err)
				defer ep1.Close()
				require.Equal(t, 2, ep2.EP)
				require.ElementsMatch(t, ep1.Keys(), ep2.Keys())
				for _, k := range ep1.Keys() {
					w1, _, err := ep1.Full(k)
					require.NoError(t, err)
					w2, _, err := ep2.Full(k)
					require.NoError(t, err)
					var d, n float64
					for i := range w1 {
						d += float64(w1[i]-w2[i]) * float64(w1[i]-w2[i])
						n += float64(w1[i]) * float64(w1[i])
					}
					require.LessOrEqual(t, math.Sqrt(d), 4e-3*math.Sqrt(n), "%s: EP 1 vs EP 2", k)
				}
				return
			}
			a, err := megatron.Open(filepath.Join(dir, "a"))
			require.NoError(t, err)
			defer a.Close()
			b, err := megatron.Open(filepath.Join(dir, "b"))
			require.NoError(t, err)
			defer b.Close()
			require.Equal(t, a.Keys(), b.Keys())
			if strings.HasSuffix(name, "moe") {
				require.Contains(t, a.Keys(), "decoder.layers.3.mlp.experts.local_experts.3.linear_fc1.weight")
				require.Contains(t, a.Keys(), "decoder.layers.0.mlp.router.weight")
			}
			for k, w := range a.ShardTensors(0, 0) { // --bf16: weights saved in bf16, as Megatron's; buffers in fp32
				want := tensor.BF16
				if strings.HasSuffix(k, ".expert_bias") {
					want = tensor.F32
				}
				require.Equal(t, want, w.DType(), "saved %s", k)
			}
			for _, k := range a.Keys() {
				va, _, err := a.Full(k)
				require.NoError(t, err)
				vb, _, err := b.Full(k)
				require.NoError(t, err)
				require.Equal(t, va, vb, "final %s", k)
			}
		})
	}
}

// requireGroupedLoads checks a GroupedMLP checkpoint (dir/b, iteration 8, layout) against
// the SequentialMLP model of the same layout: its shards hold mlp.experts.weight1/weight2
// only; the optimizer state cannot follow the repacking, and the weights alone give
// iteration 9 the loss the grouped run resumed exactly gets.
func requireGroupedLoads(t *testing.T, dir string, launcher, layout []string) {
	sf, err := megatron.LoadShard(megatron.Location{Root: filepath.Join(dir, "b"), Iteration: 8, ExpertRank: 1, ExpertSize: 2}, 1, 0, 1)
	require.NoError(t, err)
	model, _, err := sf.Model()
	require.NoError(t, err)
	require.Equal(t, []int{64, 2 * 2 * 128 / 2}, model["decoder.layers.0.mlp.experts.weight1"].Shape(), "[h, 2 experts · 2·ffn/TP]")
	require.Equal(t, []int{2 * 128 / 2, 64}, model["decoder.layers.0.mlp.experts.weight2"].Shape(), "[2 experts · ffn/TP, h]")
	require.NotContains(t, model, "decoder.layers.0.mlp.experts.local_experts.0.linear_fc1.weight")
	require.NoError(t, sf.Close())
	var seq []string
	for _, a := range layout {
		if a != "--moe-grouped-gemm" {
			seq = append(seq, a)
		}
	}
	args := func(l []string, extra ...string) []string {
		return append(append(append(append([]string{}, launcher...), resumeArgs(dir)...), l...), extra...)
	}
	out, err := exec.Command(golaunchBin, args(seq, "--load", filepath.Join(dir, "b"))...).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "was saved with moe_grouped_gemm true, this run has --moe-grouped-gemm false")
	exact := iterationLosses(runGolaunch(t, args(layout, "--load", filepath.Join(dir, "b"), "--train-iters", "9", "--override-opt_param-scheduler")...))
	repacked := iterationLosses(runGolaunch(t, args(seq, "--load", filepath.Join(dir, "b"), "--no-load-optim", "--train-iters", "9")...))
	require.Contains(t, exact, "9")
	a, b := parseLossNorm(exact["9"]), parseLossNorm(repacked["9"])
	require.InEpsilon(t, a[0], b[0], 1e-5, "iteration 9 loss, GroupedMLP checkpoint in a SequentialMLP run")
}

// requireSameExpertShards compares the model tensors of every shard of two expert-parallel
// checkpoints (iteration it, EP 2), which hold each expert-parallel rank's experts in
// mp_rank_XX[_YYY]_EEE folders.
func requireSameExpertShards(t *testing.T, a, b string, it int) {
	t.Helper()
	n := 0
	for e := 0; e < 2; e++ {
		la := megatron.Location{Root: a, Iteration: it, ExpertRank: e, ExpertSize: 2}
		lb := la
		lb.Root = b
		tp, pp, err := megatron.Shards(la)
		require.NoError(t, err)
		for r := 0; r < tp*pp; r++ {
			fa, err := megatron.LoadShard(la, r%tp, r/tp, pp)
			require.NoError(t, err)
			fb, err := megatron.LoadShard(lb, r%tp, r/tp, pp)
			require.NoError(t, err)
			ta, _, err := fa.Model()
			require.NoError(t, err)
			tb, _, err := fb.Model()
			require.NoError(t, err)
			if _, grouped := ta["decoder.layers.1.mlp.experts.weight1"]; !grouped {
				require.Contains(t, ta, "decoder.layers.1.mlp.experts.local_experts.1.linear_fc1.weight")
				require.NotContains(t, ta, "decoder.layers.1.mlp.experts.local_experts.2.linear_fc1.weight", "2 of the 4 experts per rank")
			}
			for k, v := range ta {
				require.Equal(t, v.ToF32(), tb[k].ToF32(), "%s shard %d/%d", k, r, e)
				n++
			}
			fa.Close()
			fb.Close()
		}
	}
	require.Positive(t, n)
}

// TestSignalSavesCheckpoint: with --exit-signal-handler, SIGTERM to golaunch reaches every
// worker, which save a checkpoint together before exiting.
func TestSignalSavesCheckpoint(t *testing.T) {
	dir := t.TempDir()
	args := append([]string{"--standalone", "--nproc-per-node", "2"}, resumeArgs(dir)...)
	args = append(args, "--train-iters", "100000", "--lr-decay-iters", "100000", "--exit-signal-handler",
		"--save", filepath.Join(dir, "ck"), "--tensor-model-parallel-size", "2")
	cmd := exec.Command(golaunchBin, args...)
	cmd.Env = append(os.Environ(), "GOLAUNCH_GRACE_PERIOD=30")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "iteration        3/") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	_ = cmd.Wait()
	require.Contains(t, out.String(), "exiting program after receiving SIGTERM", out.String())
	it, _, err := megatron.ReadTracker(filepath.Join(dir, "ck"))
	require.NoError(t, err, out.String())
	require.GreaterOrEqual(t, it, 3)
}

// TestLoadAtAnotherLayout: a checkpoint saved at TP2·PP2, or at PP2 with two virtual
// stages, loads into one process through resharding (weights only: the optimizer state is
// refused with a message naming the way out), and the resharded weights give the same loss
// as the saved run's next iteration.
func TestLoadAtAnotherLayout(t *testing.T) {
	for name, layout := range map[string][]string{
		"tp2pp2": {"--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"},
		"pp2vp2": {"--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ck := filepath.Join(dir, "ck")
			base := append([]string{"--standalone"}, resumeArgs(dir)...)
			// hidden dropout off, so iteration 5's loss depends only on the weights and the data.
			noDrop := func(args []string) []string {
				for i := range args {
					if args[i] == "--hidden-dropout" {
						args[i+1] = "0"
					}
				}
				return args
			}
			straight := iterationLosses(runGolaunch(t, noDrop(append(append(append([]string{"--nproc-per-node", "4"}, base...), layout...),
				"--save", ck, "--save-interval", "4", "--exit-interval", "5"))...))
			it4 := filepath.Join(ck, "iter_0000004") // the run also saved at its exit (iteration 5)
			cmd := exec.Command(golaunchBin, noDrop(append(append([]string{}, base...), "--load", it4))...)
			out, err := cmd.CombinedOutput()
			require.Error(t, err)
			require.Contains(t, string(out), "cannot follow a resharding; pass --no-load-optim")
			// Weights only, as --finetune would, but keeping the iteration count: compare the
			// forward loss of iteration 5 (the first after loading) with the saved run's.
			resharded := iterationLosses(runGolaunch(t, noDrop(append(append([]string{}, base...), "--load", it4, "--no-load-optim"))...))
			require.Contains(t, resharded, "5")
			a, b := parseLossNorm(straight["5"]), parseLossNorm(resharded["5"])
			require.InEpsilon(t, a[0], b[0], 1e-5, "iteration 5 loss after resharding %s → TP1·PP1", name)
		})
	}
}

// TestMegatronFlagsAccepted: flags Megatron command lines carry for its own kernels and
// runtime are accepted and change nothing (the same losses), and --use-rotary-position-
// embeddings selects RoPE as Megatron's older spelling does.
func TestMegatronFlagsAccepted(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{"--standalone"}, resumeArgs(dir)...), "--train-iters", "3", "--hidden-dropout", "0")
	plain := iterationLosses(runGolaunch(t, base...))
	require.Len(t, plain, 3)
	extra := strings.Fields("--use-mcore-models --attention-softmax-in-fp32 --accumulate-allreduce-grads-in-fp32 " +
		"--no-masked-softmax-fusion --no-bias-swiglu-fusion --no-bias-gelu-fusion --no-bias-dropout-fusion --no-rope-fusion " +
		"--no-gradient-accumulation-fusion --overlap-param-gather --manual-gc --distributed-timeout-minutes 5 " +
		"--apply-query-key-layer-scaling --fp32-residual-connection --timing-log-level 2 --empty-unused-memory-level 1 " +
		"--no-async-tensor-model-parallel-allreduce --use-cpu-initialization --deterministic-mode --num-dataset-builder-threads 4 " +
		"--no-mmap-bin-files --mmap-warmup --delay-grad-reduce --align-grad-reduce --override-opt_param-scheduler " +
		"--expert-model-parallel-size 1 --moe-shared-expert-overlap --moe-token-dispatcher-type alltoall --moe-router-score-function softmax " +
		"--moe-router-dtype fp32 --moe-permute-fusion --moe-token-drop-policy probs --moe-layer-freq ([1]*4) --onnx-safe True --wandb-exp-name x --wandb-save-dir " + dir)
	require.Equal(t, plain, iterationLosses(runGolaunch(t, append(base, extra...)...)))
	// Megatron's encoder spellings of --num-layers and --seq-length.
	var enc []string
	for _, a := range base {
		switch a {
		case "--num-layers", "--seq-length":
			a = "--encoder-" + a[2:]
		}
		enc = append(enc, a)
	}
	require.Equal(t, plain, iterationLosses(runGolaunch(t, enc...)))
	// RoPE by the older flag, over a learned-absolute default: the losses of explicit rope.
	var noRope []string
	for i := 0; i < len(base); i++ {
		if base[i] == "--position-embedding-type" {
			i++
			continue
		}
		noRope = append(noRope, base[i])
	}
	require.Equal(t, plain, iterationLosses(runGolaunch(t, append(noRope, "--use-rotary-position-embeddings")...)))
}

// TestLoadChoices: Megatron's choices when --load holds no checkpoint (an absent or empty
// folder: a warning and random weights, or an error with --exit-on-missing-checkpoint), a
// Hugging Face folder (an error: convert it first), and --ckpt-step (that iteration, not the
// tracker's).
func TestLoadChoices(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{"--standalone"}, resumeArgs(dir)...), "--hidden-dropout", "0")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.MkdirAll(empty, 0o755))
	out := runGolaunch(t, append(base, "--load", empty, "--save", empty, "--save-interval", "4")...)
	require.Contains(t, out, "WARNING: could not find the metadata file "+empty+"/latest_checkpointed_iteration.txt")
	require.Contains(t, out, "will not load any checkpoints and will start from random")
	require.Contains(t, out, "iteration        8/       8")

	for _, c := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--load", filepath.Join(dir, "absent"), "--exit-on-missing-checkpoint"}, "'--exit-on-missing-checkpoint' set ... exiting."},
		{[]string{"--load", "../../testdata/hf/llama-gqa"}, "is a Hugging Face model folder"},
		{[]string{"--load", empty, "--ckpt-step", "5"}, "--ckpt-step 5:"},
	} {
		cmd := exec.Command(golaunchBin, append(base, c.extra...)...)
		b, err := cmd.CombinedOutput()
		require.Error(t, err, "%v", c.extra)
		require.Contains(t, string(b), c.want)
	}

	// The folder now holds iterations 4 and 8; --ckpt-step 4 resumes from 4 and gives the
	// straight run's iterations 5–8.
	resumed := runGolaunch(t, append(base, "--load", empty, "--ckpt-step", "4")...)
	require.Contains(t, resumed, "successfully loaded checkpoint from "+empty+" [ t 1, p 1 ] at iteration 4")
	straight, again := iterationLosses(out), iterationLosses(resumed)
	require.Len(t, again, 4)
	for _, it := range []string{"5", "6", "7", "8"} {
		require.Equal(t, straight[it], again[it], "iteration %s", it)
	}
}

var paramsNormField = regexp.MustCompile(`iteration +(\d+)/.*\| grad norm: [\d.]+ \| params norm: ([\d.]+) \|`)

// TestLogParamsNorm: --log-params-norm prints Megatron's " params norm: %.3f |" after the
// grad norm: the L2 norm of the model's parameters, the same for one process, TP=2 and PP=2
// (replicated parameters counted once), and equal to the norm of the checkpoint's tensors.
func TestLogParamsNorm(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{}, resumeArgs(dir)...), "--hidden-dropout", "0", "--train-iters", "3", "--log-params-norm")
	norms := func(out string) map[string]float64 {
		m := map[string]float64{}
		for _, s := range paramsNormField.FindAllStringSubmatch(out, -1) {
			v, err := strconv.ParseFloat(s[2], 64)
			require.NoError(t, err)
			m[s[1]] = v
		}
		return m
	}
	ck := filepath.Join(dir, "ck")
	single := norms(runGolaunch(t, append([]string{"--standalone"}, append(base, "--save", ck)...)...))
	require.Len(t, single, 3)
	for _, layout := range [][]string{{"--tensor-model-parallel-size", "2"}, {"--pipeline-model-parallel-size", "2"}} {
		got := norms(runGolaunch(t, append([]string{"--standalone", "--nproc-per-node", "2"}, append(base, layout...)...)...))
		require.Len(t, got, 3, "%v", layout)
		for it, v := range single {
			require.InDelta(t, v, got[it], 0.0015, "iteration %s, %v", it, layout)
		}
	}
	loc, err := megatron.Resolve(ck)
	require.NoError(t, err)
	sf, err := megatron.LoadShard(loc, 0, 0, 1)
	require.NoError(t, err)
	defer sf.Close()
	tensors, _, err := sf.ModelChunk(0)
	require.NoError(t, err)
	var ss float64
	for name, x := range tensors {
		if strings.HasSuffix(name, "_extra_state") {
			continue
		}
		for _, v := range x.ToF32() { // bf16 as the run holds them
			ss += float64(v) * float64(v)
		}
	}
	require.InDelta(t, math.Sqrt(ss), single["3"], 0.0006, "the checkpoint's weights after iteration 3")
}

// TestUseCheckpointArgs: with --use-checkpoint-args the model's shape and TP come from the
// checkpoint's args (Megatron's "Setting … from checkpoint" lines): a run given no model
// flags resumes a TP=2 checkpoint into the iterations of the uninterrupted run.
func TestUseCheckpointArgs(t *testing.T) {
	dir := t.TempDir()
	full := append(append([]string{"--standalone", "--nproc-per-node", "2"}, resumeArgs(dir)...), "--hidden-dropout", "0", "--tensor-model-parallel-size", "2")
	straight := iterationLosses(runGolaunch(t, full...))
	ck := filepath.Join(dir, "ck")
	runGolaunch(t, append(full, "--save", ck, "--exit-interval", "4")...)
	bare := strings.Fields("--standalone --nproc-per-node 2 pretrain --micro-batch-size 2 --global-batch-size 8 --train-iters 8 --lr 3e-3 " +
		"--lr-warmup-iters 2 --vocab-size 256 --log-interval 1 --attention-dropout 0 --hidden-dropout 0 --mock-data --bf16 --eval-iters 0 " +
		"--data-cache-path " + dir + " --use-checkpoint-args --load " + ck)
	out := runGolaunch(t, bare...)
	for _, line := range []string{"Setting num_layers to 4 from checkpoint", "Setting swiglu to true from checkpoint",
		"Setting tensor_model_parallel_size to 2 from checkpoint", "Setting normalization to RMSNorm from checkpoint"} {
		require.Contains(t, out, line)
	}
	resumed := iterationLosses(out)
	require.Len(t, resumed, 4)
	for it, v := range resumed {
		require.Equal(t, straight[it], v, "iteration %s", it)
	}
	cmd := exec.Command(golaunchBin, append(bare[:len(bare)-2], "--load", filepath.Join(dir, "none-here"))...)
	b, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(b), "--use-checkpoint-args: ")
}

var numZerosField = regexp.MustCompile(`iteration +(\d+)/.* num zeros: ([0-9.]+) \| params norm`)

// TestLogNumZerosInGrad: --log-num-zeros-in-grad prints Megatron's " num zeros: %.1f |"
// between the grad norm and the params norm, the same count for one process, TP=2 and DP=2
// with the distributed optimizer (the model's zero gradients, not a shard's), at least the
// word-embedding rows no input token used.
func TestLogNumZerosInGrad(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{}, resumeArgs(dir)...), "--hidden-dropout", "0", "--train-iters", "3",
		"--vocab-size", "1024", "--untie-embeddings-and-output-weights", "--log-num-zeros-in-grad", "--log-params-norm")
	counts := func(out string) map[string]float64 {
		m := map[string]float64{}
		for _, s := range numZerosField.FindAllStringSubmatch(out, -1) {
			v, err := strconv.ParseFloat(s[2], 64)
			require.NoError(t, err)
			m[s[1]] = v
		}
		return m
	}
	single := counts(runGolaunch(t, append([]string{"--standalone"}, base...)...))
	require.Len(t, single, 3)
	for _, v := range single { // ≥ (1024 − the 8 × 32 input tokens) unused embedding rows × 64
		require.GreaterOrEqual(t, v, float64((1024-256)*64))
	}
	for _, layout := range [][]string{{"--tensor-model-parallel-size", "2"}, {"--use-distributed-optimizer"}} {
		got := counts(runGolaunch(t, append([]string{"--standalone", "--nproc-per-node", "2"}, append(base, layout...)...)...))
		require.Equal(t, single, got, "%v", layout)
	}
}

var lrField = regexp.MustCompile(`iteration +(\d+)/.* learning rate: (\S+) \|`)

// TestUseCheckpointOptParamScheduler: resumed with other learning-rate flags,
// --use-checkpoint-opt_param-scheduler trains on the checkpoint's schedule (the
// uninterrupted run's rates and losses, Megatron's "using checkpoint value" lines);
// without it the flags must agree with the checkpoint, unless
// --override-opt_param-scheduler makes the flags' schedule apply.
func TestUseCheckpointOptParamScheduler(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{"--standalone"}, resumeArgs(dir)...), "--hidden-dropout", "0")
	rates := func(out string) map[string]string {
		m := map[string]string{}
		for _, s := range lrField.FindAllStringSubmatch(out, -1) {
			m[s[1]] = s[2]
		}
		return m
	}
	straight := runGolaunch(t, append(base, "--save", filepath.Join(dir, "a"))...)
	runGolaunch(t, append(base, "--save", filepath.Join(dir, "b"), "--exit-interval", "4")...)
	other := []string{"--load", filepath.Join(dir, "b"), "--lr", "1e-3", "--min-lr", "1e-4", "--lr-warmup-iters", "0", "--lr-decay-style", "cosine"}
	resumed := runGolaunch(t, append(append(base, other...), "--use-checkpoint-opt_param-scheduler")...)
	require.Contains(t, resumed, " > using checkpoint value 0.003 for learning rate")
	require.Contains(t, resumed, " > using checkpoint value linear for learning rate decay style")
	want, got := rates(straight), rates(resumed)
	losses := iterationLosses(straight)
	for it := 5; it <= 8; it++ {
		k := strconv.Itoa(it)
		require.Equal(t, want[k], got[k], "iteration %d learning rate", it)
		require.Equal(t, losses[k], iterationLosses(resumed)[k], "iteration %d", it)
	}
	// Without either flag the flags must agree with the checkpoint (Megatron's assertion);
	// --override-opt_param-scheduler trains on the flags' schedule.
	out, err := exec.Command(golaunchBin, append(base, other...)...).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "OptimizerParamScheduler: class input value 0.001 and checkpointvalue 0.003 for learning rate do not match")
	overridden := runGolaunch(t, append(append(base, other...), "--override-opt_param-scheduler")...)
	require.Contains(t, overridden, " > overriding learning rate value to 0.001")
	flags := rates(overridden)
	require.NotEqual(t, want["5"], flags["5"], "with --override-opt_param-scheduler the flags' schedule applies")
	require.Equal(t, rates(runGolaunch(t, append(base, other[2:]...)...))["5"], flags["5"],
		"overridden: iteration 5 has the rate a run on the flags' schedule has there")
	// With --no-load-optim Megatron loads no scheduler: the schedule starts again.
	fresh := rates(runGolaunch(t, append(base, "--load", filepath.Join(dir, "b"), "--no-load-optim")...))
	require.Equal(t, want["1"], fresh["5"], "iteration 5 after --no-load-optim has the first iteration's rate")
}

var batchField = regexp.MustCompile(`iteration +(\d+)/ +(\d+) \| consumed samples: +(\d+) \|.* global batch size: +(\d+) \|`)

// TestRampupBatchSize: --rampup-batch-size 4 4 32 with --global-batch-size 16 grows the
// logged global batch size by 4 every 32/3 samples, as Megatron's ramp-up does (6 ramp-up
// iterations to 40 samples, then (120 − 40)/16 more: Megatron's update_train_iters), and
// a run stopped inside the ramp-up resumes into the uninterrupted run's losses.
func TestRampupBatchSize(t *testing.T) {
	dir := t.TempDir()
	base := append([]string{"--standalone", "--nproc-per-node", "2"}, strings.Fields("pretrain --num-layers 2 --hidden-size 64 "+
		"--num-attention-heads 4 --ffn-hidden-size 128 --seq-length 32 --micro-batch-size 2 --global-batch-size 16 "+
		"--train-samples 120 --rampup-batch-size 4 4 32 --lr 3e-3 --lr-warmup-samples 16 --vocab-size 256 --log-interval 1 "+
		"--swiglu --normalization RMSNorm --position-embedding-type rope --attention-dropout 0 --hidden-dropout 0 "+
		"--mock-data --eval-iters 0 --data-cache-path "+dir)...)
	straight := runGolaunch(t, append(base, "--save", filepath.Join(dir, "a"))...)
	var sizes, consumed []string
	for _, m := range batchField.FindAllStringSubmatch(straight, -1) {
		require.Equal(t, "11", m[2])
		sizes, consumed = append(sizes, m[4]), append(consumed, m[3])
	}
	require.Equal(t, []string{"4", "4", "4", "8", "8", "12", "16", "16", "16", "16", "16"}, sizes)
	require.Equal(t, []string{"4", "8", "12", "20", "28", "40", "56", "72", "88", "104", "120"}, consumed)
	runGolaunch(t, append(base, "--save", filepath.Join(dir, "b"), "--exit-interval", "3")...)
	resumed := iterationLosses(runGolaunch(t, append(base, "--load", filepath.Join(dir, "b"))...))
	want := iterationLosses(straight)
	require.Len(t, resumed, 8)
	for it, l := range resumed {
		require.Equal(t, want[it], l, "iteration %s", it)
	}
}

// TestWeightDecayIncrStyle: a weight decay rising linearly from 0 to 0 trains as
// --weight-decay 0; rising from 0 to 5 it is 0 for the first update (Megatron's get_wd at
// step 0), so the first two iterations' losses are the same and the third's differs.
func TestWeightDecayIncrStyle(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{"--standalone"}, resumeArgs(dir)...), "--hidden-dropout", "0")
	none := iterationLosses(runGolaunch(t, append(base, "--weight-decay", "0")...))
	flat := iterationLosses(runGolaunch(t, append(base, "--weight-decay-incr-style", "linear", "--start-weight-decay", "0", "--end-weight-decay", "0")...))
	require.Equal(t, none, flat)
	rising := iterationLosses(runGolaunch(t, append(base, "--weight-decay-incr-style", "linear", "--start-weight-decay", "0", "--end-weight-decay", "5")...))
	require.Equal(t, none["1"], rising["1"])
	require.Equal(t, none["2"], rising["2"], "the first update has weight decay 0")
	require.NotEqual(t, none["3"], rising["3"], "the second has 5·GBS/(iterations·GBS)")
}

var progressLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\tJob ID: \tGPUs: 1\t(.*)$`)

// TestLogProgress: --log-progress appends Megatron's progress.txt lines to --save: a job
// start, then per checkpoint the iteration, job and cumulative throughput, the
// floating-point operations so far (carried in the checkpoint across the resume) and the
// tokens; the resumed job adds its own start.
func TestLogProgress(t *testing.T) {
	dir := t.TempDir()
	save := filepath.Join(dir, "ck")
	base := append(append([]string{"--standalone"}, resumeArgs(dir)...), "--log-progress", "--save", save, "--save-interval", "4")
	runGolaunch(t, base...)
	runGolaunch(t, append(base, "--load", save, "--train-iters", "12", "--override-opt_param-scheduler")...)
	b, err := os.ReadFile(filepath.Join(save, "progress.txt"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 5, "%s", b)
	var entries []string
	for _, l := range lines {
		m := progressLine.FindStringSubmatch(strings.Replace(l, "# GPUs", "GPUs", 1))
		require.NotNil(t, m, "%q", l)
		entries = append(entries, m[1])
	}
	require.Equal(t, "Starting job", entries[0])
	require.Equal(t, "Starting job", entries[3])
	saved := regexp.MustCompile(`^Saved checkpoint\tIteration: (\d+)\tJob throughput: [\d.]+ TFLOP/s/GPU\tCumulative throughput: [\d.]+ TFLOP/s/GPU\tFloating-point operations: (\S+)\tTokens \(in billions\): (\S+)$`)
	var flops []float64
	for i, want := range map[int]string{1: "4", 2: "8", 4: "12"} {
		m := saved.FindStringSubmatch(entries[i])
		require.NotNil(t, m, "%q", entries[i])
		require.Equal(t, want, m[1])
		f, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err)
		flops = append(flops, f)
		require.Equal(t, "0.00", m[3], "8 samples of 32 tokens per iteration")
	}
	require.Len(t, flops, 3)
	sort.Float64s(flops)
	require.InEpsilon(t, 2*flops[0], flops[1], 0.01, "iteration 8's operations are twice iteration 4's")
	require.InEpsilon(t, 3*flops[0], flops[2], 0.01, "and the resumed job goes on from the checkpoint's")
}

// TestLoadIsStrict: as Megatron's strict load_state_dict, a checkpoint holding parameters
// the flags' model lacks (biases, loaded with --disable-bias-linear) is refused by name.
func TestLoadIsStrict(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{"--standalone"}, resumeArgs(dir)...), "--train-iters", "3")
	runGolaunch(t, append(base, "--save", filepath.Join(dir, "ck"))...)
	out, err := exec.Command(golaunchBin, append(base, "--load", filepath.Join(dir, "ck"), "--disable-bias-linear", "--no-load-optim")...).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "unexpected key(s) in model chunk 0: decoder.layers.0.mlp.linear_fc1.bias")
	require.Contains(t, string(out), "which the model built from the flags lacks")
}

// TestApplyLayernorm1p: --apply-layernorm-1p trains the same at TP 2 with sequence
// parallelism as on one process, is saved in the args and resumes exactly.
func TestApplyLayernorm1p(t *testing.T) {
	dir := t.TempDir()
	base := append(append([]string{"--standalone"}, resumeArgs(dir)...), "--normalization", "LayerNorm", "--apply-layernorm-1p", "--hidden-dropout", "0")
	single := iterationLosses(runGolaunch(t, base...))
	tp := append([]string{"--nproc-per-node", "2"}, append(base[1:], "--tensor-model-parallel-size", "2", "--sequence-parallel")...)
	tp = append([]string{"--standalone"}, tp...)
	got := iterationLosses(runGolaunch(t, tp...))
	require.Len(t, got, 8)
	for it, want := range single {
		w, g := parseLossNorm(want), parseLossNorm(got[it])
		require.InEpsilon(t, w[0], g[0], 1e-5, "iteration %s", it)
	}
	runGolaunch(t, append(tp, "--save", filepath.Join(dir, "b"), "--exit-interval", "4")...)
	resumed := iterationLosses(runGolaunch(t, append(tp, "--load", filepath.Join(dir, "b"))...))
	for it := 5; it <= 8; it++ {
		k := strconv.Itoa(it)
		require.Equal(t, got[k], resumed[k], "iteration %d", it)
	}
	ck, err := megatron.Open(filepath.Join(dir, "b"))
	require.NoError(t, err)
	defer ck.Close()
	require.True(t, ck.Config.ApplyLayernorm1p, "apply_layernorm_1p in the args")
}

// TestUseCheckpointArgsFalconPai: a Falcon-shaped checkpoint trained with Pai's
// FalconTokenizer (vocabulary the tokenizer's 1768 + --extra-vocab-size 24) resumes with
// --use-checkpoint-args alone: its parallel attention comes from the args it records, and a
// run without the --extra-vocab-size is told which one fits.
func TestUseCheckpointArgsFalconPai(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "falcon-hf")
	require.NoError(t, os.MkdirAll(tok, 0o755))
	data, err := os.ReadFile("../../data/tokenizer/testdata/pretok/falcon.tokenizer.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(tok, "tokenizer.json"), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tok, "tokenizer_config.json"), []byte(`{"eos_token": "<|endoftext|>"}`), 0o644))
	corpus := writeCorpus(t, dir)
	ck := filepath.Join(dir, "ck")
	common := strings.Fields("--standalone --nproc-per-node 1 pretrain --seq-length 32 --micro-batch-size 2 --global-batch-size 2 --lr 1e-3 " +
		"--bf16 --eval-iters 0 --log-interval 1 --patch-tokenizer-type FalconTokenizer --tokenizer-model " + tok +
		" --data-path " + corpus + " --data-cache-path " + dir)
	runGolaunch(t, append(common, strings.Fields("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --group-query-attention "+
		"--num-query-groups 1 --parallel-attention --position-embedding-type rope --disable-bias-linear --max-position-embeddings 32 "+
		"--train-iters 2 --extra-vocab-size 24 --save "+ck)...)...)

	resume := append(common, "--use-checkpoint-args", "--load", ck, "--train-iters", "4", "--override-opt_param-scheduler")
	b, err := exec.Command(golaunchBin, resume...).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(b), "has shape [1792 64], the model (from the flags) wants [1768 64] (Pai's tokenizer types size the vocabulary as the tokenizer's plus --extra-vocab-size: the checkpoint's rows need --extra-vocab-size 24)")
	out := runGolaunch(t, append(resume, "--extra-vocab-size", "24")...)
	require.Contains(t, out, "Setting parallel_attention to true from checkpoint")
	require.Contains(t, out, "iteration        4/       4")
}

// TestUseCheckpointArgsMoE: an MoE checkpoint with head norms, pre-softmax routing, gated
// shared experts, QKV biases and Qwen's RoPE base and norm epsilon resumes with
// --use-checkpoint-args alone: these come from its args, which Megatron 240126's own list
// leaves out.
func TestUseCheckpointArgsMoE(t *testing.T) {
	resumeFromArgs(t, "--expert-model-parallel-size 2", "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --group-query-attention "+
		"--num-query-groups 2 --kv-channels 16 --qk-layernorm --swiglu --normalization RMSNorm --position-embedding-type rope "+
		"--disable-bias-linear --max-position-embeddings 32 --num-experts 4 --moe-router-topk 2 --moe-router-pre-softmax "+
		"--moe-shared-expert-intermediate-size 32 --moe-shared-expert-gate --add-qkv-bias --rotary-base 1000000 --norm-epsilon 1e-6 "+
		"--moe-layer-freq ([0]+[1]) --moe-ffn-hidden-size 64",
		"Setting num_experts to 4 from checkpoint", "Setting moe_router_topk to 2 from checkpoint",
		"Setting qk_layernorm to true from checkpoint", "Setting moe_router_pre_softmax to true from checkpoint",
		"Setting moe_shared_expert_intermediate_size to 32 from checkpoint", "Setting moe_shared_expert_gate to true from checkpoint",
		"Setting add_bias_linear to false from checkpoint", "Setting add_qkv_bias to true from checkpoint",
		"Setting rotary_base to 1000000.0 from checkpoint", "Setting norm_epsilon to 1e-06 from checkpoint",
		"Setting moe_layer_freq to [0, 1] from checkpoint", "Setting moe_ffn_hidden_size to 64 from checkpoint")
}

// resumeFromArgs trains the model flags for 2 iterations with 2 processes in layout, saves,
// and requires a resume to 4 iterations with --use-checkpoint-args and no model flags to
// print every want line.
func resumeFromArgs(t *testing.T, layout, model string, want ...string) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	common := strings.Fields("--standalone --nproc-per-node 2 pretrain --seq-length 32 --micro-batch-size 2 --global-batch-size 4 " +
		"--lr 1e-3 --vocab-size 256 --mock-data --bf16 --eval-iters 0 --log-interval 1 " + layout + " --data-cache-path " + dir)
	runGolaunch(t, append(common, strings.Fields(model+" --train-iters 2 --save "+ck)...)...)
	out := runGolaunch(t, append(common, "--use-checkpoint-args", "--load", ck, "--train-iters", "4", "--override-opt_param-scheduler")...)
	for _, line := range append(want, "iteration        4/       4") {
		require.Contains(t, out, line)
	}
}

// TestUseCheckpointArgsMLA: a DeepSeek-V2-shaped run (multi-latent attention with a query
// latent and YaRN, Megatron's MLA flags) at TP 2 with sequence parallelism saves args that
// rebuild it alone.
func TestUseCheckpointArgsMLA(t *testing.T) {
	resumeFromArgs(t, "--tensor-model-parallel-size 2 --sequence-parallel", "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --multi-latent-attention "+
		"--q-lora-rank 32 --kv-lora-rank 24 --qk-head-dim 16 --qk-pos-emb-head-dim 8 --v-head-dim 16 --qk-layernorm "+
		"--rotary-scaling-factor 40 --mscale 0.707 --mscale-all-dim 0.707 --swiglu --normalization RMSNorm "+
		"--position-embedding-type rope --disable-bias-linear --max-position-embeddings 32 --norm-epsilon 1e-6",
		"Setting multi_latent_attention to true from checkpoint", "Setting q_lora_rank to 32 from checkpoint",
		"Setting kv_lora_rank to 24 from checkpoint", "Setting qk_head_dim to 16 from checkpoint", "Setting qk_pos_emb_head_dim to 8 from checkpoint",
		"Setting v_head_dim to 16 from checkpoint", "Setting rotary_scaling_factor to 40.0 from checkpoint", "Setting mscale to 0.707 from checkpoint",
		"Setting mscale_all_dim to 0.707 from checkpoint", "Setting yarn_original_max_position_embeddings to 4096 from checkpoint")
}

// TestDecoupledLR: --decoupled-lr gives the word embeddings and the output layer their own
// learning rate (checked against Megatron in ckpt/megatron's TestMatchesMegatronSteps);
// equal to --lr it changes nothing, another value changes the run once the lr is not 0.
func TestDecoupledLR(t *testing.T) {
	dir := t.TempDir()
	base := append(resumeArgs(dir), "--train-iters", "3", "--hidden-dropout", "0")
	plain := iterationLosses(runGolaunch(t, base...))
	same := iterationLosses(runGolaunch(t, append(base, "--decoupled-lr", "3e-3", "--decoupled-min-lr", "0")...))
	other := iterationLosses(runGolaunch(t, append(base, "--decoupled-lr", "3e-2")...))
	require.Len(t, plain, 3)
	require.Equal(t, plain, same)
	// The warmup starts at lr 0: iteration 1's update is none, iteration 3 shows the first.
	require.Equal(t, plain["2"], other["2"])
	require.NotEqual(t, plain["3"], other["3"])
}
