package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// rawArgs trains the tiny Llama on Pai's raw JSON dataset (LLamaRawDataset) with Megatron's
// iteration-based loop: 40 records of ≤ 128 tokens, 8 per iteration.
func rawArgs(cmd, train, valid string) []string {
	return strings.Fields(cmd + " --num-layers 2 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 128 " +
		"--seq-length 2048 --max-padding-length 127 --dataset LLama-Pretrain-Raw --max-position-embeddings 128 " +
		"--micro-batch-size 2 --global-batch-size 8 --lr 3e-3 --log-interval 1 --eval-interval 6 --eval-iters 1 " +
		"--swiglu --normalization RMSNorm --position-embedding-type rope --attention-dropout 0 --hidden-dropout 0 " +
		"--tokenizer-type Llama2Tokenizer --tokenizer-model ../../data/tokenizer/testdata/sp_bpe2k.model " +
		"--train-data-path " + train + " --valid-data-path " + valid)
}

// TestRawJSONPretrainCyclic: pretraining on a JSON file runs past the end of the data with
// --dataloader-type cyclic (reshuffled epochs), learns, validates, and a run stopped
// mid-epoch and resumed gives the uninterrupted run's losses (the sampler restarts from the
// checkpoint's consumed samples); --dataloader-type single stops at the end of the data.
func TestRawJSONPretrainCyclic(t *testing.T) {
	dir := t.TempDir()
	train, valid := writeSFT(t, dir)
	run := func(extra ...string) string {
		args := append([]string{"--standalone", "--nproc-per-node", "2"}, rawArgs("pretrain", train, valid)...)
		return runGolaunch(t, append(args, extra...)...)
	}
	cyclic := []string{"--train-iters", "12", "--dataloader-type", "cyclic"}
	straightOut := run(append(cyclic, "--save", filepath.Join(dir, "a"))...)
	straight := iterationLosses(straightOut)
	require.Len(t, straight, 12, "12 iterations over 40 samples: 2.4 epochs")
	require.Contains(t, straightOut, "validation loss at iteration 12")
	l := parseLog(t, straightOut).loss
	require.Less(t, l[11], l[0]*0.8, "the loss falls")

	half := run(append(cyclic, "--save", filepath.Join(dir, "b"), "--exit-interval", "7")...)
	require.Contains(t, half, "exiting program at iteration 7")
	resumed := iterationLosses(run(append(cyclic, "--load", filepath.Join(dir, "b"))...))
	for it := 8; it <= 12; it++ {
		k := strconv.Itoa(it)
		require.Equal(t, straight[k], resumed[k], "iteration %d after resuming at 7", it)
	}

	cmd := exec.Command(golaunchBin, append([]string{"--standalone"}, append(rawArgs("pretrain", train, valid), "--train-iters", "12")...)...)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "does not wrap around")
}

// TestRawJSONFinetuneIterations: `finetune --train-iters` (Pai's *_withGA scripts) runs
// exactly that many iterations on the raw samples, and TP=2 gives one process's losses.
func TestRawJSONFinetuneIterations(t *testing.T) {
	dir := t.TempDir()
	train, valid := writeSFT(t, dir)
	args := append(rawArgs("finetune", train, valid), "--train-iters", "6", "--dataloader-type", "cyclic", "--eod-mask-loss")
	singleOut := runGolaunch(t, append([]string{"--standalone"}, args...)...)
	single := iterationLosses(singleOut)
	require.Len(t, single, 6)
	require.Contains(t, singleOut, "validation loss at iteration 6 on validation set", "Megatron's loop ends with an evaluation")
	tp2 := iterationLosses(runGolaunch(t, append([]string{"--standalone", "--nproc-per-node", "2"}, append(args, "--tensor-model-parallel-size", "2")...)...))
	for it, want := range single {
		w, g := parseLossNorm(want), parseLossNorm(tp2[it])
		require.InEpsilon(t, w[0], g[0], 1e-5, "iteration %s loss", it)
	}
	mcore := iterationLosses(runGolaunch(t, append([]string{"--standalone"}, append(args, "--use-mcore-models")...)...))
	require.NotEqual(t, single["1"], mcore["1"], "the mcore entry points leave EOS labels out of the loss")
}

// TestPaiVocabularyUnpadded: with Pai's --patch-tokenizer-type the vocabulary is
// tokenizer.vocab_size + --extra-vocab-size exactly, not rounded up to 128·TP, so a checkpoint
// converted as Pai's convertors write it (no padding rows) loads at TP=2; Megatron's own
// tokenizer types keep the rounding and say what does not fit.
func TestPaiVocabularyUnpadded(t *testing.T) {
	dir := t.TempDir()
	convert := filepath.Join(dir, "convert")
	out, err := exec.Command("go", "build", "-o", convert, "../../tools/convert").CombinedOutput()
	require.NoError(t, err, "%s", out)
	ck := filepath.Join(dir, "ck")
	out, err = exec.Command(convert, "--load_path", "../../testdata/hf/llama-gqa", "--save_path", ck, "--target_tensor_model_parallel_size", "2",
		"--make_vocab_size_divisible_by", "1", "--extra_num_vocabs", "2", "--target_params_dtype", "fp32", "--progress", "none").CombinedOutput()
	require.NoError(t, err, "%s", out)
	args := strings.Fields("--standalone --nproc-per-node 2 pretrain --tensor-model-parallel-size 2 --mock-data --vocab-size 258 " +
		"--num-layers 2 --hidden-size 64 --num-attention-heads 4 --group-query-attention --num-query-groups 2 --ffn-hidden-size 172 " +
		"--swiglu --normalization RMSNorm --position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear " +
		"--seq-length 16 --micro-batch-size 1 --global-batch-size 1 --train-iters 2 --lr 1e-4 --finetune --load " + ck)
	log := runGolaunch(t, append(args, "--patch-tokenizer-type", "LLamaTokenizer")...)
	require.Contains(t, log, "padded vocab (size: 258) with 0 dummy tokens (new size: 258)")
	require.Contains(t, log, "successfully loaded checkpoint")
	cmd := exec.Command(golaunchBin, args...)
	b, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(b), "embedding.word_embeddings.weight has shape [129 64], the model (from the flags) wants [256 64]")
	cmd = exec.Command(golaunchBin, append(args, "--patch-tokenizer-type", "LLamaTokenizer", "--vocab-size", "257")...)
	b, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(b), "which --tensor-model-parallel-size 2 must divide")
}
