package scripts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf/hftest"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/data/indexed"
)

// Pai v2's remaining toolkit scripts (commit 7097866): the legacy-model convertors and the
// pretraining-data scripts.
const (
	mistralHF2MegatronScript = "mistral/hf2megatron_convertor.sh"
	qwenHF2MegatronScript    = "qwen1_5/hf2megatron_convertor.sh"
	megatronDatasetScript    = "run_make_pretraining_dataset_megatron.sh"
	prepareWudaoScript       = "run_prepare_wudao.sh"
	prepareDatasetScript     = "run_prepare_dataset.sh"
)

// hf2megatronPai is the python call of Pai's hf2megatron_convertor.sh (mistral's, and qwen's
// two branches), its flags in its order: the printed convert command is that line with
// `python hf2megatron*.py` replaced by `convert`, {DTYPE} fp16 (Mistral, Qwen1.0) or bf16 (Qwen1.5),
// and --make_vocab_size_divisible_by 1 --megatron-format legacy (scripts/model_convertor.sh's
// mapping) before do_options.
const hf2megatronPai = "convert --load_path {SRC} --save_path {DST} --target_params_dtype {DTYPE} --megatron-path {MEG} " +
	"--target_tensor_model_parallel_size {TP} --target_pipeline_model_parallel_size {PP} --model_name {MN} " +
	"--extra_num_vocabs {EXTRA} --make_vocab_size_divisible_by 1 --megatron-format legacy"

// hfDir writes a Hugging Face config.json with the given shape into dir and returns dir.
func hfDir(t *testing.T, dir string, layers, hidden, heads, ffn, kv int) string {
	t.Helper()
	writeFile(t, filepath.Join(dir, "config.json"), fmt.Sprintf(`{"hidden_size": %d, "intermediate_size": %d, "num_attention_heads": %d, "num_hidden_layers": %d, "num_key_value_heads": %d}`,
		hidden, ffn, heads, layers, kv))
	return dir
}

func TestHF2MegatronDryRun(t *testing.T) {
	f := newFixture(t)
	mistral := hfDir(t, filepath.Join(f.dir, "Mistral-7B-v0.1"), 32, 4096, 32, 14336, 8)
	qwen7 := hfDir(t, filepath.Join(f.dir, "Qwen1.5-7B-Chat"), 32, 4096, 32, 11008, 32)
	qwen32 := hfDir(t, filepath.Join(f.dir, "Qwen1.5-32B"), 64, 5120, 40, 27392, 8)
	qwen10 := hfDir(t, filepath.Join(f.dir, "Qwen-7B"), 32, 4096, 32, 22016, 32)
	release := filepath.Join(f.ckMeg, "release")
	out := filepath.Join(f.dir, "target")
	for _, tc := range []struct {
		name, script string
		args         []string
		dtype        string
		mg2hf        bool
	}{
		{"mistral hf2mg", mistralHF2MegatronScript, []string{"../../..", mistral, out, "4", "1", "mistral-7b", "0", "false"}, "fp16", false},
		{"mistral mg2hf", mistralHF2MegatronScript, []string{"../../..", release + "/", out, "4", "1", "mistral-7b", "0", "true"}, "fp16", true},
		{"mistral extra vocab, PP 2", mistralHF2MegatronScript, []string{"/m", mistral, out, "2", "2", "mistral-7b", "64", "false"}, "fp16", false},
		// Pai's header comments: qwen1.5 hf2mg TP 4 and mg2hf from its release/ folder.
		{"qwen1.5 hf2mg", qwenHF2MegatronScript, []string{"../../../Megatron-LM-231007/", qwen7 + "/", out + "/", "4", "1", "qwen1.5", "0", "false"}, "bf16", false},
		{"qwen1.5-7b hf2mg", qwenHF2MegatronScript, []string{"../../../Megatron-LM-231007/", qwen7, out, "4", "1", "qwen1.5-7b", "0", "false"}, "bf16", false},
		{"qwen1.5 mg2hf", qwenHF2MegatronScript, []string{"../../../Megatron-LM-231007/", release + "/", out + "/", "4", "1", "qwen1.5-7b", "0", "true"}, "bf16", true},
		{"qwen1.5-32b GQA", qwenHF2MegatronScript, []string{"x", qwen32, out, "8", "2", "qwen1.5-32b", "0", "false"}, "bf16", false},
		// Pai's first header example: Qwen1.0 (hf2megatron_qwen1.0.py, fp16), mg2hf.
		{"qwen-14b mg2hf", qwenHF2MegatronScript, []string{"../../../../Megatron-LM/", release + "/", out, "2", "1", "qwen-14b", "0", "true"}, "fp16", true},
		{"qwen-7b hf2mg", qwenHF2MegatronScript, []string{"x", qwen10, out, "2", "1", "qwen-7b", "0", "false"}, "fp16", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := fill(hf2megatronPai, map[string]string{"SRC": tc.args[1], "DST": tc.args[2], "MEG": tc.args[0], "TP": tc.args[3], "PP": tc.args[4],
				"MN": tc.args[5], "EXTRA": tc.args[6], "DTYPE": tc.dtype})
			if tc.mg2hf {
				want += " --convert_checkpoint_from_megatron_to_transformers"
			}
			for _, shell := range []string{"bash", "sh"} {
				stdout, stderr, code := run(t, f, shell, tc.script, nil, tc.args...)
				require.Equal(t, 0, code, "stderr: %s", stderr)
				assert.Equal(t, want+"\n", stdout, shell)
			}
		})
	}
	// The environment: FORCE, the dtype and the format.
	stdout, stderr, code := run(t, f, "bash", qwenHF2MegatronScript, map[string]string{"FORCE": "1", "TARGET_PARAMS_DTYPE": "fp32", "MEGATRON_FORMAT": "mcore"},
		"x", qwen7, out, "1", "1", "qwen1.5-7b", "0", "false")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "--target_params_dtype fp32 ")
	assert.True(t, strings.HasSuffix(stdout, " --megatron-format mcore --force\n"), stdout)
}

func TestHF2MegatronBadInput(t *testing.T) {
	f := newFixture(t)
	mistral := hfDir(t, filepath.Join(f.dir, "Mistral-7B-v0.1"), 32, 4096, 32, 14336, 8)
	qwen7 := hfDir(t, filepath.Join(f.dir, "Qwen1.5-7B"), 32, 4096, 32, 11008, 32)
	missing := filepath.Join(f.dir, "missing")
	base := []string{"x", mistral, f.out, "4", "1", "mistral-7b", "0", "false"}
	checkBad(t, f, mistralHF2MegatronScript, base, nil, []badCase{
		{"model name", map[int]string{6: "llama2-7b"}, nil, "MN (arg 6): 'llama2-7b' is not one of: mistral-7b mistral-tiny mistral-small"},
		{"mixtral", map[int]string{6: "mixtral-8x7b"}, nil, "MN (arg 6): 'mixtral-8x7b': Pai's legacy convertor has no Mixtral"},
		{"TP", map[int]string{4: "0"}, nil, "TP (arg 4): '0' is not a positive integer"},
		{"TP splits query groups", map[int]string{4: "16"}, nil, "TP (arg 4): 16 does not divide the 8 query groups of MN mistral-7b"},
		{"PP", map[int]string{5: "3"}, nil, "PP (arg 5): 3 does not divide the 32 layers of MN mistral-7b"},
		{"extra vocab", map[int]string{7: "-1"}, nil, "EXTRA_VOCAB_SIZE (arg 7): '-1' is not a non-negative integer"},
		{"mg2hf", map[int]string{8: "yes"}, nil, "mg2hf (arg 8): 'yes' is not one of: true false"},
		{"source missing", map[int]string{2: missing}, nil, "SOURCE_CKPT_PATH (arg 2): " + missing + " not found"},
		{"mg2hf source missing", map[int]string{2: missing, 8: "true"}, nil, "SOURCE_CKPT_PATH (arg 2): " + missing + " not found"},
		{"wrong size", map[int]string{2: f.ck7}, nil, "SOURCE_CKPT_PATH (arg 2): " + f.ck7 + "/config.json has intermediate_size 11008, but MN (arg 6) mistral-7b has 14336"},
		{"target under a file", map[int]string{3: f.json + "/x"}, nil, "TARGET_CKPT_PATH (arg 3): " + f.json + "/x cannot be created"},
		{"format", nil, map[string]string{"MEGATRON_FORMAT": "te"}, "MEGATRON_FORMAT='te' (environment) is not one of: legacy mcore"},
	})
	checkBad(t, f, qwenHF2MegatronScript, with(base, map[int]string{2: qwen7, 6: "qwen1.5-7b"}), nil, []badCase{
		{"unknown Qwen name", map[int]string{6: "qwen-7b-chat"}, nil, "MN (arg 6): 'qwen-7b-chat' is not one of: qwen1.5 qwen1.5-0.5b"},
		{"Qwen1.5 size", map[int]string{6: "qwen1.5-110b"}, nil, "MN (arg 6): 'qwen1.5-110b' is not one of: qwen1.5-0.5b"},
		{"Qwen1.5-MoE", map[int]string{6: "qwen1.5-a2.7b"}, nil, "MN (arg 6): 'qwen1.5-a2.7b' is Qwen1.5-MoE"},
		{"wrong size", map[int]string{6: "qwen1.5-14b"}, nil, "SOURCE_CKPT_PATH (arg 2): " + qwen7 + "/config.json has num_hidden_layers 32, but MN (arg 6) qwen1.5-14b has 40"},
		{"TP", map[int]string{4: "3"}, nil, "TP (arg 4): 3 does not divide the 32 attention heads of MN qwen1.5-7b"},
		{"no size: config.json's heads", map[int]string{4: "3", 6: "qwen1.5"}, nil, "TP (arg 4): 3 does not divide the 32 attention heads of MN qwen1.5"},
	})
}

// A dry run of the data scripts prints Pai's python call with preprocess in its place.
func TestToolkitDataDryRun(t *testing.T) {
	f := newFixture(t)
	qwenTok := filepath.Join(f.dir, "Qwen1.5-0.5B")
	writeFile(t, filepath.Join(qwenTok, "tokenizer.json"), "{}")
	in := filepath.Join(f.dir, "merged_wudao_cleaned.json")
	writeFile(t, in, "")
	out := filepath.Join(f.dir, "qwen-datasets")
	raw := filepath.Join(f.dir, "datasets", "wudao_200g")
	require.NoError(t, os.MkdirAll(raw, 0o755))
	for _, tc := range []struct {
		name, script string
		args         []string
		want         string
	}{
		// run_make_pretraining_dataset_megatron.sh's three branches, from Pai's text.
		{"Qwen2Tokenizer", megatronDatasetScript, []string{in, "Qwen2Tokenizer", "text", out, qwenTok},
			"preprocess --input " + in + " --output-prefix " + out + "/mmap_qwen2_datasets --patch-tokenizer-type Qwen2Tokenizer --json-keys text " +
				"--load " + qwenTok + " --workers 2 --partitions 2 --keep-sequential-samples --append-eod\n"},
		{"Qwen2Tokenizer, two keys (Pai's unquoted expansion)", megatronDatasetScript, []string{in, "Qwen2Tokenizer", "text content", out, qwenTok},
			"preprocess --input " + in + " --output-prefix " + out + "/mmap_qwen2_datasets --patch-tokenizer-type Qwen2Tokenizer --json-keys text content " +
				"--load " + qwenTok + " --workers 2 --partitions 2 --keep-sequential-samples --append-eod\n"},
		{"LLamaTokenizer (no --json-keys)", megatronDatasetScript, []string{in, "LLamaTokenizer", "content", out, f.tok},
			"preprocess --input " + in + " --output-prefix " + out + "/mmap_llama_datasets --patch-tokenizer-type LLamaTokenizer " +
				"--load " + f.tok + " --workers 16 --partitions 1 --keep-sequential-samples --append-eod\n"},
		{"glob input", megatronDatasetScript, []string{filepath.Join(f.dir, "*.json"), "LLamaTokenizer", "text", out, f.tok},
			"preprocess --input " + filepath.Join(f.dir, "\\*.json") + " --output-prefix " + out + "/mmap_llama_datasets --patch-tokenizer-type LLamaTokenizer " +
				"--load " + f.tok + " --workers 16 --partitions 1 --keep-sequential-samples --append-eod\n"},
		// preprocess_wudao2.py -i ${data_dir} -k text -p 32, then the merge into wudao/.
		{"prepare wudao", prepareWudaoScript, []string{raw},
			"preprocess --wudao --input " + raw + " --json-keys text --workers 32 --wudao-jsonl " + filepath.Dir(raw) + "/wudao/merged_wudao_cleaned.json\n" +
				"# then: split -l <lines / 10> into " + filepath.Dir(raw) + "/split/NN.jsonl, zstd each into " + filepath.Dir(raw) + "/cleaned_zst/NN.jsonl.zst, remove " +
				filepath.Dir(raw) + "/split and " + filepath.Dir(raw) + "/wudao/merged_wudao_cleaned.json\n"},
		// clean_raw_text.py -i WuDaoCorpus2.0_base_200G -p 32, then the merge and split -l 6000000.
		{"prepare dataset", prepareDatasetScript, []string{raw, out},
			"preprocess --wudao --input " + raw + " --json-keys text --workers 32 --wudao-jsonl " + out + "/merged_wudao_cleaned.json\n" +
				"# then: split -l 6000000 into " + out + "/NN.jsonl, zstd each into " + out + "/NN.jsonl.zst\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, shell := range []string{"bash", "sh"} {
				stdout, stderr, code := run(t, f, shell, tc.script, nil, tc.args...)
				require.Equal(t, 0, code, "stderr: %s", stderr)
				assert.Equal(t, tc.want, stdout, shell)
			}
			assert.NoDirExists(t, out, "a dry run creates nothing")
		})
	}
	// Pai's defaults when run without arguments: its hard-coded paths (relative to the cwd).
	cmd := exec.Command("bash", prepareDatasetScript)
	cmd.Env = append(os.Environ(), "DRY_RUN=1")
	cmd.Dir = t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(cmd.Dir, "WuDaoCorpus2.0_base_200G"), 0o755))
	abs, err := filepath.Abs(prepareDatasetScript)
	require.NoError(t, err)
	cmd.Args[1] = abs
	b, err := cmd.CombinedOutput()
	if _, statErr := os.Stat("/cpfs01"); statErr == nil || err != nil {
		// /cpfs01 must be creatable: only where / is writable (a root container).
		assert.Contains(t, string(b), "output_dir (arg 2): /cpfs01/user/paigpt/wudao")
	} else {
		assert.Contains(t, string(b), "preprocess --wudao --input WuDaoCorpus2.0_base_200G --json-keys text --workers 32 --wudao-jsonl /cpfs01/user/paigpt/wudao/merged_wudao_cleaned.json\n")
	}
}

func TestToolkitDataBadInput(t *testing.T) {
	f := newFixture(t)
	qwenTok := filepath.Join(f.dir, "Qwen1.5-0.5B")
	writeFile(t, filepath.Join(qwenTok, "tokenizer.json"), "{}")
	missing := filepath.Join(f.dir, "missing")
	checkBad(t, f, megatronDatasetScript, []string{f.json, "Qwen2Tokenizer", "text", f.out, qwenTok}, nil, []badCase{
		{"DeepSeek-V2", map[int]string{2: "DeepSeekV2Tokenizer"}, nil, "tokenizer (arg 2): DeepSeekV2Tokenizer is not supported"},
		{"unknown tokenizer", map[int]string{2: "llamabpe"}, nil, "tokenizer (arg 2): 'llamabpe' is not one of: Qwen2Tokenizer LLamaTokenizer"},
		{"input missing", map[int]string{1: missing}, nil, "input_data_dir (arg 1): " + missing + " not found"},
		{"glob matching nothing", map[int]string{1: missing + "/*.jsonl"}, nil, "input_data_dir (arg 1): " + missing + "/*.jsonl not found"},
		{"no keys", map[int]string{3: " "}, nil, "json_keys (arg 3): empty"},
		{"output under a file", map[int]string{4: f.json + "/x"}, nil, "output_data_dir (arg 4): " + f.json + "/x cannot be created"},
		{"load_dir missing", map[int]string{5: missing}, nil, "load_dir (arg 5): " + missing + " is not a directory"},
		{"Qwen2 needs tokenizer.json", map[int]string{5: f.tok}, nil, "load_dir (arg 5): " + f.tok + " has no tokenizer.json"},
	})
	raw := filepath.Join(f.dir, "ds", "wudao_200g")
	require.NoError(t, os.MkdirAll(raw, 0o755))
	checkBad(t, f, prepareWudaoScript, []string{raw}, nil, []badCase{
		{"data_dir missing", map[int]string{1: missing}, nil, "data_dir (arg 1): " + missing + " is not a directory"},
		{"NUM_PIECE", nil, map[string]string{"NUM_PIECE": "0"}, "NUM_PIECE='0' (environment) is not a positive integer"},
	})
	require.NoError(t, os.MkdirAll(filepath.Join(f.dir, "ds", "split"), 0o755))
	checkBad(t, f, prepareWudaoScript, []string{raw}, nil, []badCase{
		{"split folder exists", nil, nil, "data_dir (arg 1): " + filepath.Join(f.dir, "ds", "split") + " exists"},
	})
	checkBad(t, f, prepareDatasetScript, []string{raw, f.out}, nil, []badCase{
		{"data_dir missing", map[int]string{1: missing}, nil, "data_dir (arg 1): " + missing + " is not a directory"},
		{"output under a file", map[int]string{2: f.json + "/x"}, nil, "output_dir (arg 2): " + f.json + "/x cannot be created"},
	})
}

func TestToolkitUsage(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		script string
		names  []string
		counts []int
	}{
		{mistralHF2MegatronScript, strings.Fields("MEGATRON_PATH SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP MN EXTRA_VOCAB_SIZE mg2hf"), []int{0, 7, 9}},
		{qwenHF2MegatronScript, strings.Fields("MEGATRON_PATH SOURCE_CKPT_PATH TARGET_CKPT_PATH TP PP MN EXTRA_VOCAB_SIZE mg2hf"), []int{0, 7, 9}},
		{megatronDatasetScript, strings.Fields("input_data_dir tokenizer json_keys output_data_dir load_dir"), []int{0, 4, 6}},
		{prepareWudaoScript, []string{"data_dir"}, []int{2}},
		{prepareDatasetScript, []string{"data_dir", "output_dir"}, []int{3}},
	} {
		for _, n := range tc.counts {
			t.Run(tc.script+"/"+strconv.Itoa(n), func(t *testing.T) {
				args := make([]string, n)
				for i := range args {
					args[i] = "x"
				}
				stdout, stderr, code := run(t, f, "bash", tc.script, nil, args...)
				assert.Equal(t, 2, code)
				assert.Empty(t, stdout)
				assert.Contains(t, stderr, "usage: "+filepath.Base(tc.script)+" "+strings.Join(tc.names, " ")+"\n")
				assert.Contains(t, stderr, "got "+strconv.Itoa(n))
				for i, name := range tc.names {
					assert.Regexp(t, `(?m)^ +`+strconv.Itoa(i+1)+` `+name+` `, stderr, "usage must number argument %d", i+1)
				}
			})
		}
	}
}

// convertBin builds tools/convert once per test into dir.
func convertBin(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "convert")
	out, err := exec.Command("go", "build", "-o", bin, "../tools/convert").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// hfTensorBytes reads a Hugging Face folder's tensors: name → dtype, shape and bytes.
func hfTensorBytes(t *testing.T, dir string) map[string]string {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	require.NoError(t, err)
	defer set.Close()
	out := map[string]string{}
	for _, n := range set.Names() {
		x, err := set.Tensor(n)
		require.NoError(t, err)
		out[n] = fmt.Sprint(x.DType(), x.Shape()) + string(x.Data)
	}
	return out
}

// The legacy convertors on tiny synthetic Mistral and Qwen2 folders: Hugging Face → Megatron
// (legacy model, TP 2 × PP 2) and back from the release/ folder, bit-identical (fp32 kept).
func TestHF2MegatronRealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds tools/convert")
	}
	f := newFixture(t)
	bin := convertBin(t, f.dir)
	tiny := `"hidden_size": 64, "intermediate_size": 172, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
		"vocab_size": 200, "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2`
	for _, tc := range []struct {
		script, mn, config string
	}{
		{mistralHF2MegatronScript, "mistral-tiny", `{"model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": 4096, "rope_theta": 10000.0, ` + tiny + `}`},
		{qwenHF2MegatronScript, "qwen1.5-tiny", `{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "rope_theta": 1000000.0, ` + tiny + `}`},
		// Pai's Qwen1.0 branch: QWenLMHeadModel (intermediate_size counts w1 and w2).
		{qwenHF2MegatronScript, "qwen-7b", `{"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "hidden_size": 64, "intermediate_size": 344,
			"num_attention_heads": 4, "num_hidden_layers": 2, "kv_channels": 16, "vocab_size": 200, "layer_norm_epsilon": 1e-6,
			"rotary_emb_base": 10000, "rotary_pct": 1.0, "seq_length": 128, "max_position_embeddings": 128, "no_bias": true, "tie_word_embeddings": false}`},
	} {
		t.Run(tc.mn, func(t *testing.T) {
			d := t.TempDir()
			src, meg, back := filepath.Join(d, "hf"), filepath.Join(d, "meg"), filepath.Join(d, "back")
			require.NoError(t, hftest.Write(src, tc.config, 0.02))
			env := map[string]string{"DRY_RUN": "0", "CONVERT_BIN": bin, "TARGET_PARAMS_DTYPE": "fp32"}
			stdout, stderr, code := run(t, f, "bash", tc.script, env, "../../..", src, meg, "2", "2", tc.mn, "0", "false")
			require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
			assert.Regexp(t, `(?m)^0 min [0-9]+ sec$`, stdout, "Pai's elapsed-time line")
			shard, err := os.ReadFile(filepath.Join(meg, "release", "mp_rank_01_001", "model_optim_rng.pt"))
			require.NoError(t, err)
			assert.True(t, bytes.Contains(shard, []byte("language_model")), "the legacy model's keys")
			assert.False(t, bytes.Contains(shard, []byte("decoder.layers")), "no Megatron-Core keys")

			stdout, stderr, code = run(t, f, "bash", tc.script, env, "../../..", filepath.Join(meg, "release")+"/", back, "2", "2", tc.mn, "0", "true")
			require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
			assert.Equal(t, hfTensorBytes(t, src), hfTensorBytes(t, back))
			var cfg map[string]any
			b, err := os.ReadFile(filepath.Join(back, "config.json"))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &cfg))
			var want map[string]any
			require.NoError(t, json.Unmarshal([]byte(tc.config), &want))
			assert.Equal(t, want["model_type"], cfg["model_type"])
		})
	}
}

// The data scripts for real: raw WuDao → cleaned .jsonl.zst pieces (run_prepare_wudao.sh and
// run_prepare_dataset.sh), then the pieces → .bin/.idx with Llama-2's tokenizer
// (run_make_pretraining_dataset_megatron.sh).
func TestToolkitDataRealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds tools/preprocess")
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd is not installed")
	}
	f := newFixture(t)
	bin := filepath.Join(f.dir, "preprocess")
	out, err := exec.Command("go", "build", "-o", bin, "../tools/preprocess").CombinedOutput()
	require.NoError(t, err, "%s", out)
	ds := filepath.Join(f.dir, "datasets")
	raw := filepath.Join(ds, "wudao_200g")
	type rec struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Content string `json:"content"`
	}
	for part := range 2 {
		var recs []rec
		for i := range 12 {
			recs = append(recs, rec{i, "标题", fmt.Sprintf("第%d篇 文章  http://example.com/%d 的内容, 有 english 和 数字 %d。", part, i, i)})
		}
		b, err := json.Marshal(recs)
		require.NoError(t, err)
		writeFile(t, filepath.Join(raw, fmt.Sprintf("part-%d.json", part)), string(b))
	}
	env := map[string]string{"DRY_RUN": "0", "PREPROCESS": bin}
	stdout, stderr, code := run(t, f, "bash", prepareWudaoScript, env, raw)
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	assert.Contains(t, stdout, "24 records, 2 per piece (NUM_PIECE 10)")
	zst, err := filepath.Glob(filepath.Join(ds, "cleaned_zst", "*.jsonl.zst"))
	require.NoError(t, err)
	require.Len(t, zst, 12, "24 lines in pieces of 24/10 = 2 lines")
	assert.Equal(t, filepath.Join(ds, "cleaned_zst", "00.jsonl.zst"), zst[0])
	assert.NoDirExists(t, filepath.Join(ds, "split"))
	assert.NoFileExists(t, filepath.Join(ds, "wudao", "merged_wudao_cleaned.json"))
	first, err := exec.Command("zstd", "-dc", zst[0]).Output()
	require.NoError(t, err)
	assert.Equal(t, `{"instruction": "", "input": "", "text": "第0篇 文章 的内容, 有 english 和 数字 0。"}`+"\n"+
		`{"instruction": "", "input": "", "text": "第0篇 文章 的内容, 有 english 和 数字 1。"}`+"\n", string(first))

	o2 := filepath.Join(f.dir, "paigpt", "wudao")
	stdout, stderr, code = run(t, f, "bash", prepareDatasetScript, env, raw, o2)
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	for _, p := range []string{"merged_wudao_cleaned.json", "00.jsonl", "00.jsonl.zst"} {
		assert.FileExists(t, filepath.Join(o2, p))
	}

	tokJSON, err := filepath.Abs("../testdata/large/tokenizers/llama2/tokenizer.json")
	require.NoError(t, err)
	if _, err := os.Stat(tokJSON); err != nil {
		t.Skipf("%s is missing: run make testdata", tokJSON)
	}
	tok := filepath.Join(f.dir, "Llama-2-7b-hf")
	writeLlama2Tokenizer(t, tokJSON, tok)
	mmap := filepath.Join(f.dir, "mmap")
	stdout, stderr, code = run(t, f, "bash", megatronDatasetScript, env, filepath.Join(o2, "00.jsonl.zst"), "LLamaTokenizer", "text", mmap, tok)
	require.Equal(t, 0, code, "%s\n%s", stdout, stderr)
	assert.Regexp(t, `(?m)^0 min [0-9]+ sec$`, stdout, "Pai's elapsed-time line")
	d, err := indexed.Open(filepath.Join(mmap, "mmap_llama_datasets_text_document"))
	require.NoError(t, err)
	defer d.Close()
	assert.Equal(t, 24, d.NumDocuments(), "one document per record")
	doc, err := d.Document(0)
	require.NoError(t, err)
	require.NotEmpty(t, doc)
	assert.NotEqual(t, int64(1), doc[0], "no BOS (add_special_tokens=False)")
	assert.Equal(t, int64(2), doc[len(doc)-1], "--append-eod: Llama-2's EOS")
}
