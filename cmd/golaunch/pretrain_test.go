package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/indexed"
)

// writeCorpus builds a small Megatron dataset of documents that repeat a few patterns, so a
// model can learn it.
func writeCorpus(t *testing.T, dir string) string {
	prefix := filepath.Join(dir, "corpus_text_document")
	b, err := indexed.NewBuilder(prefix+".bin", indexed.Uint16)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(1, 2))
	for d := 0; d < 400; d++ {
		n := 20 + r.IntN(60)
		doc := make([]int32, n)
		start := int32(r.IntN(8))
		for i := range doc {
			doc[i] = (start + int32(i)*3) % 200
		}
		require.NoError(t, b.AddItem(doc))
		b.EndDocument()
	}
	require.NoError(t, b.Finalize(prefix+".idx"))
	return prefix
}

var (
	iterLine = regexp.MustCompile(`^ \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\] iteration +(\d+)/ +(\d+) \| consumed samples: +(\d+) \| elapsed time per iteration \(ms\): [\d.]+ \| learning rate: (\d\.\d{6}E[-+]\d\d) \| global batch size: +(\d+) \| lm loss: (\d\.\d{6}E[-+]\d\d) \| loss scale: 1\.0 \| grad norm: ([\d.]+) \|(?: params norm: [\d.]+ \|)? number of skipped iterations: +0 \| number of nan iterations: +0 \|$`)
)

type logged struct{ loss, norm []float64 }

func parseLog(t *testing.T, out string) logged {
	var l logged
	for _, line := range strings.Split(out, "\n") {
		line = regexp.MustCompile(`^\[default\d+\]:`).ReplaceAllString(line, "")
		if !strings.Contains(line, "] iteration ") {
			continue
		}
		m := iterLine.FindStringSubmatch(line)
		require.NotNil(t, m, "not Megatron's log line: %q", line)
		loss, _ := strconv.ParseFloat(m[6], 64)
		norm, _ := strconv.ParseFloat(m[7], 64)
		l.loss, l.norm = append(l.loss, loss), append(l.norm, norm)
	}
	return l
}

// pretrainArgs: NullTokenizer adds EOD as id 511, so the padded vocabulary is 512 at TP 1, 2
// and 4 alike (Megatron's loss depends on the padding, which grows with TP).
func pretrainArgs(prefix, tb string) []string {
	return strings.Fields("pretrain --num-layers 4 --hidden-size 64 --num-attention-heads 4 --group-query-attention --num-query-groups 2 " +
		"--ffn-hidden-size 128 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 2 --global-batch-size 8 " +
		"--train-iters 12 --lr 3e-3 --min-lr 3e-4 --lr-warmup-iters 2 --lr-decay-style cosine --tokenizer-type NullTokenizer --vocab-size 511 " +
		"--log-interval 1 --eval-interval 6 --eval-iters 1 --swiglu --normalization RMSNorm --position-embedding-type rope " +
		"--untie-embeddings-and-output-weights --disable-bias-linear --attention-dropout 0 --hidden-dropout 0 --split 98,2,0 " +
		"--data-path " + prefix + " --tensorboard-dir " + tb)
}

// TestPretrainLayoutsAgree runs golaunch pretrain on a real .bin/.idx dataset as one process
// and as 4 workers (TP2·PP2 and TP2·DP2 with SP and the distributed optimizer) and requires
// the same logged losses and grad norms, Megatron's log-line format, a falling loss and
// TensorBoard files.
func TestPretrainLayoutsAgree(t *testing.T) {
	dir := t.TempDir()
	prefix := writeCorpus(t, dir)
	run := func(name string, launcher []string, extra ...string) logged {
		args := append(append(launcher, pretrainArgs(prefix, filepath.Join(dir, "tb-"+name))...), extra...)
		cmd := exec.Command(golaunchBin, args...)
		cmd.Env = append(os.Environ(), "GOLAUNCH_GRACE_PERIOD=2")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s:\n%s", name, out)
		l := parseLog(t, string(out))
		require.Len(t, l.loss, 12, "%s: one log line per iteration:\n%s", name, out)
		t.Logf("%s: %v", name, l.loss)
		require.Contains(t, string(out), "validation loss at iteration 6", name)
		return l
	}
	single := run("single", []string{"--standalone"})
	require.Less(t, single.loss[11], single.loss[0]-0.5, "the loss falls on a learnable corpus: %v", single.loss)
	ev, err := filepath.Glob(filepath.Join(dir, "tb-single", "events.out.tfevents.*"))
	require.NoError(t, err)
	require.Len(t, ev, 1)
	for name, layout := range map[string][]string{
		"tp2pp2":    {"--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"},
		"tp2dp2-sp": {"--tensor-model-parallel-size", "2", "--sequence-parallel", "--use-distributed-optimizer"},
		"cp2pp2":    {"--context-parallel-size", "2", "--pipeline-model-parallel-size", "2"},
		"tp2cp2-sp": {"--context-parallel-size", "2", "--tensor-model-parallel-size", "2", "--sequence-parallel"},
	} {
		got := run(name, []string{"--standalone", "--nproc-per-node", "4"}, layout...)
		for i := range single.loss {
			require.InEpsilon(t, single.loss[i], got.loss[i], 2e-6, "%s iteration %d loss", name, i+1)
			require.InDelta(t, single.norm[i], got.norm[i], 1.5e-3, "%s iteration %d grad norm", name, i+1)
		}
	}
}

func TestPretrainBadInput(t *testing.T) {
	dir := t.TempDir()
	prefix := writeCorpus(t, dir)
	cases := []struct {
		launcher, extra []string
		want            string
	}{
		{[]string{"--standalone", "--nproc-per-node", "3"}, []string{"--tensor-model-parallel-size", "2"}, "world size 3 is not divisible by tensor-parallel size 2"},
		{[]string{"--standalone"}, []string{"--pipeline-model-parallel-size", "3"}, "world size 1 is not divisible"},
		{[]string{"--standalone"}, []string{"--global-batch-size", "7"}, "--global-batch-size 7 is not divisible by --micro-batch-size 2"},
		{[]string{"--standalone"}, []string{"--fp16", "--bf16"}, "--fp16 and --bf16 are exclusive"},
		{[]string{"--standalone"}, []string{"--num-layers-per-virtual-pipeline-stage", "1"}, "needs --pipeline-model-parallel-size > 1"},
		{[]string{"--standalone"}, []string{"--no-such-flag"}, "--no-such-flag"},
		{[]string{"--standalone"}, []string{"--normalization", "BatchNorm"}, "BatchNorm"},
		{[]string{"--standalone"}, []string{"--data-path", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"--standalone", "--nproc-per-node", "4"}, []string{"--context-parallel-size", "2", "--num-experts", "4", "--expert-model-parallel-size", "2"}, "expert parallelism needs context-parallel-size 1"},
		{[]string{"--standalone", "--nproc-per-node", "3"}, []string{"--context-parallel-size", "3"}, "--seq-length 32 is not divisible by 2 × --context-parallel-size 3"},
		{[]string{"--standalone", "--nproc-per-node", "3"}, []string{"--context-parallel-size", "2"}, "world size 3 is not divisible by tensor-parallel size 1 × pipeline-parallel size 1 × context-parallel size 2"},
		{[]string{"--standalone"}, []string{"--num-experts", "4", "--moe-router-topk", "5"}, "--moe-router-topk 5 must be between 1 and --num-experts 4"},
		{[]string{"--standalone", "--nproc-per-node", "2"}, []string{"--num-experts", "6", "--expert-model-parallel-size", "4"}, "--expert-model-parallel-size 4 must divide the data-parallel size 2"},
		{[]string{"--standalone", "--nproc-per-node", "2"}, []string{"--num-experts", "3", "--expert-model-parallel-size", "2"}, "--num-experts 3 is not a multiple of --expert-model-parallel-size 2"},
		{[]string{"--standalone"}, []string{"--num-experts", "4", "--moe-grouped-gemm"}, "--moe-grouped-gemm needs --bf16, as Megatron asserts"},
		{[]string{"--standalone"}, []string{"--dataloader-type", "external"}, "--dataloader-type"},
		{[]string{"--standalone"}, []string{"--rampup-batch-size", "2", "2", "100"}, "--rampup-batch-size needs sample-based training (--train-samples)"},
		{[]string{"--standalone"}, []string{"--use-checkpoint-args"}, "--use-checkpoint-args needs --load"},
		{[]string{"--standalone"}, []string{"--override-opt_param-scheduler", "--use-checkpoint-opt_param-scheduler"}, "both override and use-checkpoint are set"},
		{[]string{"--standalone"}, []string{"--start-weight-decay", "0.1"}, "--start-weight-decay and --end-weight-decay need --weight-decay-incr-style linear or cosine"},
		{[]string{"--standalone"}, []string{"--batch-size", "4"}, "--batch-size argument is no longer valid, use --micro-batch-size instead"},
		{[]string{"--standalone"}, []string{"--checkpoint-activations"}, "--checkpoint-activations is no longer valid, use --recompute-activations"},
		{[]string{"--standalone"}, []string{"--model-parallel-size", "2"}, "--model-parallel-size is no longer valid, use --tensor-model-parallel-size instead"},
		{[]string{"--standalone"}, []string{"--tp-comm-overlap"}, "overlap can happen only when sequence parallelism is enabled"},
		{[]string{"--standalone"}, []string{"--fp16-lm-cross-entropy"}, "--fp16-lm-cross-entropy is not supported yet"},
		{[]string{"--standalone"}, []string{"--multi-latent-attention", "--cache-mla-latents"}, "--cache-mla-latents is not supported yet"},
		{[]string{"--standalone"}, []string{"--multi-latent-attention", "--group-query-attention"}, "--group-query-attention is mutually exclusive with --multi-latent-attention"},
		{[]string{"--standalone", "--nproc-per-node", "4"}, []string{"--multi-latent-attention", "--tensor-model-parallel-size", "4", "--kv-lora-rank", "30", "--qk-pos-emb-head-dim", "4"}, "--kv-lora-rank + --qk-pos-emb-head-dim 34 and --q-lora-rank 0 must be divisible by --tensor-model-parallel-size 4"},
		{[]string{"--standalone"}, []string{"--multi-latent-attention", "--qk-head-dim", "8", "--qk-pos-emb-head-dim", "4", "--v-head-dim", "16"}, "--v-head-dim 16 wider than --qk-head-dim + --qk-pos-emb-head-dim 12 is not supported"},
		{[]string{"--standalone"}, []string{"--rope-type", "yarn"}, "--rope-type yarn applies to --multi-latent-attention"},
		{[]string{"--standalone"}, []string{"--standalone-embedding-stage"}, "--standalone-embedding-stage is not supported yet"},
		{[]string{"--standalone"}, []string{"--pipeline-model-parallel-split-rank", "1"}, "--pipeline-model-parallel-split-rank (encoder–decoder models) is not supported yet"},
		{[]string{"--standalone"}, []string{"--spec", "megatron.core.models.gpt.gpt_layer_specs", "get_gpt_layer_local_spec"}, "--spec is not supported yet"},
		{[]string{"--standalone"}, []string{"--lazy-mpu-init", "True"}, "--lazy-mpu-init is not supported yet"},
		{[]string{"--standalone"}, []string{"--adlr-autoresume"}, "ADLR autoresume is not available"},
		{[]string{"--standalone"}, []string{"--encoder-num-layers", "3"}, "--num-layers 4 and --encoder-num-layers 3: give one of them"},
		{[]string{"--standalone"}, []string{"--vocab-extra-ids", "100"}, "--vocab-extra-ids (T5's span masking) is not supported yet"},
		{[]string{"--standalone"}, []string{"--distribute-saved-activations"}, "--distribute-saved-activations needs --tensor-model-parallel-size > 1"},
		// Weights this large overflow: Megatron stops at a NaN loss or gradient (bf16, fp32).
		{[]string{"--standalone"}, []string{"--init-method-std", "1e25"}, "iteration 1: found NaN in the loss or gradient norm"},
		{[]string{"--standalone"}, []string{"--weight-decay-incr-style", "linear", "--end-weight-decay", "0.1"}, "--weight-decay-incr-style linear needs --start-weight-decay and --end-weight-decay"},
		{[]string{"--standalone"}, []string{"--weight-decay-incr-style", "cosine", "--start-weight-decay", "0.2", "--end-weight-decay", "0.1"}, "Megatron wants 0 ≤ --start-weight-decay ≤ --end-weight-decay"},
		{[]string{"--standalone", "--nproc-per-node", "2"}, []string{"--expert-model-parallel-size", "4"}, "--expert-model-parallel-size 4 must divide the data-parallel size 2"},
		// Later Megatron-Core MoE flags asking for what is not implemented.
		{[]string{"--standalone"}, []string{"--num-experts", "4", "--moe-layer-freq", "([0]*4)"}, "--moe-layer-freq ([0]*4): no layer is an MoE layer"},
		{[]string{"--standalone"}, []string{"--num-experts", "4", "--moe-layer-freq", "([1]*3)"}, "the pattern has 3 layers, the model 4 (--num-layers)"},
		{[]string{"--standalone"}, []string{"--moe-router-score-function", "sigmoid"}, "the router's score function, scaling and groups need --num-experts"},
		{[]string{"--standalone"}, []string{"--num-experts", "4", "--moe-router-enable-expert-bias", "--disable-bias-linear"}, "--moe-router-enable-expert-bias needs --moe-router-score-function sigmoid"},
		{[]string{"--standalone"}, []string{"--num-experts", "8", "--moe-router-topk", "4", "--moe-router-num-groups", "4", "--moe-router-group-topk", "3", "--disable-bias-linear"}, "--moe-router-num-groups 4, --moe-router-group-topk 3"},
		{[]string{"--standalone"}, []string{"--moe-expert-capacity-factor", "1.0"}, "--moe-expert-capacity-factor (token dropping; routing is dropless) is not supported yet"},
		{[]string{"--standalone"}, []string{"--moe-token-dispatcher-type", "flex"}, `--moe-token-dispatcher-type "flex"`},
	}
	for _, c := range cases {
		args := append(append(c.launcher, pretrainArgs(prefix, filepath.Join(dir, "tb"))...), c.extra...)
		cmd := exec.Command(golaunchBin, args...)
		cmd.Env = append(os.Environ(), "GOLAUNCH_GRACE_PERIOD=2")
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "%v should fail", c.extra)
		require.Contains(t, string(out), c.want, "%v", c.extra)
	}
}

var endEval = regexp.MustCompile(` validation loss at iteration (\d+) on (validation|test) set \| lm loss value: (\S+) \| lm loss PPL: (\S+) \| `)

// TestEndOfTrainingEvaluation: as Megatron's pretrain() ends, a finished run saves, then
// evaluates the validation set (going on where training left it) and the test set (from
// its start); a run stopped by --exit-interval does neither; --skip-train evaluates a loaded
// checkpoint without training — its test loss is the trained run's, the same weights on the
// same samples — and without dropout, whatever --hidden-dropout and --attention-dropout say.
func TestEndOfTrainingEvaluation(t *testing.T) {
	dir := t.TempDir()
	prefix := writeCorpus(t, dir)
	ck := filepath.Join(dir, "ck")
	base := append(pretrainArgs(prefix, filepath.Join(dir, "tb")), "--split", "90,5,5", "--eval-iters", "2")
	out := runGolaunch(t, append([]string{"--standalone"}, append(base, "--save", ck)...)...)
	ends := endEval.FindAllStringSubmatch(out, -1)
	require.Len(t, ends, 2, "%s", out)
	require.Equal(t, []string{"12", "validation"}, ends[0][1:3])
	require.Equal(t, []string{"12", "test"}, ends[1][1:3])
	require.Less(t, strings.Index(out, "successfully saved checkpoint from iteration      12"), strings.Index(out, ends[0][0]), "saved first")
	require.Contains(t, out, "[after training is done] datetime: ")

	stopped := runGolaunch(t, append([]string{"--standalone"}, append(base, "--exit-interval", "6")...)...)
	require.Contains(t, stopped, "exiting program at iteration 6")
	require.Empty(t, endEval.FindAllString(stopped, -1), "Megatron exits without the final evaluation")

	skip := runGolaunch(t, append([]string{"--standalone"}, append(base, "--load", ck, "--skip-train")...)...)
	require.Contains(t, skip, "skipping training (--skip-train is on) ...")
	require.Empty(t, parseLog(t, skip).loss, "no training iterations")
	require.NotContains(t, skip, "successfully saved")
	skipEnds := endEval.FindAllStringSubmatch(skip, -1)
	require.Len(t, skipEnds, 2, "%s", skip)
	require.Equal(t, ends[1][1:], skipEnds[1][1:], "the test set, from its start, with the trained weights")
	require.Equal(t, "12", skipEnds[0][1], "the checkpoint's iteration")
	// Evaluation runs the model without dropout (Megatron's model.eval()).
	dropped := runGolaunch(t, append([]string{"--standalone"}, append(base, "--load", ck, "--skip-train",
		"--hidden-dropout", "0.3", "--attention-dropout", "0.3")...)...)
	require.Equal(t, skipEnds, endEval.FindAllStringSubmatch(dropped, -1), "validation and test losses without dropout")
}

// TestTuningFlagsAccepted: Megatron 240126's communication, memory and profiling flags are
// accepted and change nothing; with --no-check-for-nan-in-loss-and-grad a run whose weights
// overflow skips its NaN iterations instead of stopping.
func TestTuningFlagsAccepted(t *testing.T) {
	dir := t.TempDir()
	prefix := writeCorpus(t, dir)
	base := append([]string{"--standalone", "--nproc-per-node", "2"}, append(pretrainArgs(prefix, filepath.Join(dir, "tb")),
		"--tensor-model-parallel-size", "2", "--train-iters", "4")...)
	plain := iterationLosses(runGolaunch(t, base...))
	tuned := iterationLosses(runGolaunch(t, append(base, strings.Fields("--no-overlap-p2p-communication --delay-param-gather "+
		"--no-delay-grad-reduce --disable-tp-comm-bulk-dgrad --disable-tp-comm-bulk-wgrad --disable-tp-comm-split-ag "+
		"--disable-tp-comm-split-rs --tp-comm-overlap-cfg x.yaml --no-persist-layer-norm --no-scatter-gather-tensors-in-pipeline "+
		"--no-clone-scatter-output-in-embedding --nccl-communicator-config-path n.yaml --fp8-interval 1 --manual-gc-interval 10 "+
		"--no-manual-gc-eval --timing-log-option all --no-barrier-with-level-1-timing --profile --profile-step-start 1 "+
		"--profile-step-end 2 --profile-ranks 0 1 --use-ring-exchange-p2p --no-initialization --sgd-momentum 0.8 "+
		"--sequence-parallel --tp-comm-overlap --recompute-granularity full --recompute-method uniform --distribute-saved-activations")...)...))
	sp := iterationLosses(runGolaunch(t, append(base, "--sequence-parallel", "--recompute-granularity", "full", "--recompute-method", "uniform")...))
	require.Len(t, plain, 4)
	require.Equal(t, sp, tuned)
	skipped := runGolaunch(t, append([]string{"--standalone"}, append(pretrainArgs(prefix, filepath.Join(dir, "tb2")),
		"--train-iters", "3", "--init-method-std", "1e25", "--no-check-for-nan-in-loss-and-grad", "--eval-iters", "0")...)...)
	require.Contains(t, skipped, "number of nan iterations:   1 |")
	require.Contains(t, skipped, "iteration        3/       3")
}
