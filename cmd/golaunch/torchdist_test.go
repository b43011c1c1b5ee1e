package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/tensor"
	"github.com/stretchr/testify/require"
)

// torchDistFixture is a checkpoint Megatron-LM wrote in both formats from one model
// (ckpt/megatron/testdata/torch_dist/README.md): name "dense" (TP 2 × PP 2) or "moe".
func torchDistFixture(name, format string) string {
	return filepath.Join("..", "..", "ckpt", "megatron", "testdata", "torch_dist", name, format)
}

// TestPretrainFromTorchDist: a torch_dist checkpoint (Megatron-Core's default format)
// resumes at another layout with --no-load-optim, from its iteration, with the losses
// its torch-format twin gives; without --no-load-optim the run says that it has no
// optimizer state; --use-checkpoint-args reads the args from its common state.
func TestPretrainFromTorchDist(t *testing.T) {
	dir := t.TempDir()
	flags := strings.Fields("--standalone --nproc-per-node 2 pretrain --num-layers 4 --hidden-size 32 --ffn-hidden-size 48 " +
		"--num-attention-heads 4 --group-query-attention --num-query-groups 2 --normalization RMSNorm --swiglu " +
		"--disable-bias-linear --position-embedding-type rope --untie-embeddings-and-output-weights --seq-length 64 " +
		"--max-position-embeddings 64 --micro-batch-size 2 --global-batch-size 4 --vocab-size 120 --mock-data --bf16 " +
		"--train-iters 9 --lr 1e-4 --log-interval 1 --eval-iters 0 --attention-dropout 0 --hidden-dropout 0 " +
		"--tensor-model-parallel-size 2 --data-cache-path " + dir)
	losses := map[string]map[string]string{}
	for _, format := range []string{"torch", "torch_dist"} {
		out := runGolaunch(t, append(flags, "--load", torchDistFixture("dense", format), "--no-load-optim")...)
		require.Contains(t, out, "iteration        9/       9", format)
		losses[format] = iterationLosses(out)
	}
	require.Len(t, losses["torch_dist"], 2) // iterations 8 and 9
	require.Equal(t, losses["torch"], losses["torch_dist"])

	cmd := exec.Command(golaunchBin, append(flags, "--load", torchDistFixture("dense", "torch_dist"))...)
	b, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(b), "has no optimizer state (saved with --no-save-optim?); pass --no-load-optim")

	bare := strings.Fields("--standalone --nproc-per-node 4 pretrain --micro-batch-size 2 --global-batch-size 4 --mock-data --bf16 " +
		"--train-iters 8 --lr 1e-4 --log-interval 1 --eval-iters 0 --attention-dropout 0 --hidden-dropout 0 --vocab-size 120 " +
		"--no-load-optim --use-checkpoint-args --data-cache-path " + dir + " --load " + torchDistFixture("dense", "torch_dist"))
	out := runGolaunch(t, bare...)
	for _, line := range []string{"Setting num_layers to 4 from checkpoint", "Setting tensor_model_parallel_size to 2 from checkpoint",
		"Setting pipeline_model_parallel_size to 2 from checkpoint", "iteration        8/       8"} {
		require.Contains(t, out, line)
	}
}

// TestResumeMegatronOptimizerState: the dense-optim fixture is one Megatron-LM model after
// two steps of its distributed optimizer (TP 2 × PP 2 × DP 2, bf16), saved in torch_dist
// and in the torch format (distrib_optim.pt). Resuming from either, with the optimizer
// state, gives the same losses: both readers restore the same Adam moments, fp32 main
// parameters, step and schedule. The state as loaded is then saved, and equals Megatron's
// (the fixture's references) at another layout too.
func TestResumeMegatronOptimizerState(t *testing.T) {
	type layout struct {
		procs int
		flags string
	}
	const do = " --use-distributed-optimizer"
	for _, fx := range []struct {
		name, model string            // model: flags beyond the dense fixture's
		saved       layout            // the fixture's own layout and optimizer
		others      map[string]layout // where its state is loaded and saved again in torch_dist
	}{
		{"dense-optim", "", layout{8, "--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2" + do}, map[string]layout{
			"saved":     {8, "--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2" + do},
			"tp1pp2dp2": {4, "--pipeline-model-parallel-size 2 --make-vocab-size-divisible-by 256" + do},
			"tp2dp2":    {4, "--tensor-model-parallel-size 2" + do},
			"single":    {1, "--make-vocab-size-divisible-by 256" + do},
		}},
		// The non-distributed optimizer (Float16OptimizerWithFloat16Params): its torch format
		// numbers the state over the param groups; the distributed one resumes it too.
		{"plain-optim", "", layout{8, "--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2"}, map[string]layout{
			"tp2dp2":       {4, "--tensor-model-parallel-size 2" + do},
			"tp2dp2-plain": {4, "--tensor-model-parallel-size 2"}, // saved in the model's shapes
		}},
		// Experts in a second optimizer (keys chained_1.…), dense parameters in chained_0.
		{"moe-optim", "--num-experts 4 --moe-router-topk 2", layout{8, "--pipeline-model-parallel-size 2 --expert-model-parallel-size 2" + do}, map[string]layout{
			"saved":  {8, "--pipeline-model-parallel-size 2 --expert-model-parallel-size 2" + do},
			"ep1dp2": {2, do},
			"ep4":    {4, "--expert-model-parallel-size 4" + do},
		}},
	} {
		t.Run(fx.name, func(t *testing.T) {
			dir := t.TempDir()
			// The fixture's model, and the schedule and Adam settings Megatron trained it with.
			run := func(t *testing.T, l layout, extra ...string) string {
				args := strings.Fields(fmt.Sprintf("--standalone --nproc-per-node %d pretrain %s %s --num-layers 4 --hidden-size 32 --ffn-hidden-size 48 "+
					"--num-attention-heads 4 --group-query-attention --num-query-groups 2 --normalization RMSNorm --swiglu "+
					"--disable-bias-linear --position-embedding-type rope --untie-embeddings-and-output-weights --seq-length 64 "+
					"--max-position-embeddings 64 --micro-batch-size 1 --global-batch-size 4 --vocab-size 120 --mock-data --bf16 "+
					"--lr 1e-4 --min-lr 1e-5 --lr-decay-style cosine --weight-decay 0.1 --adam-beta2 0.95 --clip-grad 0 "+
					"--use-checkpoint-opt_param-scheduler --log-interval 1 --eval-iters 0 --attention-dropout 0 --hidden-dropout 0 --data-cache-path %s",
					l.procs, l.flags, fx.model, dir))
				return runGolaunch(t, append(args, extra...)...)
			}
			losses := map[string]map[string]string{}
			for _, format := range []string{"torch", "torch_dist"} {
				out := run(t, fx.saved, "--train-iters", "9", "--load", torchDistFixture(fx.name, format))
				require.Contains(t, out, "successfully loaded checkpoint", format)
				losses[format] = iterationLosses(out)
			}
			require.Len(t, losses["torch_dist"], 2) // iterations 8 and 9
			require.Equal(t, losses["torch"], losses["torch_dist"])
			if fx.name == "dense-optim" {
				// The distributed optimizer at DP 1 is Megatron's too: distrib_optim.pt.
				one := layout{1, "--make-vocab-size-divisible-by 256" + do}
				save := filepath.Join(dir, "one-torch")
				run(t, one, "--train-iters", "7", "--save", save, "--load", torchDistFixture(fx.name, "torch_dist"))
				require.FileExists(t, filepath.Join(save, "iter_0000007", "mp_rank_00", "distrib_optim.pt"))
				a := iterationLosses(run(t, one, "--train-iters", "9", "--load", torchDistFixture(fx.name, "torch_dist")))
				require.Equal(t, a, iterationLosses(run(t, one, "--train-iters", "9", "--load", save)))

				// Adam's betas are the checkpoint's, whatever the flags say.
				out := run(t, fx.saved, "--train-iters", "9", "--adam-beta2", "0.999", "--load", torchDistFixture(fx.name, "torch_dist"))
				require.Contains(t, out, "> using checkpoint value (0.9, 0.95) for Adam betas (--adam-beta1 0.9 --adam-beta2 0.999)")
				require.Equal(t, losses["torch_dist"], iterationLosses(out))
			}

			// Loaded at other layouts and saved back in torch_dist (--train-iters 7: nothing
			// trained), the state is Megatron's, tensor for tensor.
			for name, l := range fx.others {
				t.Run(name, func(t *testing.T) {
					save := filepath.Join(dir, name)
					run(t, l, "--train-iters", "7", "--save", save, "--ckpt-format", "torch_dist", "--load", torchDistFixture(fx.name, "torch_dist"))
					got, err := megatron.Open(save)
					require.NoError(t, err)
					defer got.Close()
					// Megatron's two steps: the Adam step, and the scheduler's samples.
					o, _ := got.Common.Get("optimizer")
					if d, ok := o.(*torchpickle.Dict); ok {
						if first, ok := d.Get(int64(0)); ok {
							o = first
						}
					}
					inner, _ := o.(*torchpickle.Dict).Get("optimizer")
					groups, _ := inner.(*torchpickle.Dict).Get("param_groups")
					step, _ := groups.([]any)[0].(*torchpickle.Dict).Get("step")
					if strings.HasSuffix(name, "-plain") { // per parameter, and in torch_dist once
						st, _ := inner.(*torchpickle.Dict).Get("state")
						step, _ = st.(*torchpickle.Dict).Get("common_step")
						step = float64(step.(*tensor.Tensor).ToF32()[0])
					}
					require.Equal(t, 2.0, step)
					sched, _ := got.Common.Get("opt_param_scheduler")
					n, _ := sched.(*torchpickle.Dict).Get("num_steps")
					require.Equal(t, int64(8), n)
					for _, state := range megatron.OptimizerStates {
						want, err := megatron.Open(torchDistFixture(fx.name, state))
						require.NoError(t, err)
						for _, key := range want.Keys() {
							w, _, err := want.Full(key)
							require.NoError(t, err)
							g, _, err := got.OptimizerFull(state, key)
							require.NoError(t, err)
							require.Equal(t, w, g, "%s of %s", state, key)
						}
						want.Close()
					}
				})
			}
		})
	}
}

// TestResumeMegatronLossScaler: Megatron's fp16 run (fixture fp16-optim: TP 2 × DP 2, the
// distributed optimizer, a loss scale from 1024 doubling every step) resumes from either
// format with its scaler's state (scale 4096, its trackers): the same losses, and the
// scale going on from 4096.
func TestResumeMegatronLossScaler(t *testing.T) {
	dir := t.TempDir()
	losses := map[string]map[string]string{}
	for _, format := range []string{"torch", "torch_dist"} {
		args := strings.Fields("--standalone --nproc-per-node 4 pretrain --tensor-model-parallel-size 2 --use-distributed-optimizer " +
			"--num-layers 4 --hidden-size 32 --ffn-hidden-size 48 --num-attention-heads 4 --group-query-attention --num-query-groups 2 " +
			"--normalization RMSNorm --swiglu --disable-bias-linear --position-embedding-type rope --untie-embeddings-and-output-weights " +
			"--seq-length 64 --max-position-embeddings 64 --micro-batch-size 1 --global-batch-size 4 --vocab-size 120 --mock-data --fp16 " +
			"--initial-loss-scale 1024 --loss-scale-window 1 --lr 1e-4 --min-lr 1e-5 --lr-decay-style cosine --weight-decay 0.1 " +
			"--adam-beta2 0.95 --clip-grad 0 --use-checkpoint-opt_param-scheduler --log-interval 1 --eval-iters 0 --attention-dropout 0 " +
			"--hidden-dropout 0 --train-iters 9 --data-cache-path " + dir + " --load " + torchDistFixture("fp16-optim", format))
		out := runGolaunch(t, args...)
		losses[format] = iterationLosses(out)
		require.Contains(t, losses[format]["8"], "loss scale: 8192.0", format) // 4096, doubled after a good step
	}
	require.Equal(t, losses["torch"], losses["torch_dist"])
}

// TestSaveTorchDist: --ckpt-format torch_dist writes the same tensors as the torch format
// (dense at TP 2 × PP 2, also with virtual pipeline stages; MoE at TP 2 × EP 2 with
// sequence parallelism), every file of Megatron's layout and no leftovers, and the
// checkpoint resumes at another layout.
// The distributed optimizer's state of GroupedMLP experts is refused with a reason.
func TestSaveTorchDist(t *testing.T) {
	const moe = "--num-experts 4 --moe-router-topk 2 --moe-layer-freq ([0]+[1]*3) --disable-bias-linear "
	for name, tc := range map[string]struct{ layout, resume string }{
		"dense": {"--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2", "--tensor-model-parallel-size 2"},
		"virtual-pipeline": {"--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 1",
			"--pipeline-model-parallel-size 2"},
		"moe": {moe + "--tensor-model-parallel-size 2 --sequence-parallel --expert-model-parallel-size 2", moe + "--expert-model-parallel-size 2"},
	} {
		layout := tc.layout
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			args := append(strings.Fields("--standalone --nproc-per-node 4"), resumeArgs(dir)...)
			args = append(args, strings.Fields(layout+" --train-iters 3 --no-save-optim")...)
			saved := map[string]string{}
			for _, format := range []string{"torch", "torch_dist"} {
				saved[format] = filepath.Join(dir, format)
				runGolaunch(t, append(args, "--ckpt-format", format, "--save", saved[format])...)
			}
			iter := filepath.Join(saved["torch_dist"], "iter_0000003")
			for _, f := range []string{".metadata", "metadata.json", "common.pt", "__0_0.distcp"} {
				require.FileExists(t, filepath.Join(iter, f))
			}
			left, err := filepath.Glob(filepath.Join(iter, "*.json"))
			require.NoError(t, err)
			require.Equal(t, []string{filepath.Join(iter, "metadata.json")}, left)

			a, err := megatron.Open(saved["torch"])
			require.NoError(t, err)
			defer a.Close()
			b, err := megatron.Open(saved["torch_dist"])
			require.NoError(t, err)
			defer b.Close()
			require.True(t, b.TorchDist())
			for k, want := range map[string]any{"ckpt_format": "torch_dist", "add_position_embedding": true, "iteration": int64(3)} {
				v, _ := b.Args.Get(k)
				require.Equal(t, want, v, k) // Megatron's check_checkpoint_args compares add_position_embedding
			}
			require.Equal(t, a.Config, b.Config)
			require.NoError(t, a.EqualTensors(b))
			out := runGolaunch(t, append(append(strings.Fields("--standalone --nproc-per-node 2"), resumeArgs(dir)...),
				strings.Fields(tc.resume+" --train-iters 4 --no-load-optim --load "+saved["torch_dist"])...)...)
			require.Contains(t, out, "iteration        4/       4")
			require.NotContains(t, out, "iteration        3/")
		})
	}
	args := append(resumeArgs(t.TempDir()), "--ckpt-format", "torch_dist", "--save", t.TempDir())
	b, err := exec.Command(golaunchBin, append(args, strings.Fields("--use-distributed-optimizer --num-experts 4 --moe-grouped-gemm --disable-bias-linear")...)...).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(b), "--ckpt-format torch_dist: the distributed optimizer's state of GroupedMLP experts (--moe-grouped-gemm) is not written in torch_dist")
}

// TestGenerateFromTorchDist: generate reads a torch_dist checkpoint (at TP 2, each rank its
// shard) and writes the tokens its torch twin gives.
func TestGenerateFromTorchDist(t *testing.T) {
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.jsonl")
	writeQueries(t, in, []string{"5 17 42", "99 3 8 60 1"})
	out := map[string]string{}
	for _, format := range []string{"torch", "torch_dist"} {
		out[format] = filepath.Join(tmp, format+".txt")
		args := []string{"--standalone", "--nproc-per-node", "2", "generate", "--tensor-model-parallel-size", "2",
			"--load", torchDistFixture("dense", format), "--tokenizer-type", "NullTokenizer", "--vocab-size", "119",
			"--text-generate-input-file", in, "--text-generate-output-file", out[format], "--micro-batch-size", "2",
			"--greedy", "--out-seq-length", "6", "--repetition-penalty", "1"}
		b, err := exec.Command(golaunchBin, args...).CombinedOutput()
		require.NoError(t, err, "%s", b)
	}
	want := readLines(t, out["torch"])
	require.Len(t, want, 2)
	require.Equal(t, want, readLines(t, out["torch_dist"]))
}
