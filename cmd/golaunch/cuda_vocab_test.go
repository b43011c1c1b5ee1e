package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPaiVocabularyOnEmulatedGPUs: Pai's unpadded vocabulary gives each TP rank an odd
// shard (258 rows over TP=2: 129 each); the embedding, output GEMM and vocab-parallel cross
// entropy on the "GPUs" (the kernel emulator) give the CPU's losses.
func TestPaiVocabularyOnEmulatedGPUs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the emulator runs every CUDA thread as a fiber")
	}
	dir := t.TempDir()
	gpuEnv := emulatedGPUs(t, dir, 128)
	args := func(device string) []string {
		return strings.Fields("--standalone --nproc-per-node 2 pretrain --tensor-model-parallel-size 2 " +
			"--num-layers 1 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 128 --seq-length 16 " +
			"--micro-batch-size 2 --global-batch-size 2 --train-iters 2 --lr 3e-3 --mock-data --vocab-size 258 " +
			"--patch-tokenizer-type LLamaTokenizer --log-interval 1 --swiglu --normalization RMSNorm --position-embedding-type rope " +
			"--disable-bias-linear --attention-dropout 0 --hidden-dropout 0 --eval-iters 0 --distributed-backend gloo --device " + device)
	}
	run := func(env []string, a ...string) string {
		cmd := exec.Command(golaunchBin, a...)
		cmd.Env = append(os.Environ(), append([]string{"GOLAUNCH_GRACE_PERIOD=5"}, env...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v\n%s", a, out)
		return string(out)
	}
	onGPU := run(gpuEnv, args("cuda")...)
	require.Contains(t, onGPU, "padded vocab (size: 258) with 0 dummy tokens (new size: 258)")
	g, c := parseLog(t, onGPU), parseLog(t, run(nil, args("cpu")...))
	require.Len(t, g.loss, 2)
	for i := range c.loss {
		require.InEpsilon(t, c.loss[i], g.loss[i], 1e-5, "iteration %d loss: cpu %v, emulated gpu %v", i+1, c.loss, g.loss)
		require.InEpsilon(t, c.norm[i], g.norm[i], 2e-3, "iteration %d grad norm", i+1)
	}
}
