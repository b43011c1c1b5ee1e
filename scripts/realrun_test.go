package scripts

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

var evalLossRE = regexp.MustCompile(`iteration +\d+/ +\d+ \| lm loss \(per data-parallel rank\): [^|]+\|`)

// legacyPretrainCheckpoint prepares a real run of a legacy pretraining script (24 Pai
// arguments) on the tiny model: a corpus, and a checkpoint of 10 iterations saved by the
// script's own printed command (the tokenizer given directly, then copied beside it as a
// converted checkpoint carries it). args gives the script's arguments for a checkpoint to
// load and a token budget.
func legacyPretrainCheckpoint(t *testing.T, script string) (f fixture, ds, ck string, env map[string]string, args func(load string, tokens int) []string) {
	f, bin, tokJSON := realRunSetup(t)
	ds = filepath.Join(f.dir, "corpus_text_document")
	writeCorpus(t, ds)
	args = func(load string, tokens int) []string {
		return []string{"dsw", "x", "tiny", "1", "2", "1e-3", "1e-4", "128", "128", "0", "bf16", "1", "1", "sel",
			"false", "false", "false", "false", "10", ds, load, strconv.Itoa(tokens), "256", f.out}
	}
	env = map[string]string{"GPUS_PER_NODE": "1", "GOLAUNCH": bin}
	dry, stderr, code := run(t, f, "bash", script, env, args("none", 2560)...)
	require.Equal(t, 0, code, stderr)
	ck = filepath.Join(f.dir, "ck")
	out := runPrinted(t, bin, dry, "--tokenizer-model", filepath.Dir(tokJSON), "--save", ck, "--save-interval", "1000")
	require.Contains(t, out, "iteration       10/      10")
	writeLlama2Tokenizer(t, tokJSON, ck)
	return f, ds, ck, env, args
}

// TestPretrainRealRun runs run_pretrain_megatron_llama.sh with the real golaunch, as a
// user would: Pai's legacy script passes no dropout flags (Megatron's 0.1 attention and
// hidden dropout apply) and reads LLamaTokenizer's tokenizer.json from the checkpoint it
// loads. The checkpoint comes from the script's own command with --save; the script then
// resumes from it and trains to TRAIN_TOKENS.
func TestPretrainRealRun(t *testing.T) {
	f, ds, ck, env, args := legacyPretrainCheckpoint(t, pretrainScript)
	env["DRY_RUN"] = "0"
	stdout, stderr, code := run(t, f, "bash", pretrainScript, env, args(ck, 5120)...)
	for try := 0; code != 0 && try < 2 && portTaken(stdout+stderr); try++ {
		stdout, stderr, code = run(t, f, "bash", pretrainScript, env, args(ck, 5120)...)
	}
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "successfully loaded checkpoint from "+ck)
	require.Contains(t, stdout, "iteration       20/      20")
	require.Contains(t, stdout, "successfully saved checkpoint from iteration      20")

	// Pai's Megatron-Core fine-tuning script on raw JSON from that checkpoint: it passes no
	// --finetune, so the run continues the checkpoint's iteration count to TRAIN_ITERS.
	var recs []string
	for i := range 100 { // enough for the final evaluation: --eval-iters 10 × 8 samples
		recs = append(recs, `{"instruction": "Add `+strconv.Itoa(i%9)+` and 2.", "input": "", "output": "It is `+strconv.Itoa(i%9+2)+`."}`)
	}
	sft := filepath.Join(f.dir, "alpaca.json")
	require.NoError(t, os.WriteFile(sft, []byte("["+strings.Join(recs, ",")+"]"), 0o644))
	ftArgs := []string{"dsw", "x", "tiny", "1", "8", "1e-3", "1e-4", "96", "96", "0", "bf16", "1", "1", "none",
		"false", "false", "false", "false", "false", "100", sft, sft, ck, "24", "1", f.out}
	stdout, stderr, code = run(t, f, "bash", mcoreFinetuneScript, env, ftArgs...)
	for try := 0; code != 0 && try < 2 && portTaken(stdout+stderr); try++ {
		stdout, stderr, code = run(t, f, "bash", mcoreFinetuneScript, env, ftArgs...)
	}
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "successfully loaded checkpoint from "+ck)
	require.Contains(t, stdout, "iteration       24/      24")
	require.Contains(t, stdout, "iteration       11/      24", "it goes on from the checkpoint's iteration 10")
	require.NotContains(t, stdout, "iteration       10/")

	// Pai's Mistral fine-tuning script (Mistral's flags on the tiny Llama-shaped model): no
	// --dataloader-type, so Megatron's single sampler goes on from the checkpoint's 20
	// consumed samples through the records.
	ftArgs[2], ftArgs[18] = "tiny", "false"
	ftArgs[23] = "12"
	stdout, stderr, code = run(t, f, "bash", mistralFinetuneScript, env, ftArgs...)
	for try := 0; code != 0 && try < 2 && portTaken(stdout+stderr); try++ {
		stdout, stderr, code = run(t, f, "bash", mistralFinetuneScript, env, ftArgs...)
	}
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "iteration       12/      12")
	require.Contains(t, stdout, "consumed samples:           36")

	// Pai's evaluation scripts on that checkpoint and the records, on 2 workers (DP 2,
	// micro-batch 2): 100 samples, 25 micro-batches per rank, a loss for each.
	env["GPUS_PER_NODE"] = "2"
	evalLosses := map[string]string{}
	for _, script := range []string{evaluateScript, mcoreEvaluateScript} {
		evArgs := []string{"dsw", "x", "tiny", "2", "96", "96", "0", "bf16", "1", "1", "sel", "false", "false", "false", "false", sft, ck}
		stdout, stderr, code = run(t, f, "bash", script, env, evArgs...)
		for try := 0; code != 0 && try < 2 && portTaken(stdout+stderr); try++ {
			stdout, stderr, code = run(t, f, "bash", script, env, evArgs...)
		}
		require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
		require.Contains(t, stdout, "evaluate-raw --valid-data-path "+sft, script)
		require.Contains(t, stdout, "total number of samples: 100", script)
		require.Regexp(t, `iteration +25/ +25 \| lm loss \(per data-parallel rank\): \S+ \S+ \|`, stdout, script)
		require.Contains(t, stdout, "done :-)", script)
		evalLosses[script] = strings.Join(evalLossRE.FindAllString(stdout, -1), "\n")
	}
	require.NotEmpty(t, evalLosses[evaluateScript])
	require.Equal(t, evalLosses[evaluateScript], evalLosses[mcoreEvaluateScript], "the same checkpoint and samples")

	// Pai's MoE path: the checkpoint to Hugging Face, upcycled to 4 experts at EP 2 (every
	// expert the dense MLP), then the Llama-2 mcore pretraining script with MOE=true (top-1,
	// 4 experts, EP 2) on 2 workers.
	conv := filepath.Join(f.dir, "bin", "convert")
	convOut, err := exec.Command("go", "build", "-o", conv, "../tools/convert").CombinedOutput()
	require.NoError(t, err, "%s", convOut)
	hf, moe := filepath.Join(f.dir, "hf"), filepath.Join(f.dir, "moe")
	for _, a := range [][]string{
		{"--load_path", ck, "--save_path", hf, "--convert_checkpoint_from_megatron_to_transformers"},
		{"--load_path", hf, "--save_path", moe, "--num-experts", "4", "--moe-router-topk", "1", "--target_expert_model_parallel_size", "2", "--make_vocab_size_divisible_by", "1"},
	} {
		out, err := exec.Command(conv, append(a, "--progress", "none")...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	require.DirExists(t, filepath.Join(moe, "release", "mp_rank_00_001"))

	// Pai's Hugging Face evaluation of the converted folder: its own model on the same
	// samples (LLama-SFT samples of PAD_LEN 97 are the Pretrain-Raw samples of 96 + 1) gives
	// the Megatron checkpoint's losses.
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(ck, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(hf, f), data, 0o644))
	}
	hfArgs := []string{"dsw", "x", "tiny", "2", "96", "97", "0", "bf16", sft, hf}
	stdout, stderr, code = run(t, f, "bash", hfEvaluateScript, env, hfArgs...)
	for try := 0; code != 0 && try < 2 && portTaken(stdout+stderr); try++ {
		stdout, stderr, code = run(t, f, "bash", hfEvaluateScript, env, hfArgs...)
	}
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "evaluate-raw --transformer-type huggingface")
	require.Equal(t, evalLosses[evaluateScript], strings.Join(evalLossRE.FindAllString(stdout, -1), "\n"))
	ptArgs := []string{"dsw", "x", "tiny", "1", "4", "1e-3", "1e-4", "128", "128", "0", "bf16", "1", "1", "sel",
		"false", "false", "false", "false", "true", "10", ds, moe, "2560", "256", f.out}
	env["GPUS_PER_NODE"] = "2"
	stdout, stderr, code = run(t, f, "bash", mcorePretrainScript, env, ptArgs...)
	for try := 0; code != 0 && try < 2 && portTaken(stdout+stderr); try++ {
		stdout, stderr, code = run(t, f, "bash", mcorePretrainScript, env, ptArgs...)
	}
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "--num-experts 4 --expert-model-parallel-size 2")
	require.Contains(t, stdout, "successfully loaded checkpoint from "+moe)
	require.Contains(t, stdout, "iteration        5/       5")
}

// portTaken reports golaunch's error for a rendezvous port another process holds.
func portTaken(out string) bool { return strings.Contains(out, "address already in use") }

// realRunSetup skips a real run under -short or without Llama-2's tokenizer (make testdata),
// and builds golaunch into the fixture: the fixture, the binary and the tokenizer.json path.
func realRunSetup(t *testing.T) (f fixture, bin, tokJSON string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds golaunch and trains")
	}
	tokJSON, err := filepath.Abs("../testdata/large/tokenizers/llama2/tokenizer.json")
	require.NoError(t, err)
	if _, err := os.Stat(tokJSON); err != nil {
		t.Skipf("%s is missing: run make testdata", tokJSON)
	}
	f = newFixture(t)
	bin = filepath.Join(f.dir, "bin", "golaunch")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/golaunch").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return f, bin, tokJSON
}

// realRunTools builds golaunch and tools/convert for a real run of a model's scripts on
// the CPU (skipped with -short).
func realRunTools(t *testing.T) (f fixture, golaunch, convert string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds golaunch and tools/convert, and trains")
	}
	f = newFixture(t)
	golaunch = filepath.Join(f.dir, "bin", "golaunch")
	out, err := exec.Command("go", "build", "-o", golaunch, "../cmd/golaunch").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return f, golaunch, convertBin(t, f.dir)
}

// requireTinyRun checks a real run of a model's pretraining script on the tiny model:
// resumed from ck, 10 iterations, saved; then runs its generation script from ck (greedy,
// the fixture's one query, EXTRA_VOCAB_SIZE extra) and requires the tokenizer type typ in
// its command and one output line starting with the query (no BOS).
func requireTinyRun(t *testing.T, f fixture, bin, pretrainOut, generateScript, ck, extra, typ string) {
	t.Helper()
	require.Contains(t, pretrainOut, "successfully loaded checkpoint from "+ck)
	require.Contains(t, pretrainOut, "iteration       10/      10")
	require.Contains(t, pretrainOut, "successfully saved checkpoint from iteration      10")
	genOut := filepath.Join(f.dir, "gen", "out.txt")
	stdout := runReal(t, f, generateScript, map[string]string{"DRY_RUN": "0", "GOLAUNCH": bin},
		"dsw", "x", ck, "tiny", "1", "1", "64", "64", extra, "bf16", "1", "8", "8", f.jsonl, genOut, "0", "1", "1")
	require.Contains(t, stdout, "--patch-tokenizer-type "+typ)
	lines := readLines(t, genOut)
	require.Len(t, lines, 1)
	require.True(t, strings.HasPrefix(lines[0], "hello"), "no BOS: %q", lines[0])
}

// writeCorpus writes a .bin/.idx dataset at prefix: 200 documents of repeated patterns the
// tiny model can learn.
func writeCorpus(t *testing.T, prefix string) {
	t.Helper()
	b, err := indexed.NewBuilder(prefix+".bin", indexed.Uint16)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		doc := make([]int32, 40+r.IntN(80))
		for i := range doc {
			doc[i] = int32(100 + (i*7)%50)
		}
		require.NoError(t, b.AddItem(doc))
		b.EndDocument()
	}
	require.NoError(t, b.Finalize(prefix+".idx"))
}

var shellEscapeRE = regexp.MustCompile(`\\(.)`)

// runPrinted runs the golaunch command a script printed with DRY_RUN=1 (its first word
// replaced by bin, extra appended) and returns its output. The script's random port may be
// taken: it retries on another, as a user would.
func runPrinted(t *testing.T, bin, dry string, extra ...string) string {
	t.Helper()
	cmdline := strings.Fields(strings.TrimSpace(dry))
	for i, w := range cmdline { // undo printf %q's escapes (--split 99\,1\,0); no word has blanks
		cmdline[i] = shellEscapeRE.ReplaceAllString(w, "$1")
	}
	var out []byte
	var err error
	for try := 0; ; try++ {
		cmd := exec.Command(bin, append(cmdline[1:], extra...)...)
		cmd.Env = append(os.Environ(), "GOLAUNCH_GRACE_PERIOD=5")
		if out, err = cmd.CombinedOutput(); err == nil || try == 2 || !portTaken(string(out)) {
			break
		}
		cmdline = strings.Fields(portRE.ReplaceAllString(strings.Join(cmdline, " "), "--master_port "+strconv.Itoa(20000+try*7919)))
	}
	require.NoError(t, err, "%s", out)
	return string(out)
}

// runReal runs a script for real (DRY_RUN=0 in env), again while its random port is taken,
// requires exit status 0 and returns its standard output.
func runReal(t *testing.T, f fixture, script string, env map[string]string, args ...string) string {
	t.Helper()
	stdout, stderr, code := run(t, f, "bash", script, env, args...)
	for try := 0; code != 0 && try < 2 && portTaken(stdout+stderr); try++ {
		stdout, stderr, code = run(t, f, "bash", script, env, args...)
	}
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	return stdout
}

// writeLlama2Tokenizer puts Llama-2's tokenizer.json (tokJSON) into a checkpoint folder with
// Llama-2's special tokens, which a converted checkpoint carries beside tokenizer.json.
func writeLlama2Tokenizer(t *testing.T, tokJSON, dir string) {
	t.Helper()
	data, err := os.ReadFile(tokJSON)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"),
		[]byte(`{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}`), 0o644))
}
