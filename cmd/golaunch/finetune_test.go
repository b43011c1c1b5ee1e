package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeSFT(t *testing.T, dir string) (train, valid string) {
	var recs []map[string]string
	for i := 0; i < 40; i++ {
		a, b := i%13+1, i%7+2
		in := ""
		if i%3 == 0 {
			in = "numbers"
		}
		recs = append(recs, map[string]string{"instruction": fmt.Sprintf("Add %d and %d.", a, b), "input": in, "output": fmt.Sprintf("The sum is %d.", a+b)})
	}
	write := func(name string, v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	return write("train.json", recs), write("valid.json", recs[:8])
}

func finetuneArgs(train, valid string) []string {
	return strings.Fields("finetune --num-layers 2 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 128 " +
		"--max-padding-length 128 --max-position-embeddings 128 --micro-batch-size 2 --lr 3e-3 --log-interval 1 " +
		"--eval-interval 10 --eval-iters 4 --swiglu --normalization RMSNorm --position-embedding-type rope " +
		"--attention-dropout 0 --hidden-dropout 0 --epochs 3 --tokenizer-type Llama2Tokenizer " +
		"--tokenizer-model ../../data/tokenizer/testdata/sp_bpe2k.model --load none " +
		"--train-data-path " + train + " --valid-data-path " + valid)
}

// TestFinetune: SFT on Alpaca-style records learns (loss falls), runs epochs ×
// ⌊kept samples / (micro-batch × DP)⌋ iterations, validates, and gives the same losses with
// TP=2 as on one process.
func TestFinetune(t *testing.T) {
	dir := t.TempDir()
	train, valid := writeSFT(t, dir)
	out := runGolaunch(t, append([]string{"--standalone"}, finetuneArgs(train, valid)...)...)
	single := iterationLosses(out)
	require.Contains(t, out, "validation loss at iteration 10")
	require.NotContains(t, out, "on validation set", "Pai's epoch loop has no final evaluation")
	n := len(single)
	require.Equal(t, 0, n%3, "epochs × iterations per epoch: %d", n)
	require.Contains(t, out, fmt.Sprintf("iteration %8d/%8d", n, n))
	first, last := parseLog(t, out).loss[0], parseLog(t, out).loss[n-1]
	require.Less(t, last, first/2, "fine-tuning learns the responses")
	tp2 := iterationLosses(runGolaunch(t, append([]string{"--standalone", "--nproc-per-node", "2"}, append(finetuneArgs(train, valid), "--tensor-model-parallel-size", "2")...)...))
	require.Equal(t, len(single), len(tp2))
	for it, want := range single {
		w, g := parseLossNorm(want), parseLossNorm(tp2[it])
		require.InEpsilon(t, w[0], g[0], 1e-5, "iteration %s loss", it)
	}
}

func parseLossNorm(s string) [2]float64 {
	var l, n float64
	fmt.Sscanf(strings.ReplaceAll(strings.ReplaceAll(s, "|", " "), "loss scale:", ""), "lm loss: %g %g grad norm: %g", &l, new(float64), &n)
	return [2]float64{l, n}
}

func TestFinetuneBadInput(t *testing.T) {
	dir := t.TempDir()
	train, valid := writeSFT(t, dir)
	for _, c := range []struct {
		args []string
		want string
	}{
		{finetuneArgs(filepath.Join(dir, "missing.json"), valid), "missing.json"},
		{append(finetuneArgs(train, valid), "--max-padding-length", "8"), "no sample fits --max-padding-length 8"},
		{append(finetuneArgs(train, valid), "--epochs", "0"), "--epochs"},
	} {
		cmd := exec.Command(golaunchBin, append([]string{"--standalone"}, c.args...)...)
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(out), c.want)
	}
}
