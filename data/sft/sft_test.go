package sft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// fakeTok maps each rune r to 3 + r mod (vocab-3); BOS 1, EOS 2, pad as given.
type fakeTok struct{ vocab, pad int }

func (f fakeTok) Encode(text string) []int {
	var ids []int
	for _, r := range text {
		ids = append(ids, 3+int(r)%(f.vocab-3))
	}
	return ids
}
func (f fakeTok) Decode([]int) string { return "" }
func (f fakeTok) VocabSize() int      { return f.vocab }
func (f fakeTok) EOD() int            { return 2 }
func (f fakeTok) BOS() int            { return 1 }
func (f fakeTok) EOS() int            { return 2 }
func (f fakeTok) Pad() int            { return f.pad }

// pyRef is LLamaRawDataset's preprocessing as spec/pai-megatron-patch.md §5.1 gives it, with
// the slow LlamaTokenizer emulated over an encoder: BOS, the text split on "</s>" (the EOS
// special token), truncation to L and right padding. Arguments: file, L, pad, and either
// "fake VOCAB" (the rune map above) or "sp MODEL" (python3-sentencepiece). Prints the kept
// [input_ids, labels] pairs and the number of records.
const pyRef = `
import json, sys
path, L, PAD, kind, arg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
BOS, EOS = 1, 2
if kind == 'fake':
    V = int(arg)
    enc = lambda s: [3 + ord(c) % (V - 3) for c in s]
else:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=arg)
    enc = lambda s: sp.encode(s) if s else []
def tok(text):
    ids = [BOS]
    for k, part in enumerate(text.split('</s>')):
        if k > 0:
            ids.append(EOS)
        ids += enc(part)
    ids = ids[:L]
    return ids + [PAD] * (L - len(ids))
PROMPT_DICT = {
    'prompt_input': ('Below is an instruction that describes a task, paired with an input that provides further context. '
                     'Write a response that appropriately completes the request.\n\n'
                     '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:'),
    'prompt_no_input': ('Below is an instruction that describes a task. '
                        'Write a response that appropriately completes the request.\n\n'
                        '### Instruction:\n{instruction}\n\n### Response:'),
}
text = open(path, encoding='utf-8').read()
data = json.loads(text) if text.lstrip().startswith('[') else [json.loads(l) for l in text.splitlines() if l.strip()]
sources = [PROMPT_DICT['prompt_input'].format_map(ex) if ex.get('input', '') != '' else PROMPT_DICT['prompt_no_input'].format_map(ex) for ex in data]
key = 'output' if 'output' in data[0].keys() else 'content'
targets = [f"{ex[key]}</s>" for ex in data]
out = []
for i, (s, t) in enumerate(zip(sources, targets)):
    input_ids = tok(s + t)
    source_len = sum(1 for x in tok(s) if x != PAD)
    labels = list(input_ids)
    labels[:source_len] = [PAD] * min(source_len, L)
    if EOS not in input_ids or not data[i][key]:
        continue
    out.append([input_ids, labels])
print(json.dumps({'records': len(data), 'samples': out}))
`

type pyResult struct {
	Records int          `json:"records"`
	Samples [][2][]int32 `json:"samples"`
}

func runPyRef(t *testing.T, args ...string) pyResult {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3 for the reference")
	}
	cmd := exec.Command(py, append([]string{"-c", pyRef}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var res pyResult
	require.NoError(t, json.Unmarshal(out, &res))
	return res
}

// sftRecords are Alpaca-style records covering the template choice (input present, empty,
// missing, not a string), empty and over-long outputs, and Chinese text.
func sftRecords(key string) []map[string]any {
	long := strings.Repeat("很长的回答 long answer. ", 40)
	return []map[string]any{
		{"instruction": "Give three tips for staying healthy.", "input": "", key: "1. Eat well.\n2. Exercise.\n3. Sleep."},
		{"instruction": "翻译成英文", "input": "今天天气很好。", key: "The weather is nice today."},
		{"instruction": "No input key at all", key: "fine"},
		{"instruction": "Empty output is dropped", "input": "x", key: ""},
		{"instruction": "Over-long output is dropped", "input": "", key: long},
		{"instruction": "Numeric input", "input": 5, key: "five"},
		{"instruction": "Null input", "input": nil, key: "null input renders as None"},
		{"instruction": "Trailing spaces  ", "input": " lead", key: " spaced out  "},
		{"instruction": "Short", key: "ok"},
		{"instruction": "Braces {input} and {instruction} stay", "input": "{x}", key: "{output}"},
	}
}

func writeJSONFile(t *testing.T, path string, recs []map[string]any, lines bool) {
	var buf bytes.Buffer
	if lines {
		for _, r := range recs {
			b, _ := json.Marshal(r)
			buf.Write(b)
			buf.WriteByte('\n')
		}
	} else {
		b, _ := json.MarshalIndent(recs, "", "    ")
		buf.Write(b)
	}
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// TestMatchesLLamaRawDataset compares every kept sample with the Python reference, for a
// JSON list and JSON lines, "output" and "content" targets, and several pads and lengths.
func TestMatchesLLamaRawDataset(t *testing.T) {
	cases := []struct {
		name   string
		key    string
		lines  bool
		l      int
		tokPad int // the tokenizer's Pad()
		optPad int // Options.PadID
		pad    int // the pad the reference uses
		repeat int // copies of the records (enough for several goroutines)
	}{
		{"json list, Pai v1 [PAD]=vocab", "output", false, 256, -1, -1, 32000, 1},
		{"jsonl, tokenizer pad", "output", true, 256, 0, -1, 0, 1},
		{"content key, explicit pad", "content", false, 300, -1, 31999, 31999, 1},
		{"short L drops more", "output", false, 160, -1, -1, 32000, 1},
		{"pad equals eos", "output", false, 256, 2, -1, 2, 1},
		{"many records in parallel", "output", true, 200, -1, -1, 32000, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data.json")
			var recs []map[string]any
			for k := 0; k < c.repeat; k++ {
				recs = append(recs, sftRecords(c.key)...)
			}
			writeJSONFile(t, path, recs, c.lines)
			tok := fakeTok{vocab: 32000, pad: c.tokPad}
			ds, err := LoadWithOptions(path, tok, Options{MaxPaddingLength: c.l, PadID: c.optPad})
			require.NoError(t, err)
			ref := runPyRef(t, path, fmt.Sprint(c.l), fmt.Sprint(c.pad), "fake", "32000")
			st := ds.Stats()
			assert.Equal(t, ref.Records, st.Records)
			assert.Equal(t, c.key, st.TargetKey)
			assert.Equal(t, c.pad, ds.PadID())
			require.Equal(t, len(ref.Samples), ds.Len())
			assert.Equal(t, st.Records, st.Kept+st.TooLong+st.EmptyTarget)
			assert.Equal(t, c.repeat, st.EmptyTarget)
			assert.GreaterOrEqual(t, st.TooLong, 1)
			for i, want := range ref.Samples {
				in, lab := ds.Example(i)
				assert.Equal(t, want[0], in, "input_ids of sample %d", i)
				assert.Equal(t, want[1], lab, "labels of sample %d", i)
				s := ds.Sample(i)
				assert.Equal(t, want[0][:c.l-1], s.Tokens)
				assert.Equal(t, want[1][1:], s.Labels)
				for k, v := range want[1][1:] {
					m := float32(0)
					if v != int32(c.pad) {
						m = 1
					}
					require.Equal(t, m, s.LossMask[k], "loss mask %d of sample %d", k, i)
				}
			}
		})
	}
}

func TestTemplates(t *testing.T) {
	r := &record{instruction: "I", input: "N"}
	assert.Equal(t, "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nI\n\n### Input:\nN\n\n### Response:", fill(PromptInput, r))
	assert.Equal(t, "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nI\n\n### Response:", fill(PromptNoInput, r))
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, body, msg string }{
		{"empty list", `[]`, "has no records"},
		{"no target key", `[{"instruction": "a", "answer": "b"}]`, `neither "output" nor "content"`},
		{"missing instruction", `[{"output": "b"}, {"instruction": "a"}]`, `record 0 has no "instruction"`},
		{"missing output later", `[{"instruction": "a", "output": "b"}, {"instruction": "a"}]`, `record 1 has no "output"`},
		{"float field", `[{"instruction": 1.5, "output": "b"}]`, `record 0 field "instruction"`},
		{"bad json", `[{"instruction": "a", "output": "b"`, "want a JSON list of objects"},
		{"bad line", "{\"instruction\": \"a\", \"output\": \"b\"}\nnot json\n", "line 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
			require.NoError(t, os.WriteFile(p, []byte(c.body), 0o644))
			_, err := Load(p, fakeTok{vocab: 100, pad: -1}, 64)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.msg)
			assert.Contains(t, err.Error(), p)
		})
	}
	_, err := Load(filepath.Join(dir, "missing.json"), fakeTok{vocab: 100, pad: -1}, 64)
	assert.Error(t, err)
	_, err = Load(filepath.Join(dir, "missing.json"), fakeTok{vocab: 100, pad: -1}, 1)
	assert.ErrorContains(t, err, "--max-padding-length 1")
}

var _ tokenizer.Tokenizer = fakeTok{}

// noBOSTok is fakeTok whose tokenizer(text) adds no BOS (BLOOM's, Qwen's, Baichuan 2's
// config): the samples start with the prompt.
type noBOSTok struct{ fakeTok }

func (noBOSTok) AddsBOS() bool { return false }

func TestNoBOSTokenizer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.json")
	writeJSONFile(t, path, sftRecords("output"), false)
	withBOS, err := LoadWithOptions(path, fakeTok{vocab: 32000, pad: 0}, Options{MaxPaddingLength: 256, PadID: -1})
	require.NoError(t, err)
	ds, err := LoadWithOptions(path, noBOSTok{fakeTok{vocab: 32000, pad: 0}}, Options{MaxPaddingLength: 256, PadID: -1})
	require.NoError(t, err)
	require.Greater(t, ds.Len(), 0)
	in, _ := ds.Example(0)
	ref, _ := withBOS.Example(0)
	require.Equal(t, int32(1), ref[0])
	require.Equal(t, ref[1:], in[:len(in)-1], "the same ids without the leading BOS")
}
