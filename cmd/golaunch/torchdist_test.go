package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/stretchr/testify/require"
)

// torchDistFixture is a checkpoint Megatron-LM wrote in both formats from one model
// (ckpt/megatron/testdata/torch_dist/README.md): name "dense" (TP 2 × PP 2) or "moe".
func torchDistFixture(name, format string) string {
	return filepath.Join("..", "..", "ckpt", "megatron", "testdata", "torch_dist", name, format)
}

// TestPretrainFromTorchDist: a torch_dist checkpoint (Megatron-Core's default format)
// resumes at another layout with --no-load-optim, from its iteration, with the losses
// its torch-format twin gives; without --no-load-optim the run says why it cannot take
// the optimizer state; --use-checkpoint-args reads the args from its common state.
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
	require.Contains(t, string(b), "is a torch_dist checkpoint, whose optimizer state gomegatron does not read")

	bare := strings.Fields("--standalone --nproc-per-node 4 pretrain --micro-batch-size 2 --global-batch-size 4 --mock-data --bf16 " +
		"--train-iters 8 --lr 1e-4 --log-interval 1 --eval-iters 0 --attention-dropout 0 --hidden-dropout 0 --vocab-size 120 " +
		"--no-load-optim --use-checkpoint-args --data-cache-path " + dir + " --load " + torchDistFixture("dense", "torch_dist"))
	out := runGolaunch(t, bare...)
	for _, line := range []string{"Setting num_layers to 4 from checkpoint", "Setting tensor_model_parallel_size to 2 from checkpoint",
		"Setting pipeline_model_parallel_size to 2 from checkpoint", "iteration        8/       8"} {
		require.Contains(t, out, line)
	}
}

// TestSaveTorchDist: --ckpt-format torch_dist writes the same tensors as the torch format
// (dense at TP 2 × PP 2, also with virtual pipeline stages; MoE at TP 2 × EP 2 with
// sequence parallelism), every file of Megatron's layout and no leftovers, and the
// checkpoint resumes at another layout.
// Saving it without --no-save-optim is refused: its optimizer state is not written.
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
	cmd := exec.Command(golaunchBin, append(resumeArgs(t.TempDir()), "--ckpt-format", "torch_dist", "--save", t.TempDir())...)
	b, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(b), "--ckpt-format torch_dist: gomegatron writes the model and the progress in torch_dist, not the optimizer state; pass --no-save-optim")
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
