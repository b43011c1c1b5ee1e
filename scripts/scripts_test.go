// Package scripts tests the Pai-Megatron-Patch style shell scripts in this folder: each is
// run with DRY_RUN=1 and its golaunch (or preprocess) command is compared with a command
// written out here from the spec's tables (spec/pai-megatron-patch.md §1.2, §2, §5, §6),
// not derived from the scripts' own logic; bad arguments must stop the script with exit
// status 2 and a message naming the argument, before anything is created.
package scripts

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	pretrainScript = "run_pretrain_megatron_llama.sh"
	finetuneScript = "run_finetune_megatron_llama.sh"
	generateScript = "run_text_generation_megatron_llama.sh"
	datasetScript  = "run_make_pretraining_dataset.sh"
	evaluateScript = "run_evaluate_megatron_llama.sh"

	mcoreEvaluateScript = "run_evaluate_mcore_llama.sh"
	hfEvaluateScript    = "run_evaluate_huggingface_llama.sh"
)

// fixture is a temporary folder with the inputs the scripts check: a .bin/.idx dataset
// prefix, raw JSON datasets, Hugging Face checkpoint folders of each size (config.json as
// Llama-2's), a Megatron checkpoint folder and a tokenizer folder.
type fixture struct {
	dir, ds, ds2, json, jsonl, ck7, ck13, ck70, ckTiny, ckMeg, tok, in, out string
	stub                                                                    string // a folder early on PATH with a failing nvidia-smi
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	d := t.TempDir()
	f := fixture{dir: d, ds: filepath.Join(d, "wudao_llamabpe_text_document"), ds2: filepath.Join(d, "other_text_document"),
		json: filepath.Join(d, "alpaca_data.json"), jsonl: filepath.Join(d, "gen.jsonl"),
		ck7: filepath.Join(d, "Llama-2-7b-hf-to-mg-tp1-pp1"), ck13: filepath.Join(d, "Llama-2-13b-hf-to-megatron-tp8-pp1"),
		ck70: filepath.Join(d, "Llama-2-70b-hf"), ckTiny: filepath.Join(d, "tiny-hf"), ckMeg: filepath.Join(d, "megatron-ckpt"),
		tok: filepath.Join(d, "Llama-2-7b-hf"), in: filepath.Join(d, "cleaned_zst"), out: filepath.Join(d, "output"),
		stub: filepath.Join(d, "stubbin")}
	for _, p := range []string{f.ds + ".bin", f.ds + ".idx", f.ds2 + ".bin", f.ds2 + ".idx"} {
		writeFile(t, p, "")
	}
	writeFile(t, f.json, `[{"instruction": "hi", "input": "", "output": "hello"}]`)
	writeFile(t, f.jsonl, `{"query": "hello"}`+"\n")
	hfConfig := func(dir string, layers, hidden, heads, ffn, kv int) {
		writeFile(t, filepath.Join(dir, "config.json"), `{
  "architectures": ["LlamaForCausalLM"],
  "hidden_size": `+strconv.Itoa(hidden)+`,
  "intermediate_size": `+strconv.Itoa(ffn)+`,
  "num_attention_heads": `+strconv.Itoa(heads)+`,
  "num_hidden_layers": `+strconv.Itoa(layers)+`,
  "num_key_value_heads": `+strconv.Itoa(kv)+`,
  "vocab_size": 32000
}`)
	}
	hfConfig(f.ck7, 32, 4096, 32, 11008, 32)
	hfConfig(f.ck13, 40, 5120, 40, 13824, 40)
	hfConfig(f.ck70, 80, 8192, 64, 28672, 8)
	hfConfig(f.ckTiny, 2, 64, 4, 172, 2)
	writeFile(t, filepath.Join(f.ckMeg, "latest_checkpointed_iteration.txt"), "release")
	require.NoError(t, os.MkdirAll(filepath.Join(f.ckMeg, "release", "mp_rank_00"), 0o755))
	writeFile(t, filepath.Join(f.tok, "tokenizer.model"), "")
	writeFile(t, filepath.Join(f.in, "00.jsonl.zst"), "")
	writeFile(t, filepath.Join(f.stub, "nvidia-smi"), "#!/bin/sh\nexit 9\n")
	require.NoError(t, os.Chmod(filepath.Join(f.stub, "nvidia-smi"), 0o755))
	return f
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// run runs a script with bash (or shell), DRY_RUN=1 unless env sets it, a clean environment
// (PATH with the fixture's stub folder first, HOME) plus env, and returns its output and
// exit status.
func run(t *testing.T, f fixture, shell, script string, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(shell, append([]string{script}, args...)...)
	cmd.Env = []string{"PATH=" + f.stub + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + f.dir, "TZ=UTC"}
	if _, ok := env["DRY_RUN"]; !ok {
		cmd.Env = append(cmd.Env, "DRY_RUN=1")
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return o.String(), e.String(), 0
}

var (
	portRE = regexp.MustCompile(`--master_port (\d+)`)
	dateRE = regexp.MustCompile(`_(\d{4}\.\d{2}\.\d{2}-\d{2}\.\d{2}\.\d{2})\b`)
)

// normalize checks the random master port (10000-65535, dsw only) and the run-time date
// suffix (within the last 10 minutes) and replaces them by PORT and _DATE.
func normalize(t *testing.T, line string, randomPort bool) string {
	t.Helper()
	if randomPort {
		m := portRE.FindStringSubmatch(line)
		require.NotNil(t, m, "no --master_port in %q", line)
		p, _ := strconv.Atoi(m[1])
		assert.True(t, p >= 10000 && p <= 65535, "master port %d outside 10000-65535", p)
		line = portRE.ReplaceAllString(line, "--master_port PORT")
	}
	for _, m := range dateRE.FindAllStringSubmatch(line, -1) {
		ts, err := time.Parse("2006.01.02-15.04.05", m[1])
		require.NoError(t, err)
		assert.WithinDuration(t, time.Now().UTC(), ts, 10*time.Minute, "date suffix %s", m[1])
	}
	return dateRE.ReplaceAllString(line, "_DATE")
}

// pretrainFixed is the spec's fixed option list of run_pretrain_megatron_llama.sh (§1.2),
// in order, with {placeholders} for the per-run values.
const pretrainFixed = "--save {OUT}/checkpoint/{NAME} --train-data-path {DATA} --lr {LR} --min-lr {MINLR} " +
	"--lr-decay-style linear --adam-beta1 0.9 --adam-beta2 0.95 --weight-decay 0.1 --clip-grad 1.0 --init-method-std 0.006 " +
	"--lr-decay-iters {ITERS} --lr-warmup-iters {WARMUP} --train-iters {ITERS} --micro-batch-size {MBS} --global-batch-size {GBS} " +
	"--num-layers {L} --hidden-size {H} --num-attention-heads {NH} --ffn-hidden-size {F} --seq-length {SEQ} " +
	"--max-position-embeddings {SEQ} --log-interval 1 --eval-interval 10000 --eval-iters 10 --save-interval {SAVE} " +
	"--tensorboard-queue-size 1 --tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard " +
	"--log-batch-size-to-tensorboard --log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size {PP} --no-load-optim --no-load-rng --num-workers 0 --seed 1234 --max-padding-length {PAD} " +
	"--extra-vocab-size {EXTRA} --patch-tokenizer-type LLamaTokenizer --dataset LLama-Pretrain-Raw --swiglu " +
	"--normalization RMSNorm --use-llama2-rotary-position-embeddings --position-embedding-type rope " +
	"--untie-embeddings-and-output-weights --disable-bias-linear"

// finetuneFixed is run_finetune_megatron_llama.sh's fixed option list (§2, Pai's order).
const finetuneFixed = "--load {CK} --save {OUT}/checkpoint/{NAME} --train-data-path {TRAIN} --valid-data-path {VALID} " +
	"--num-layers {L} --hidden-size {H} --num-attention-heads {NH} --seq-length {SEQ} --max-position-embeddings {SEQ} " +
	"--ffn-hidden-size {F} --keep-last --micro-batch-size {MBS} --epochs {EPOCH} --lr {LR} --min-lr {MINLR} " +
	"--lr-decay-style cosine --weight-decay 0.1 --clip-grad 1.0 --adam-beta1 0.9 --adam-beta2 0.95 --init-method-std 0.01 " +
	"--num-workers 0 --log-interval 1 --eval-interval 1000 --eval-iters 10 --save-interval 1000000 --tensorboard-queue-size 1 " +
	"--tensorboard-dir {OUT}/tensorboard/{NAME}_DATE --log-timers-to-tensorboard --log-batch-size-to-tensorboard " +
	"--log-validation-ppl-to-tensorboard --tensor-model-parallel-size {TP} --pipeline-model-parallel-size {PP} --finetune " +
	"--no-load-optim --no-load-rng --seed 1234 --max-padding-length {PAD} --extra-vocab-size {EXTRA} " +
	"--patch-tokenizer-type LLamaTokenizer --dataset LLama-SFT --swiglu --normalization RMSNorm " +
	"--use-llama2-rotary-position-embeddings --position-embedding-type rope --untie-embeddings-and-output-weights --disable-bias-linear"

// generateFixed is run_text_generation_megatron_llama.sh's fixed option list (§6, Pai's order).
const generateFixed = "--micro-batch-size {BS} --num-layers {L} --hidden-size {H} --num-attention-heads {NH} " +
	"--ffn-hidden-size {F} --seq-length {SEQ} --max-position-embeddings {SEQ} --tensor-model-parallel-size {TP} " +
	"--pipeline-model-parallel-size 1 --no-load-optim --no-load-rng --top-p {TOPP} --temperature {TEMP} --top-k {TOPK} " +
	"--input-len {IN} --out-seq-length {OUTLEN} --extra-vocab-size {EXTRA} --max-padding-length {PAD} " +
	"--use-distributed-optimizer --swiglu --use-llama2-rotary-position-embeddings --position-embedding-type rope " +
	"--untie-embeddings-and-output-weights --patch-tokenizer-type LLamaTokenizer --normalization RMSNorm " +
	"--repetition-penalty {PEN} --disable-bias-linear"

// fill replaces {KEY} by kv[KEY] in a template.
func fill(tmpl string, kv map[string]string) string {
	pairs := make([]string, 0, 2*len(kv))
	for k, v := range kv {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

// shape holds the spec's model shapes (§1.2; tiny/small are the layers presets).
var shape = map[string]map[string]string{
	"7B":        {"L": "32", "H": "4096", "NH": "32", "F": "11008"},
	"13B":       {"L": "40", "H": "5120", "NH": "40", "F": "13824"},
	"70B":       {"L": "80", "H": "8192", "NH": "64", "F": "28672"},
	"tiny":      {"L": "2", "H": "64", "NH": "4", "F": "172"},
	"8B":        {"L": "32", "H": "4096", "NH": "32", "F": "14336"}, // Llama-3
	"0.5B":      {"L": "24", "H": "1024", "NH": "16", "F": "2816"},  // Qwen1.5
	"1.8B":      {"L": "24", "H": "2048", "NH": "16", "F": "5504"},  // Qwen1.5
	"32B":       {"L": "64", "H": "5120", "NH": "40", "F": "27392"}, // Qwen1.5, GQA 8
	"mistral7B": {"L": "32", "H": "4096", "NH": "32", "F": "14336"},
	"0.125B":    {"L": "2", "H": "4096", "NH": "32", "F": "14336"}, // Pai's Mixtral evaluation size
	"small":     {"L": "4", "H": "256", "NH": "8", "F": "688"},
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestPretrainDryRun(t *testing.T) {
	f := newFixture(t)
	dsw8 := "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT pretrain "
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		launch string            // launcher part, up to and including "pretrain "
		vals   map[string]string // per-run values of pretrainFixed
		size   string
		tail   string // pr, load, te, ac, do, flash, sp, gqa options
	}{{
		name:   "v1 README example: 7B bf16 sel, SP ignored at TP 1",
		env:    map[string]string{"GPUS_PER_NODE": "8"},
		args:   []string{"dsw", "/workspace/Pai-Megatron-Patch", "7B", "1", "8", "1e-5", "1e-6", "2048", "2048", "0", "bf16", "1", "1", "sel", "true", "true", "true", "false", "100000", f.ds, f.ck7, "10000000000", "100000000", f.out},
		launch: dsw8, size: "7B",
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-7B-lr-1e-5-bs-1-seqlen-2048-pr-bf16-tp-1-pp-1-ac-sel-do-true-sp-true-tt-10000000000-wt-100000000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "610351", "WARMUP": "6103", "MBS": "1", "GBS": "8", "SEQ": "2048", "SAVE": "100000", "TP": "1", "PP": "1", "PAD": "2048", "EXTRA": "0"},
		tail: "--bf16 --load " + f.ck7 + " --recompute-activations --use-distributed-optimizer --use-flash-attn",
	}, {
		name:   "v2 README example: 13B TP 8, 100000000/8/128 iterations",
		env:    map[string]string{"GPUS_PER_NODE": "8"},
		args:   []string{"dsw", "../../", "13B", "1", "8", "1e-5", "1e-6", "128", "128", "0", "bf16", "8", "1", "sel", "true", "false", "false", "false", "100000", f.ds, f.ck13, "100000000", "10000", f.out},
		launch: dsw8, size: "13B",
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-13B-lr-1e-5-bs-1-seqlen-128-pr-bf16-tp-8-pp-1-ac-sel-do-true-sp-false-tt-100000000-wt-10000",
			"DATA": f.ds, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "97656", "WARMUP": "9", "MBS": "1", "GBS": "8", "SEQ": "128", "SAVE": "100000", "TP": "8", "PP": "1", "PAD": "128", "EXTRA": "0"},
		tail: "--bf16 --load " + f.ck13 + " --recompute-activations --use-distributed-optimizer",
	}, {
		name:   "dlc 70B fp8 full recompute, TE twice, SP at TP 8, GQA, from scratch",
		env:    map[string]string{"WORLD_SIZE": "2", "RANK": "1", "KUBERNETES_CONTAINER_RESOURCE_GPU": "8", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "23456"},
		args:   []string{"dlc", "/ignored", "70B", "1", "64", "1e-5", "1e-6", "2048", "2048", "0", "fp8", "8", "2", "full", "true", "true", "true", "true", "100", f.json, "none", "10000000000", "100000000", f.out},
		launch: "golaunch --nproc_per_node 8 --nnodes 2 --node_rank 1 --master_addr 10.0.0.1 --master_port 23456 pretrain ", size: "70B",
		vals: map[string]string{"NAME": "dlc-pretrain-megatron-gpt3-70B-lr-1e-5-bs-1-seqlen-2048-pr-fp8-tp-8-pp-2-ac-full-do-true-sp-true-tt-10000000000-wt-100000000",
			"DATA": f.json, "LR": "1e-5", "MINLR": "1e-6", "ITERS": "76293", "WARMUP": "762", "MBS": "1", "GBS": "64", "SEQ": "2048", "SAVE": "100", "TP": "8", "PP": "2", "PAD": "2048", "EXTRA": "0"},
		tail: "--bf16 --fp8-hybrid --fp8-amax-compute-algo max --fp8-amax-history-len 1024 --transformer-impl transformer_engine " +
			"--transformer-impl transformer_engine --recompute-method uniform --recompute-granularity full --use-distributed-optimizer " +
			"--use-flash-attn --sequence-parallel --group-query-attention --num-query-groups 8",
	}, {
		name:   "tiny fp16 TP 2 SP, no recompute, blended data",
		env:    map[string]string{"GPUS_PER_NODE": "2"},
		args:   []string{"dsw", "x", "tiny", "2", "4", "3e-4", "3e-5", "128", "128", "0", "fp16", "2", "1", "none", "false", "false", "true", "false", "50", "0.3 " + f.ds + " 0.7 " + f.ds2, f.ckTiny, "1024000", "102400", f.out},
		launch: "golaunch --nproc_per_node 2 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT pretrain ", size: "tiny",
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-tiny-lr-3e-4-bs-2-seqlen-128-pr-fp16-tp-2-pp-1-ac-none-do-false-sp-true-tt-1024000-wt-102400",
			"DATA": "0.3 " + f.ds + " 0.7 " + f.ds2, "LR": "3e-4", "MINLR": "3e-5", "ITERS": "2000", "WARMUP": "200", "MBS": "2", "GBS": "4", "SEQ": "128", "SAVE": "50", "TP": "2", "PP": "1", "PAD": "128", "EXTRA": "0"},
		tail: "--fp16 --load " + f.ckTiny + " --sequence-parallel --group-query-attention --num-query-groups 2 --vocab-size 256",
	}, {
		name:   "small PP 2, TE, Megatron checkpoint, extra vocab",
		env:    map[string]string{"GPUS_PER_NODE": "2"},
		args:   []string{"dsw", "x", "small", "1", "2", "1e-4", "1e-5", "256", "256", "64", "bf16", "1", "2", "full", "false", "false", "true", "true", "10", f.ds, f.ckMeg, "51200", "0", f.out},
		launch: "golaunch --nproc_per_node 2 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT pretrain ", size: "small",
		vals: map[string]string{"NAME": "dsw-pretrain-megatron-gpt3-small-lr-1e-4-bs-1-seqlen-256-pr-bf16-tp-1-pp-2-ac-full-do-false-sp-true-tt-51200-wt-0",
			"DATA": f.ds, "LR": "1e-4", "MINLR": "1e-5", "ITERS": "100", "WARMUP": "0", "MBS": "1", "GBS": "2", "SEQ": "256", "SAVE": "10", "TP": "1", "PP": "2", "PAD": "256", "EXTRA": "64"},
		tail: "--bf16 --load " + f.ckMeg + " --transformer-impl transformer_engine --recompute-method uniform --recompute-granularity full " +
			"--group-query-attention --num-query-groups 4 --vocab-size 32000",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, f, "bash", pretrainScript, tc.env, tc.args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			want := tc.launch + fill(pretrainFixed, merge(shape[tc.size], tc.vals, map[string]string{"OUT": f.out})) + " " + tc.tail
			assert.Equal(t, want, normalize(t, strings.TrimSuffix(stdout, "\n"), tc.env["MASTER_PORT"] == ""))
			assert.Empty(t, stderr)
			assert.NoDirExists(t, f.out, "a dry run creates nothing")
		})
	}
}

func TestFinetuneDryRun(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, size, launch, tail string
		env                      map[string]string
		args                     []string
		vals                     map[string]string
	}{{
		name:   "README example: 7B bf16 sel",
		env:    map[string]string{"GPUS_PER_NODE": "8"},
		args:   []string{"dsw", "../..", "7B", "1", "1e-5", "1e-6", "120", "120", "0", "bf16", "1", "1", "sel", "true", "false", "true", "false", f.json, f.json, f.ck7, "2", f.out},
		launch: "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT finetune ", size: "7B",
		vals: map[string]string{"NAME": "dsw-finetune-megatron-llama-7B-lr-1e-5-ep-2-bs-1-seqlen-120-pr-bf16--do-true-tp-1-ac-sel-sp-true",
			"CK": f.ck7, "TRAIN": f.json, "VALID": f.json, "MBS": "1", "EPOCH": "2", "LR": "1e-5", "MINLR": "1e-6", "SEQ": "120", "TP": "1", "PP": "1", "PAD": "120", "EXTRA": "0"},
		tail: "--bf16 --load " + f.ck7 + " --recompute-activations --use-distributed-optimizer",
	}, {
		name:   "dlc 70B fp8 TP 8 SP, no checkpoint: --load none as Pai passes it",
		env:    map[string]string{"WORLD_SIZE": "1", "RANK": "0", "KUBERNETES_CONTAINER_RESOURCE_GPU": "8", "MASTER_ADDR": "master-0", "MASTER_PORT": "29500"},
		args:   []string{"dlc", "../..", "70B", "2", "2e-5", "0", "4096", "4096", "2", "fp8", "8", "1", "none", "false", "true", "true", "true", f.json, f.json, "none", "3", f.out},
		launch: "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr master-0 --master_port 29500 finetune ", size: "70B",
		vals: map[string]string{"NAME": "dlc-finetune-megatron-llama-70B-lr-2e-5-ep-3-bs-2-seqlen-4096-pr-fp8--do-false-tp-8-ac-none-sp-true",
			"CK": "none", "TRAIN": f.json, "VALID": f.json, "MBS": "2", "EPOCH": "3", "LR": "2e-5", "MINLR": "0", "SEQ": "4096", "TP": "8", "PP": "1", "PAD": "4096", "EXTRA": "2"},
		tail: "--bf16 --fp8-hybrid --fp8-amax-compute-algo max --fp8-amax-history-len 1024 --transformer-impl transformer_engine " +
			"--transformer-impl transformer_engine --use-flash-attn --sequence-parallel --group-query-attention --num-query-groups 8",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, f, "bash", finetuneScript, tc.env, tc.args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			want := tc.launch + fill(finetuneFixed, merge(shape[tc.size], tc.vals, map[string]string{"OUT": f.out})) + " " + tc.tail
			assert.Equal(t, want, normalize(t, strings.TrimSuffix(stdout, "\n"), tc.env["MASTER_PORT"] == ""))
			assert.NoDirExists(t, f.out)
		})
	}
}

func TestGenerateDryRun(t *testing.T) {
	f := newFixture(t)
	outFile := filepath.Join(f.dir, "cn_output.txt")
	tests := []struct {
		name, size, launch, tail string
		args                     []string
		vals                     map[string]string
	}{{
		name:   "README example: 13B fp16 top-p 0.85",
		args:   []string{"dsw", "/workspace/PAI-Megatron-Patch", f.ck13, "13B", "1", "1", "1024", "80", "0", "fp16", "0", "512", "512", f.jsonl, outFile, "0.85", "1", "1"},
		launch: "golaunch --nproc_per_node 1 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT generate ", size: "13B",
		vals: map[string]string{"BS": "1", "SEQ": "1024", "TP": "1", "TOPP": "0.85", "TEMP": "1", "TOPK": "0", "IN": "512", "OUTLEN": "512", "EXTRA": "0", "PAD": "80", "PEN": "1"},
		tail: "--load " + f.ck13 + " --text-generate-output-file " + outFile + " --text-generate-input-file " + f.jsonl + " --fp16",
	}, {
		name:   "70B TP 8 greedy bf16, no input file, one process per TP rank",
		args:   []string{"dlc", "x", f.ck70, "70B", "8", "4", "4096", "4096", "0", "bf16", "1", "1", "256", "none", "none", "0", "1.0", "1.2"},
		launch: "golaunch --nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port PORT generate ", size: "70B",
		vals: map[string]string{"BS": "4", "SEQ": "4096", "TP": "8", "TOPP": "0", "TEMP": "1.0", "TOPK": "1", "IN": "1", "OUTLEN": "256", "EXTRA": "0", "PAD": "4096", "PEN": "1.2"},
		tail: "--load " + f.ck70 + " --bf16 --group-query-attention --num-query-groups 8",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, f, "bash", generateScript, nil, tc.args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			want := tc.launch + fill(generateFixed, merge(shape[tc.size], tc.vals)) + " " + tc.tail
			assert.Equal(t, want, normalize(t, strings.TrimSuffix(stdout, "\n"), true))
			assert.NoFileExists(t, outFile)
		})
	}
}

func TestMakePretrainingDatasetDryRun(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(f.dir, "wudao")
	// §5: python preprocess_data.py --input ${INPUT} --language zh --output-prefix
	// ${output_data_dir}/wudao_llamabpe --dataset-impl mmap --patch-tokenizer-type LLamaTokenizer
	// --load ${load_dir} --workers 16 --append-eod
	want := "preprocess --input " + f.in + " --language zh --output-prefix " + out + "/wudao_llamabpe --dataset-impl mmap " +
		"--patch-tokenizer-type LLamaTokenizer --load " + f.tok + " --workers 16 --append-eod\n"
	for name, args := range map[string][]string{
		"2024 order (5 arguments)": {"/workspace/Pai-Megatron-Patch", f.in, "llamabpe", out, f.tok},
		"2023 order (6 arguments)": {"/workspace/Pai-Megatron-Patch/Megatron-LM-main", "/workspace/Pai-Megatron-Patch", f.in, "llamabpe", out, f.tok},
	} {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, code := run(t, f, "bash", datasetScript, nil, args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			assert.Equal(t, want, stdout)
			assert.NoDirExists(t, out)
		})
	}
}

// Pai's other tokenizer names map to its --patch-tokenizer-type and output name; all but
// llamabpe and mistralbpe need the fast tokenizer's tokenizer.json.
func TestMakePretrainingDatasetTokenizers(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(f.dir, "wudao")
	fast := filepath.Join(f.dir, "fast-hf")
	writeFile(t, filepath.Join(fast, "tokenizer.json"), "{}")
	for _, tc := range []struct{ name, typ, prefix, load string }{
		{"qwenbpe", "Qwen2Tokenizer", "wudao_qwenbpe", fast},
		{"mistralbpe", "MistralTokenizer", "SlimPajama_mistralbpe", f.tok},
		{"falconbpe", "FalconTokenizer", "wudao_falconbpe", fast},
		{"starcoderbpe", "StarcoderTokenizerFromHF", "wudao_starcoderbpe", fast},
		{"bloombpe", "BloomTokenizerFromHF", "wudao_bloombpe", fast},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"/workspace/Pai-Megatron-Patch", f.in, tc.name, out, tc.load}
			stdout, stderr, code := run(t, f, "bash", datasetScript, nil, args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			assert.Equal(t, "preprocess --input "+f.in+" --language zh --output-prefix "+out+"/"+tc.prefix+" --dataset-impl mmap "+
				"--patch-tokenizer-type "+tc.typ+" --load "+tc.load+" --workers 16 --append-eod\n", stdout)
			if tc.load == fast {
				args[4] = f.tok // tokenizer.model only
				_, stderr, code = run(t, f, "bash", datasetScript, nil, args...)
				assert.Equal(t, 2, code)
				assert.Contains(t, stderr, "load_dir (arg 5): "+f.tok+" has no tokenizer.json ("+tc.typ+" reads the fast tokenizer's file)")
			}
		})
	}
}

// Pai's documentation runs the scripts with `sh`; on Debian that is dash, and the script
// must hand itself to bash and print the same command.
func TestRunWithSh(t *testing.T) {
	f := newFixture(t)
	args := []string{"dsw", "x", "7B", "1", "8", "1e-5", "1e-6", "2048", "2048", "0", "bf16", "1", "1", "sel", "true", "true", "true", "false", "100000", f.ds, f.ck7, "10000000000", "100000000", f.out}
	env := map[string]string{"GPUS_PER_NODE": "8"}
	viaBash, _, code := run(t, f, "bash", pretrainScript, env, args...)
	require.Equal(t, 0, code)
	viaSh, stderr, code := run(t, f, "sh", pretrainScript, env, args...)
	require.Equal(t, 0, code, "stderr: %s", stderr)
	assert.Equal(t, normalize(t, viaBash, true), normalize(t, viaSh, true))
}

// The dsw process count: GPUS_PER_NODE, else CUDA_VISIBLE_DEVICES entries, else the GPUs
// nvidia-smi -L lists, else 1.
func TestGPUsPerNode(t *testing.T) {
	f := newFixture(t)
	args := []string{"dsw", "x", "tiny", "1", "8", "1e-3", "1e-4", "128", "128", "0", "bf16", "1", "1", "none", "false", "false", "false", "false", "10", f.ds, "none", "1024000", "0", f.out}
	gpuStub := filepath.Join(f.dir, "gpus")
	writeFile(t, filepath.Join(gpuStub, "nvidia-smi"), "#!/bin/sh\n[ \"$1\" = -L ] || exit 1\nfor i in 0 1 2 3; do echo \"GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-$i)\"; done\n")
	require.NoError(t, os.Chmod(filepath.Join(gpuStub, "nvidia-smi"), 0o755))
	for _, tc := range []struct {
		name  string
		env   map[string]string
		stub  string
		nproc string
	}{
		{"CPU machine", nil, "", "1"},
		{"GPUS_PER_NODE", map[string]string{"GPUS_PER_NODE": "2"}, "", "2"},
		{"nvidia-smi -L", nil, gpuStub, "4"},
		{"CUDA_VISIBLE_DEVICES before nvidia-smi", map[string]string{"CUDA_VISIBLE_DEVICES": "1,3"}, gpuStub, "2"},
		{"GPUS_PER_NODE before all", map[string]string{"GPUS_PER_NODE": "8", "CUDA_VISIBLE_DEVICES": "1,3"}, gpuStub, "8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := f
			if tc.stub != "" {
				g.stub = tc.stub
			}
			stdout, stderr, code := run(t, g, "bash", pretrainScript, tc.env, args...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			assert.True(t, strings.HasPrefix(stdout, "golaunch --nproc_per_node "+tc.nproc+" --nnodes 1 "), stdout)
		})
	}
}

func TestUsage(t *testing.T) {
	f := newFixture(t)
	names := map[string][]string{
		pretrainScript:      strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH"),
		finetuneScript:      strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE TRAIN_DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH EPOCH OUTPUT_BASEPATH"),
		generateScript:      strings.Fields("ENV MEGATRON_PATCH_PATH CHECKPOINT_PATH MODEL_SIZE TP BS SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TOP_K INPUT_SEQ_LEN OUTPUT_SEQ_LEN INPUT_FILE OUTPUT_FILE TOP_P TEMPERATURE REPETITION_PENALTY"),
		datasetScript:       strings.Fields("MEGATRON_PATH MEGATRON_PATCH_PATH input_data_dir tokenizer output_data_dir load_dir"),
		withGAScript:        strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE SAVE_INTERVAL DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH"),
		mcorePretrainScript: strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE MOE SAVE_INTERVAL DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_TOKENS WARMUP_TOKENS OUTPUT_BASEPATH"),
		mcoreFinetuneScript: strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE GLOBAL_BATCH_SIZE LR MIN_LR SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE MOE SAVE_INTERVAL DATASET_PATH VALID_DATASET_PATH PRETRAIN_CHECKPOINT_PATH TRAIN_ITERS WARMUP_ITERS OUTPUT_BASEPATH"),
	}
	counts := map[string][]int{pretrainScript: {0, 23, 25}, finetuneScript: {0, 21, 23}, generateScript: {0, 17, 19}, datasetScript: {0, 4, 7},
		withGAScript: {0, 24, 26}, mcorePretrainScript: {0, 24, 26}, mcoreFinetuneScript: {0, 25, 27},
		llama3PretrainScript: {0, 26}, llama3FinetuneScript: {0, 27}, llama3LegacyPretrainScript: {0, 25}, llama3LegacyFinetuneScript: {0, 26},
		baichuan2PretrainScript: {0, 25}, baichuan2GenerateScript: {0, 19}, qwen1PretrainScript: {0, 25}, qwen1GenerateScript: {0, 19}, baichuan2EvaluateScript: {0, 16, 18}, baichuan2EvalHFScript: {0, 9, 11}}
	names[llama3PretrainScript], names[llama3FinetuneScript] = names[mcorePretrainScript], names[mcoreFinetuneScript]
	names[baichuan2PretrainScript], names[baichuan2GenerateScript] = names[pretrainScript], names[generateScript]
	names[qwen1PretrainScript], names[qwen1GenerateScript] = names[pretrainScript], names[generateScript]
	names[baichuan2EvalHFScript] = strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR DATASET_PATH PRETRAIN_CHECKPOINT_PATH")
	names[baichuan2EvaluateScript] = strings.Fields("ENV MEGATRON_PATCH_PATH MODEL_SIZE BATCH_SIZE SEQ_LEN PAD_LEN EXTRA_VOCAB_SIZE PR TP PP AC DO FL SP TE DATASET_PATH PRETRAIN_CHECKPOINT_PATH")
	names[llama3LegacyPretrainScript], names[llama3LegacyFinetuneScript] = names[pretrainScript], names[withGAScript]
	for script, ns := range names {
		for _, n := range counts[script] {
			t.Run(script+"/"+strconv.Itoa(n), func(t *testing.T) {
				args := make([]string, n)
				for i := range args {
					args[i] = "x"
				}
				stdout, stderr, code := run(t, f, "bash", script, nil, args...)
				assert.Equal(t, 2, code)
				assert.Empty(t, stdout)
				assert.Contains(t, stderr, "usage: "+filepath.Base(script))
				assert.Contains(t, stderr, "got "+strconv.Itoa(n))
				for i, name := range ns {
					assert.Contains(t, stderr, name, "usage must name argument %d", i+1)
				}
				assert.Contains(t, stderr, "ignored")
			})
		}
	}
	// The usage lists the arguments in order, each on its numbered line.
	for _, script := range []string{pretrainScript, withGAScript, mcorePretrainScript, mcoreFinetuneScript} {
		_, stderr, _ := run(t, f, "bash", script, nil)
		for i, name := range names[script] {
			assert.Regexp(t, regexp.MustCompile(`(?m)^ +`+strconv.Itoa(i+1)+` `+name+` `), stderr, script)
		}
	}
}

// TestScriptFiles checks that every script is an executable bash script. Reading them here
// also makes go test's result cache, which records the files a test opens, rerun the tests
// when a script changes (bash reads them, not the test binary).
func TestScriptFiles(t *testing.T) {
	for _, pattern := range []string{"run_*.sh", "*_convertor.sh", "llama3/run_*.sh", "qwen1_5/*.sh", "mistral/*.sh", "baichuan2/*.sh", "qwen/*.sh", "lib/*.sh"} {
		files, err := filepath.Glob(pattern)
		require.NoError(t, err)
		for _, p := range files {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			if filepath.Dir(p) == "lib" {
				continue // sourced, not run
			}
			assert.True(t, strings.HasPrefix(string(b), "#!/bin/bash\n"), "%s: first line must be #!/bin/bash", p)
			st, err := os.Stat(p)
			require.NoError(t, err)
			assert.NotZero(t, st.Mode()&0o111, "%s is not executable", p)
		}
	}
}

// with returns a copy of args with the 1-based positions in kv replaced.
func with(args []string, kv map[int]string) []string {
	out := append([]string(nil), args...)
	for i, v := range kv {
		out[i-1] = v
	}
	return out
}

type badCase struct {
	name string
	set  map[int]string    // argument position → value
	env  map[string]string // replaces the base environment when not nil
	want string            // message on stderr
}

// checkBad runs each case and expects exit status 2, the message, no stdout (nothing is
// launched) and nothing created in the output folder.
func checkBad(t *testing.T, f fixture, script string, base []string, baseEnv map[string]string, cases []badCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := baseEnv
			if tc.env != nil {
				env = tc.env
			}
			stdout, stderr, code := run(t, f, "bash", script, env, with(base, tc.set)...)
			assert.Equal(t, 2, code, "stderr: %s", stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, filepath.Base(script)+": "+tc.want)
			assert.NoDirExists(t, f.out)
		})
	}
}

func TestPretrainBadInput(t *testing.T) {
	f := newFixture(t)
	file := filepath.Join(f.dir, "a-file")
	writeFile(t, file, "")
	roDir := filepath.Join(f.dir, "ro")
	require.NoError(t, os.MkdirAll(roDir, 0o555))
	require.NoError(t, os.Chmod(roDir, 0o555))
	noMeta := filepath.Join(f.dir, "empty-ckpt")
	require.NoError(t, os.MkdirAll(noMeta, 0o755))
	staleTracker := filepath.Join(f.dir, "stale-ckpt")
	writeFile(t, filepath.Join(staleTracker, "latest_checkpointed_iteration.txt"), "200\n")
	require.NoError(t, os.MkdirAll(filepath.Join(staleTracker, "iter_0000100"), 0o755))
	onlyBin := filepath.Join(f.dir, "only_bin_document")
	writeFile(t, onlyBin+".bin", "")
	mha70 := filepath.Join(f.dir, "70b-mha")
	writeFile(t, filepath.Join(mha70, "config.json"), `{"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64, "intermediate_size": 28672, "num_key_value_heads": 64}`)

	base := []string{"dsw", "/workspace/Pai-Megatron-Patch", "7B", "1", "8", "1e-5", "1e-6", "2048", "2048", "0", "bf16", "1", "1", "sel", "true", "true", "true", "false", "100000", f.ds, f.ck7, "10000000000", "100000000", f.out}
	env := map[string]string{"GPUS_PER_NODE": "8"}
	_, stderr, code := run(t, f, "bash", pretrainScript, env, base...)
	require.Equal(t, 0, code, "the base arguments must be valid: %s", stderr)

	missing := filepath.Join(f.dir, "nope", "wudao_text_document")
	cases := []badCase{
		{"dataset prefix missing", map[int]string{20: missing}, nil, "DATASET_PATH (arg 20): " + missing + ".bin not found"},
		{"dataset given with .bin", map[int]string{20: missing + ".bin"}, nil, "DATASET_PATH (arg 20): " + missing + ".bin not found (give an existing .json file or a dataset prefix without .bin/.idx)"},
		{"dataset .idx missing", map[int]string{20: onlyBin}, nil, "DATASET_PATH (arg 20): " + onlyBin + ".idx not found"},
		{"blend with a missing part", map[int]string{20: "0.5 " + f.ds + " 0.5 " + missing}, nil, "DATASET_PATH (arg 20): " + missing + ".bin not found"},
		{"checkpoint of 13B for 7B", map[int]string{21: f.ck13}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + f.ck13 + "/config.json has num_hidden_layers 40, but MODEL_SIZE (arg 3) 7B has 32"},
		{"checkpoint of 7B for 13B", map[int]string{3: "13B"}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + f.ck7 + "/config.json has num_hidden_layers 32, but MODEL_SIZE (arg 3) 13B has 40"},
		{"70B checkpoint without GQA", map[int]string{3: "70B", 21: mha70}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + mha70 + "/config.json has num_key_value_heads 64, but MODEL_SIZE (arg 3) 70B has 8"},
		{"checkpoint missing", map[int]string{21: missing}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + missing + " not found (pass none to start from scratch)"},
		{"checkpoint is a file", map[int]string{21: file}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + file + " is not a directory"},
		{"checkpoint folder without metadata", map[int]string{21: noMeta}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + noMeta + " has neither latest_checkpointed_iteration.txt (Megatron) nor config.json (Hugging Face)"},
		{"tracker names a missing iteration", map[int]string{21: staleTracker}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 21): " + staleTracker + "/latest_checkpointed_iteration.txt names iter_0000200, but " + staleTracker + "/iter_0000200 is missing"},
		{"output under a file", map[int]string{24: file + "/out"}, nil, "OUTPUT_BASEPATH (arg 24): " + file + "/out cannot be created: " + file + " is not a directory"},
		{"ENV", map[int]string{1: "local"}, nil, "ENV (arg 1): 'local' is not one of: dsw dlc"},
		{"MODEL_SIZE", map[int]string{3: "7b"}, nil, "MODEL_SIZE (arg 3): '7b' is not one of: 7B 13B 70B tiny small"},
		{"BATCH_SIZE", map[int]string{4: "0"}, nil, "BATCH_SIZE (arg 4): '0' is not a positive integer"},
		{"GLOBAL_BATCH_SIZE octal-looking", map[int]string{5: "08"}, nil, "GLOBAL_BATCH_SIZE (arg 5): '08' is not a positive integer"},
		{"LR", map[int]string{6: "fast"}, nil, "LR (arg 6): 'fast' is not a number"},
		{"MIN_LR", map[int]string{7: "-1e-6"}, nil, "MIN_LR (arg 7): '-1e-6' is not a number"},
		{"SEQ_LEN", map[int]string{8: "2k"}, nil, "SEQ_LEN (arg 8): '2k' is not a positive integer"},
		{"PAD_LEN", map[int]string{9: ""}, nil, "PAD_LEN (arg 9): '' is not a positive integer"},
		{"EXTRA_VOCAB_SIZE", map[int]string{10: "-1"}, nil, "EXTRA_VOCAB_SIZE (arg 10): '-1' is not a non-negative integer"},
		{"PR", map[int]string{11: "fp32"}, nil, "PR (arg 11): 'fp32' is not one of: fp16 bf16 fp8"},
		{"TP zero", map[int]string{12: "0"}, nil, "TP (arg 12): '0' is not a positive integer"},
		{"TP word", map[int]string{12: "two"}, nil, "TP (arg 12): 'two' is not a positive integer"},
		{"PP negative", map[int]string{13: "-1"}, nil, "PP (arg 13): '-1' is not a positive integer"},
		{"AC", map[int]string{14: "selective"}, nil, "AC (arg 14): 'selective' is not one of: full sel none"},
		{"DO", map[int]string{15: "yes"}, nil, "DO (arg 15): 'yes' is not one of: true false"},
		{"FL", map[int]string{16: "True"}, nil, "FL (arg 16): 'True' is not one of: true false"},
		{"SP", map[int]string{17: "1"}, nil, "SP (arg 17): '1' is not one of: true false"},
		{"TE", map[int]string{18: "no"}, nil, "TE (arg 18): 'no' is not one of: true false"},
		{"SAVE_INTERVAL", map[int]string{19: "1e5"}, nil, "SAVE_INTERVAL (arg 19): '1e5' is not a positive integer"},
		{"TRAIN_TOKENS in e-notation", map[int]string{22: "1e10"}, nil, "TRAIN_TOKENS (arg 22): '1e10' is not a non-negative integer (write 10000000000, not 1e10)"},
		{"WARMUP_TOKENS", map[int]string{23: "many"}, nil, "WARMUP_TOKENS (arg 23): 'many' is not a non-negative integer"},
		{"zero iterations", map[int]string{22: "16383"}, nil, "TRAIN_TOKENS (arg 22): 16383 / GLOBAL_BATCH_SIZE 8 / SEQ_LEN 2048 gives 0 training iterations"},
		{"TP does not divide heads", map[int]string{12: "3"}, map[string]string{"GPUS_PER_NODE": "3"}, "TP (arg 12): 3 does not divide the 32 attention heads of MODEL_SIZE 7B"},
		{"TP does not divide 70B groups", map[int]string{3: "70B", 21: f.ck70, 12: "16"}, map[string]string{"GPUS_PER_NODE": "16"}, "TP (arg 12): 16 does not divide the 8 query groups of MODEL_SIZE 70B"},
		{"PP does not divide layers", map[int]string{13: "3"}, map[string]string{"GPUS_PER_NODE": "3"}, "PP (arg 13): 3 does not divide the 32 layers of MODEL_SIZE 7B"},
		{"TP larger than the processes", map[int]string{12: "2"}, map[string]string{"GPUS_PER_NODE": "1"}, "TP (arg 12) × PP (arg 13) = 2 does not divide the 1 processes (NNODES 1 × GPUS_PER_NODE 1; set GPUS_PER_NODE for ENV=dsw)"},
		{"global batch not a multiple", map[int]string{5: "12"}, nil, "GLOBAL_BATCH_SIZE (arg 5): 12 is not a multiple of BATCH_SIZE (arg 4) 1 × data-parallel size 8"},
		{"GPUS_PER_NODE", nil, map[string]string{"GPUS_PER_NODE": "eight"}, "GPUS_PER_NODE='eight' (environment) is not a positive integer"},
		{"dlc without WORLD_SIZE", map[int]string{1: "dlc"}, map[string]string{}, "ENV (arg 1): dlc needs the environment variable WORLD_SIZE (the number of nodes)"},
		{"dlc without MASTER_ADDR", map[int]string{1: "dlc"}, map[string]string{"WORLD_SIZE": "1", "RANK": "0", "KUBERNETES_CONTAINER_RESOURCE_GPU": "8"}, "ENV (arg 1): dlc needs the environment variable MASTER_ADDR"},
		{"dlc with a bad RANK", map[int]string{1: "dlc"}, map[string]string{"WORLD_SIZE": "1", "RANK": "-1", "KUBERNETES_CONTAINER_RESOURCE_GPU": "8"}, "ENV (arg 1): dlc: RANK='-1' is not a valid number (this node's rank)"},
		{"dlc with RANK past the nodes", map[int]string{1: "dlc"}, map[string]string{"WORLD_SIZE": "2", "RANK": "2", "KUBERNETES_CONTAINER_RESOURCE_GPU": "8", "MASTER_ADDR": "m", "MASTER_PORT": "1"}, "ENV (arg 1): dlc: RANK=2 is not below WORLD_SIZE=2"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		cases = append(cases, badCase{"output not writable", map[int]string{24: roDir + "/out"}, nil, "OUTPUT_BASEPATH (arg 24): " + roDir + "/out is not writable"})
	}
	checkBad(t, f, pretrainScript, base, env, cases)

	// Valid variants of the checked arguments still pass: a Megatron checkpoint, none, a raw
	// .json dataset, an output folder that exists.
	require.NoError(t, os.MkdirAll(f.dir+"/existing-out", 0o755))
	for _, set := range []map[int]string{{21: f.ckMeg}, {21: "none"}, {20: f.json}, {24: f.dir + "/existing-out"}} {
		_, stderr, code := run(t, f, "bash", pretrainScript, env, with(base, set)...)
		assert.Equal(t, 0, code, "%v: %s", set, stderr)
	}
}

func TestFinetuneBadInput(t *testing.T) {
	f := newFixture(t)
	base := []string{"dsw", "../..", "7B", "1", "1e-5", "1e-6", "120", "120", "0", "bf16", "1", "1", "sel", "true", "false", "true", "false", f.json, f.json, f.ck7, "2", f.out}
	_, stderr, code := run(t, f, "bash", finetuneScript, nil, base...)
	require.Equal(t, 0, code, "the base arguments must be valid: %s", stderr)
	missing := filepath.Join(f.dir, "alpaca_zh-llama2-train.json")
	checkBad(t, f, finetuneScript, base, nil, []badCase{
		{"train data missing", map[int]string{18: missing}, nil, "TRAIN_DATASET_PATH (arg 18): " + missing + " not found"},
		{"valid data missing", map[int]string{19: missing}, nil, "VALID_DATASET_PATH (arg 19): " + missing + " not found"},
		{"checkpoint of 70B for 7B", map[int]string{20: f.ck70}, nil, "PRETRAIN_CHECKPOINT_PATH (arg 20): " + f.ck70 + "/config.json has num_hidden_layers 80, but MODEL_SIZE (arg 3) 7B has 32"},
		{"EPOCH", map[int]string{21: "0"}, nil, "EPOCH (arg 21): '0' is not a positive integer"},
		{"PR", map[int]string{10: "bfloat16"}, nil, "PR (arg 10): 'bfloat16' is not one of: fp16 bf16 fp8"},
		{"TP", map[int]string{11: "0"}, nil, "TP (arg 11): '0' is not a positive integer"},
		{"output under a file", map[int]string{22: f.json + "/out"}, nil, "OUTPUT_BASEPATH (arg 22): " + f.json + "/out cannot be created"},
	})
}

func TestGenerateBadInput(t *testing.T) {
	f := newFixture(t)
	outFile := filepath.Join(f.dir, "out.txt")
	base := []string{"dsw", "x", f.ck13, "13B", "1", "1", "1024", "80", "0", "fp16", "0", "512", "512", f.jsonl, outFile, "0.85", "1", "1"}
	_, stderr, code := run(t, f, "bash", generateScript, nil, base...)
	require.Equal(t, 0, code, "the base arguments must be valid: %s", stderr)
	missing := filepath.Join(f.dir, "gen-missing.jsonl")
	checkBad(t, f, generateScript, base, nil, []badCase{
		{"checkpoint of 13B for 7B", map[int]string{4: "7B"}, nil, "CHECKPOINT_PATH (arg 3): " + f.ck13 + "/config.json has num_hidden_layers 40, but MODEL_SIZE (arg 4) 7B has 32"},
		{"checkpoint missing", map[int]string{3: missing}, nil, "CHECKPOINT_PATH (arg 3): " + missing + " not found"},
		{"input file missing", map[int]string{14: missing}, nil, "INPUT_FILE (arg 14): " + missing + " not found"},
		{"output file in a file", map[int]string{15: f.jsonl + "/out.txt"}, nil, "OUTPUT_FILE (arg 15): " + f.jsonl + "/out.txt cannot be created: " + f.jsonl + " is not a directory"},
		{"output file is a folder", map[int]string{15: f.dir}, nil, "OUTPUT_FILE (arg 15): " + f.dir + " is a directory"},
		{"fp8", map[int]string{10: "fp8"}, nil, "PR (arg 10): 'fp8' is not one of: fp16 bf16"},
		{"top-k and top-p", map[int]string{11: "5"}, nil, "TOP_K (arg 11) 5 and TOP_P (arg 16) 0.85: one of them must be 0"},
		{"top-p above 1", map[int]string{16: "1.5"}, nil, "TOP_P (arg 16): 1.5 is above 1"},
		{"temperature 0", map[int]string{17: "0.0"}, nil, "TEMPERATURE (arg 17): must be above 0"},
		{"repetition penalty", map[int]string{18: "high"}, nil, "REPETITION_PENALTY (arg 18): 'high' is not a number"},
		{"OUTPUT_SEQ_LEN", map[int]string{13: "0"}, nil, "OUTPUT_SEQ_LEN (arg 13): '0' is not a positive integer"},
		{"TP does not divide heads", map[int]string{5: "3"}, nil, "TP (arg 5): 3 does not divide the 40 attention heads of MODEL_SIZE 13B"},
	})
}

func TestMakePretrainingDatasetBadInput(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(f.dir, "wudao")
	base := []string{"/workspace/Pai-Megatron-Patch", f.in, "llamabpe", out, f.tok}
	_, stderr, code := run(t, f, "bash", datasetScript, nil, base...)
	require.Equal(t, 0, code, "the base arguments must be valid: %s", stderr)
	noTok := filepath.Join(f.dir, "no-tokenizer")
	require.NoError(t, os.MkdirAll(noTok, 0o755))
	missing := filepath.Join(f.dir, "missing")
	checkBad(t, f, datasetScript, base, nil, []badCase{
		{"unsupported Pai tokenizer", map[int]string{3: "jiebabpe"}, nil, "tokenizer (arg 3): 'jiebabpe' is not supported: Pai's JiebaBPETokenizer needs its own tokenizer.json"},
		{"unknown tokenizer", map[int]string{3: "llama"}, nil, "tokenizer (arg 3): 'llama' is not one of: llamabpe qwenbpe mistralbpe falconbpe starcoderbpe bloombpe"},
		{"input missing", map[int]string{2: missing}, nil, "input_data_dir (arg 2): " + missing + " not found"},
		{"output under a file", map[int]string{4: f.json + "/x"}, nil, "output_data_dir (arg 4): " + f.json + "/x cannot be created"},
		{"load_dir missing", map[int]string{5: missing}, nil, "load_dir (arg 5): " + missing + " is not a directory"},
		{"load_dir without tokenizer", map[int]string{5: noTok}, nil, "load_dir (arg 5): " + noTok + " has neither tokenizer.json nor tokenizer.model"},
	})
	// In the 6-argument order the positions shift by one.
	checkBad(t, f, datasetScript, append([]string{"/workspace/Pai-Megatron-Patch/Megatron-LM-main"}, base...), nil, []badCase{
		{"2023 order: input missing", map[int]string{3: missing}, nil, "input_data_dir (arg 3): " + missing + " not found"},
		{"2023 order: tokenizer", map[int]string{4: "glm130bbpe"}, nil, "tokenizer (arg 4): 'glm130bbpe' is not supported: Pai's GLM tokenizers"},
	})
}

// writeStub writes an executable that records its arguments (one per line) and
// CUDA_DEVICE_MAX_CONNECTIONS into dir, prints a line on stdout and one on stderr, and
// exits with code.
func writeStub(t *testing.T, path, dir string, code int) {
	t.Helper()
	writeFile(t, path, "#!/bin/sh\nprintf '%s\\n' \"$@\" > '"+dir+"/args'\n"+
		"printf '%s' \"${CUDA_DEVICE_MAX_CONNECTIONS:-unset}\" > '"+dir+"/cdmc'\n"+
		"echo 'stub stdout'\necho 'stub stderr' >&2\nexit "+strconv.Itoa(code)+"\n")
	require.NoError(t, os.Chmod(path, 0o755))
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// A real run creates Pai's folders, runs golaunch with exactly the dry run's arguments,
// tees its output into log/NAME_DATE.log and exits with golaunch's status.
func TestPretrainRun(t *testing.T) {
	f := newFixture(t)
	rec := t.TempDir()
	stub := filepath.Join(f.dir, "stub-golaunch")
	writeStub(t, stub, rec, 3)
	args := []string{"dsw", "x", "tiny", "1", "2", "1e-3", "1e-4", "128", "128", "0", "bf16", "2", "1", "sel", "true", "false", "true", "false", "10", f.ds, "none", "2560000", "256000", f.out}
	env := map[string]string{"GPUS_PER_NODE": "2"}
	dry, _, code := run(t, f, "bash", pretrainScript, env, args...)
	require.Equal(t, 0, code)

	env = map[string]string{"GPUS_PER_NODE": "2", "GOLAUNCH": stub, "DRY_RUN": "0"}
	stdout, stderr, code := run(t, f, "bash", pretrainScript, env, args...)
	assert.Equal(t, 3, code, "golaunch's exit status comes back; stderr: %s", stderr)
	got := readLines(t, filepath.Join(rec, "args"))
	assert.Equal(t, normalize(t, strings.TrimSuffix(dry, "\n"), true), normalize(t, "golaunch "+strings.Join(got, " "), true))
	b, err := os.ReadFile(filepath.Join(rec, "cdmc"))
	require.NoError(t, err)
	assert.Equal(t, "1", string(b), "CUDA_DEVICE_MAX_CONNECTIONS")

	name := "dsw-pretrain-megatron-gpt3-tiny-lr-1e-3-bs-1-seqlen-128-pr-bf16-tp-2-pp-1-ac-sel-do-true-sp-true-tt-2560000-wt-256000"
	for _, d := range []string{"checkpoint", "log", "tensorboard"} {
		assert.DirExists(t, filepath.Join(f.out, d))
	}
	tb, err := filepath.Glob(filepath.Join(f.out, "tensorboard", name+"_*"))
	require.NoError(t, err)
	require.Len(t, tb, 1)
	assert.Contains(t, got, tb[0], "--tensorboard-dir is the folder created")
	logs, err := filepath.Glob(filepath.Join(f.out, "log", name+"_*.log"))
	require.NoError(t, err)
	require.Len(t, logs, 1)
	assert.Equal(t, filepath.Base(tb[0])+".log", filepath.Base(logs[0]), "log and tensorboard share the date")
	log, err := os.ReadFile(logs[0])
	require.NoError(t, err)
	assert.Equal(t, stdout, string(log), "the console output is tee'd into the log")
	assert.True(t, strings.HasPrefix(stdout, stub+" --nproc_per_node 2 "), stdout)
	assert.Contains(t, stdout, "stub stdout\n")
	assert.Contains(t, stdout, "stub stderr\n")

	// golaunch found on PATH when GOLAUNCH is not set.
	pathDir := filepath.Join(f.dir, "pathbin")
	writeStub(t, filepath.Join(pathDir, "golaunch"), rec, 0)
	g := f
	g.stub = f.stub + string(os.PathListSeparator) + pathDir
	_, stderr, code = run(t, g, "bash", pretrainScript, map[string]string{"GPUS_PER_NODE": "2", "DRY_RUN": "0"}, args...)
	assert.Equal(t, 0, code, stderr)

	// GOLAUNCH that is not an executable stops before creating anything.
	args[23] = filepath.Join(f.dir, "output2")
	_, stderr, code = run(t, f, "bash", pretrainScript, map[string]string{"GPUS_PER_NODE": "2", "DRY_RUN": "0", "GOLAUNCH": filepath.Join(f.dir, "nope")}, args...)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "GOLAUNCH="+filepath.Join(f.dir, "nope")+" is not an executable")
	assert.NoDirExists(t, args[23])
}

func TestMakePretrainingDatasetRun(t *testing.T) {
	f := newFixture(t)
	rec := t.TempDir()
	stub := filepath.Join(f.dir, "stub-preprocess")
	writeStub(t, stub, rec, 0)
	out := filepath.Join(f.dir, "wudao", "sub")
	stdout, stderr, code := run(t, f, "bash", datasetScript, map[string]string{"PREPROCESS": stub, "DRY_RUN": "0"},
		"/workspace/Pai-Megatron-Patch", f.in, "llamabpe", out, f.tok)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, []string{"--input", f.in, "--language", "zh", "--output-prefix", out + "/wudao_llamabpe", "--dataset-impl", "mmap",
		"--patch-tokenizer-type", "LLamaTokenizer", "--load", f.tok, "--workers", "16", "--append-eod"}, readLines(t, filepath.Join(rec, "args")))
	assert.DirExists(t, out, "the output folder is created")
	assert.Regexp(t, `(?m)^0 min [0-9]+ sec$`, stdout, "Pai's elapsed-time line")
}

func TestGenerateRun(t *testing.T) {
	f := newFixture(t)
	rec := t.TempDir()
	stub := filepath.Join(f.dir, "stub-golaunch")
	writeStub(t, stub, rec, 0)
	_, stderr, code := run(t, f, "bash", generateScript, map[string]string{"GOLAUNCH": stub, "DRY_RUN": "0"},
		"dsw", "x", "none", "tiny", "2", "1", "128", "128", "0", "bf16", "1", "0", "16", "none", "none", "0", "1", "1")
	require.Equal(t, 0, code, stderr)
	got := readLines(t, filepath.Join(rec, "args"))
	require.Greater(t, len(got), 11)
	assert.Equal(t, []string{"--nproc_per_node", "2", "--nnodes", "1", "--node_rank", "0", "--master_addr", "localhost", "--master_port"}, got[:9])
	assert.Equal(t, "generate", got[10])
	assert.Equal(t, []string{"--bf16", "--group-query-attention", "--num-query-groups", "2", "--vocab-size", "256"}, got[len(got)-6:])
}
