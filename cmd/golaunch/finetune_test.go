package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
	// Pai's epoch fine-tuning spells the data flags --train-data and --valid-data.
	pai := finetuneArgs(train, valid)
	for i, a := range pai {
		pai[i] = strings.TrimSuffix(a, "-path")
	}
	require.Equal(t, single, iterationLosses(runGolaunch(t, append([]string{"--standalone"}, pai...)...)))
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

var evalLossField = regexp.MustCompile(`iteration +(\d+)/ +(\d+) \| lm loss \(per data-parallel rank\): ([^|]+)\|`)

// evalLosses parses evaluate-raw's per-iteration losses: [iteration][data-parallel rank].
func evalLosses(t *testing.T, out string) [][]float64 {
	var all [][]float64
	for _, m := range evalLossField.FindAllStringSubmatch(out, -1) {
		var row []float64
		for _, f := range strings.Fields(m[3]) {
			v, err := strconv.ParseFloat(f, 64)
			require.NoError(t, err)
			row = append(row, v)
		}
		all = append(all, row)
	}
	require.NotEmpty(t, all, out)
	return all
}

// TestEvaluateRaw: Pai's evaluation of a fine-tuned checkpoint on raw JSON samples. One
// pass in the DistributedSampler's order: with micro-batch 1 one loss per sample; with 3 the
// smaller last batch holds the last sample alone; DP 2 interleaves the single order (the
// last rank repeating the first sample), and TP 2 and PP 2 give the single process's losses.
func TestEvaluateRaw(t *testing.T) {
	dir := t.TempDir()
	train, _ := writeSFT(t, dir)
	var recs []map[string]string
	b, err := os.ReadFile(train)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &recs))
	var seven []map[string]string // records without an input: their prompts fit 128 tokens
	for _, r := range recs[20:] {
		if r["input"] == "" && len(seven) < 7 {
			seven = append(seven, r)
		}
	}
	valid := filepath.Join(dir, "valid7.json")
	b, err = json.Marshal(seven)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(valid, b, 0o644))
	ckpt := filepath.Join(dir, "ckpt")
	runGolaunch(t, append([]string{"--standalone"}, append(finetuneArgs(train, valid), "--epochs", "1", "--save", ckpt)...)...)

	eval := func(procs int, extra ...string) (string, [][]float64) {
		args := append([]string{"--standalone", "--nproc-per-node", strconv.Itoa(procs)}, strings.Fields(
			"evaluate-raw --num-layers 2 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 128 "+
				"--max-padding-length 128 --seq-length 128 --max-position-embeddings 128 --log-interval 1 "+
				"--swiglu --normalization RMSNorm --position-embedding-type rope --tokenizer-type Llama2Tokenizer "+
				"--tokenizer-model ../../data/tokenizer/testdata/sp_bpe2k.model --dataset LLama-SFT --no-load-optim --no-load-rng "+
				"--load "+ckpt+" --valid-data-path "+valid)...)
		out := runGolaunch(t, append(args, extra...)...)
		require.Contains(t, out, "done :-)")
		return out, evalLosses(t, out)
	}
	out, single := eval(1, "--micro-batch-size", "1")
	require.Len(t, single, 7, "one micro-batch per sample")
	var mean float64
	for _, row := range single {
		require.Len(t, row, 1)
		mean += row[0] / 7
	}
	require.Contains(t, out, "> working on iteration: 6")
	require.Contains(t, out, fmt.Sprintf("evaluation of 7 samples (7 iterations × 1 data-parallel ranks) | mean lm loss: %E", mean))

	_, mbs3 := eval(1, "--micro-batch-size", "3")
	require.Len(t, mbs3, 3)
	require.InEpsilon(t, single[6][0], mbs3[2][0], 1e-5, "the smaller last batch is the last sample alone")

	_, dp2 := eval(2, "--micro-batch-size", "1")
	require.Len(t, dp2, 4)
	for j, row := range dp2 {
		require.Len(t, row, 2)
		require.InEpsilon(t, single[2*j][0], row[0], 1e-5, "iteration %d rank 0", j+1)
		require.InEpsilon(t, single[(2*j+1)%7][0], row[1], 1e-5, "iteration %d rank 1", j+1)
	}
	bad := exec.Command(golaunchBin, "--standalone", "evaluate-raw", "--transformer-type", "huggingface", "--load", ckpt,
		"--valid-data-path", valid, "--max-padding-length", "128", "--micro-batch-size", "1")
	out2, err := bad.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out2), "--transformer-type huggingface needs --load to be a Hugging Face model folder")
	for _, layout := range [][]string{{"--tensor-model-parallel-size", "2"}, {"--pipeline-model-parallel-size", "2"}} {
		_, got := eval(2, append(layout, "--micro-batch-size", "1")...)
		require.Len(t, got, 7, "%v", layout)
		for j := range got {
			require.InEpsilon(t, single[j][0], got[j][0], 1e-5, "%v iteration %d", layout, j+1)
		}
	}
}
