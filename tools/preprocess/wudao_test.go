package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/wudao"
)

// pyWuDao is Pai's preprocess_wudao2.py run_preprocess over the files given, concatenated
// in the order given (the merge step), written from the patterns in spec/pai-megatron-patch.md §5.
const pyWuDao = `
import json, re, sys
def clean_text(raw):
    raw = re.sub(r'http[s]?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+', '', raw)
    raw = re.sub(r' +', ' ', raw)
    raw = re.sub(u'[^0-9a-zA-Z\u4e00-\u9fa5.\uff0c ,\\-\u3002%\u300a*\u300b/\u2022\u3001&\uff06(\u2014)\uff08+\uff09\uff1a\uff1f!\uff01\u201c\u201d\u00b7]+', '', raw)
    return raw.strip()
out = sys.stdout.buffer
for fn in sys.argv[1:]:
    with open(fn, encoding='utf-8') as f:
        try:
            file_json = json.load(f)
        except ValueError:
            file_json = {}
    for obj in file_json:
        text = clean_text(obj['content'])
        out.write((json.dumps({'instruction': "", 'input': "", 'text': text}, ensure_ascii=False) + '\n').encode('utf-8'))
`

// wudaoRecord is one object of a raw WuDaoCorpora 2.0 file.
type wudaoRecord struct {
	ID        int    `json:"id"`
	UniqueKey string `json:"uniqueKey"`
	TitleUkey string `json:"titleUkey"`
	DataType  string `json:"dataType"`
	Title     string `json:"title"`
	Content   string `json:"content"`
}

// wudaoContents makes n WuDao-like contents: Chinese prose with URLs, runs of spaces,
// newlines, full-width punctuation, emoji and an occasional text that cleans to nothing.
func wudaoContents(n int, seed uint64) []string {
	parts := []string{"今天天气很好", "，", "。", "数据集", "  ", " ", "\n", "\u3000", "https://www.example.com/a?b=1",
		"http://t.cn/xyz", "Pai-Megatron", "《三体》", "“引号”", "😀", "100%", "（注）", "#标签#", "…", "—", "abc DEF 123"}
	rng := rand.New(rand.NewPCG(seed, 11))
	out := make([]string, n)
	for i := range out {
		if rng.IntN(15) == 0 {
			out[i] = "😀😀 \n"
			continue
		}
		var b strings.Builder
		for k := 1 + rng.IntN(30); k > 0; k-- {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		out[i] = b.String()
	}
	return out
}

func writeWuDaoFile(t *testing.T, path string, contents []string) {
	recs := make([]wudaoRecord, len(contents))
	for i, c := range contents {
		recs[i] = wudaoRecord{ID: i, UniqueKey: fmt.Sprintf("k%d", i), TitleUkey: "t", DataType: "博客", Title: "标题 http://x.y", Content: c}
	}
	b, err := json.MarshalIndent(recs, "", " ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// TestWuDaoMatchesPai checks --wudao on a raw WuDao folder: the cleaned jsonl is byte for
// byte what Pai's cleaning and merge produce (run in CPython), the .bin/.idx holds the
// non-empty cleaned contents, and it is byte-identical to running the jsonl mode on Pai's
// cleaned file, i.e. to Pai's two-step pipeline (both in Pai mode).
func TestWuDaoMatchesPai(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "WuDaoCorpus2.0_base_sample")
	require.NoError(t, os.Mkdir(raw, 0o755))
	c1, c2 := wudaoContents(120, 1), wudaoContents(80, 2)
	f1, f2 := filepath.Join(raw, "part-2021009337.json"), filepath.Join(raw, "part-2021009338.json")
	writeWuDaoFile(t, f1, c1)
	writeWuDaoFile(t, f2, c2)

	tok := fakeTok{32000}
	outDir := t.TempDir()
	prefix := filepath.Join(outDir, "wudao_llamabpe")
	jsonl := filepath.Join(outDir, "merged_wudao_cleaned.json")
	sum := run(t, Config{Input: raw, WuDao: true, WuDaoJSONL: jsonl, OutputPrefix: prefix, AppendEOD: true, Workers: 3, Pai: true}, tok)
	assert.Zero(t, sum.Skipped)
	assert.Equal(t, []string{prefix + "_text_document"}, sum.Outputs)

	// Pai's reader filters out the texts that cleaned to nothing
	var cleaned []any
	for _, c := range append(append([]string{}, c1...), c2...) {
		if s := wudao.Clean(c); s != "" {
			cleaned = append(cleaned, s)
		}
	}
	assert.EqualValues(t, len(cleaned), sum.Documents)
	assert.EqualValues(t, 200-len(cleaned), sum.Dropped)
	assert.Greater(t, sum.Dropped, int64(0), "the corpus has texts that clean to nothing")
	assert.Equal(t, normDocs(refDocs(tok, cleaned, true)), normDocs(readDocs(t, prefix+"_text_document")))

	// Megatron semantics (a Megatron --tokenizer-type) keep them as empty documents
	meg := filepath.Join(outDir, "megatron")
	sumM := run(t, Config{Input: raw, WuDao: true, OutputPrefix: meg, AppendEOD: true}, tok)
	assert.EqualValues(t, 200, sumM.Documents)
	assert.EqualValues(t, sum.Dropped, sumM.Empty)

	// jsonl only: no tokenizer needed
	jsonlOnly := filepath.Join(outDir, "only.json")
	sum2, err := Run(context.Background(), Config{Input: raw, WuDao: true, WuDaoJSONL: jsonlOnly, JSONKeys: []string{"text"}, Workers: 2, Partitions: 1, LogInterval: 10, Progress: "none"}, nil, os.Stderr)
	require.NoError(t, err)
	assert.Empty(t, sum2.Outputs)
	assert.Equal(t, fileHash(t, jsonl), fileHash(t, jsonlOnly))

	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3 for Pai's cleaning")
	}
	cmd := exec.Command(py, "-c", pyWuDao, f1, f2)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	want, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	got, err := os.ReadFile(jsonl)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got), "cleaned jsonl vs Pai's")

	paiJSONL := filepath.Join(outDir, "pai_cleaned.jsonl")
	require.NoError(t, os.WriteFile(paiJSONL, want, 0o644))
	two := filepath.Join(outDir, "two_step")
	run(t, Config{Input: paiJSONL, OutputPrefix: two, AppendEOD: true, Pai: true}, tok)
	assert.Equal(t, datasetHash(t, prefix+"_text_document"), datasetHash(t, two+"_text_document"))
}

// TestWuDaoMalformed checks that bad WuDao records and a broken file are reported with
// file and element index while the rest is kept.
func TestWuDaoMalformed(t *testing.T) {
	dir := t.TempDir()
	a := `[{"id": 0, "content": "第一篇"}, {"id": 1, "title": "no content"}, {"id": 2, "content": null},` +
		` {"id": 3, "content": "第四篇 http://a.b"}, "not an object", {"id": 5, "content": "第六篇"}, {"id": 6, "content": "broken" "x"}, {"id": 7, "content": "lost"}]`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.json"), []byte(a), 0o644))
	writeWuDaoFile(t, filepath.Join(dir, "b.json"), []string{"后面的文件 still read"})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.json"), []byte(`[{"content": "最后"}, {"content": "x"}, 12, {"content": "unterminated]`), 0o644))
	tok := fakeTok{32000}
	out := filepath.Join(t.TempDir(), "w")
	sum := run(t, Config{Input: dir, WuDao: true, OutputPrefix: out, AppendEOD: true}, tok)
	want := []any{"第一篇", "第四篇", "第六篇", "lost", "后面的文件 still read", "最后", "x"}
	assert.Equal(t, normDocs(refDocs(tok, want, true)), normDocs(readDocs(t, out+"_text_document")))
	var got []string
	for _, is := range sum.Issues {
		got = append(got, filepath.Base(is.File)+": "+is.Pos)
	}
	assert.Equal(t, []string{"a.json: element 1", "a.json: element 2", "a.json: element 4", "a.json: element 6", "c.json: element 2", "c.json: element 3"}, got)
	assert.Contains(t, sum.Issues[0].Reason, `no "content" field`)
	assert.Contains(t, sum.Issues[3].Reason, "not a JSON object")
	assert.Contains(t, sum.Issues[4].Reason, "not a JSON object")
	assert.Contains(t, sum.Issues[5].Reason, "file unreadable from here on")
}
