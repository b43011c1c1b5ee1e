package wudao

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pyClean is preprocess_wudao2.py's clean_text and output line, written from the patterns
// quoted in spec/pai-megatron-patch.md §5; it reads one JSON string per line.
const pyClean = `
import json, re, sys
def clean_text(raw):
    raw = re.sub(r'http[s]?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+', '', raw)
    raw = re.sub(r' +', ' ', raw)
    raw = re.sub(u'[^0-9a-zA-Z\u4e00-\u9fa5.\uff0c ,\\-\u3002%\u300a*\u300b/\u2022\u3001&\uff06(\u2014)\uff08+\uff09\uff1a\uff1f!\uff01\u201c\u201d\u00b7]+', '', raw)
    return raw.strip()
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    s = json.loads(line)
    out.write((json.dumps({'instruction': "", 'input': "", 'text': clean_text(s)}, ensure_ascii=False) + '\n').encode('utf-8'))
`

// cleanInputs returns the tokenizer fixture corpus, hand-written URL and whitespace cases,
// and random strings over an alphabet built to hit every branch of the three patterns.
func cleanInputs(t *testing.T) []string {
	var in []string
	f, err := os.Open("testdata/corpus.jsonl")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct{ Text string }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec))
		in = append(in, rec.Text)
	}
	require.NoError(t, sc.Err())
	in = append(in,
		"", " ", "   ", "see http://a.b/c?d=1#frag x", "https://x", "http://", "https:// a",
		"httpshttp://x.y z", "hhttp://q", "http://例子.com/路径", "http://a.b/%E4%B8%AD and",
		"text http://a.com/x~y{z}|w `tick` end", "http://A.B/C_D-E!F*G(H),I", "https//x http:/x",
		"a  \n  b", " 　leading ideographic space", "中文，标点。“引号”《书名》·点—破折号",
		"全角＆符号（括号）：问？叹！", "abc\tdef\r\nghi", "tail spaces   ", "\u4dff\u4e00\u9fa5\u9fa6",
		"emoji 😀 in text", `quote " and backslash \ and ctl `+"\x01\x1f\x7f",
	)
	alphabet := []string{"http", "https", "://", "s", ":", "/", " ", "  ", "\t", "\n", "\u3000",
		"a", "Z", "0", "9", "#", "~", "`", "!", "$", "_", "-", ".", "%", "%2F", "@", "&", "+",
		"*", "(", ")", ",", "{", "}", "|", "^", "[", "]", "\"", "\\", "'", ";", "=", "?",
		"中", "文", "\u4dff", "\u4e00", "\u9fa5", "\u9fa6", "，", "。", "《", "》", "•", "、",
		"＆", "—", "（", "）", "：", "？", "！", "“", "”", "·", "😀", "é", "\u00a0", "\x00", "\x1b"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for n := rng.IntN(30); n >= 0; n-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		in = append(in, b.String())
	}
	return in
}

// TestCleanMatchesPython runs Pai's cleaning in CPython and compares every output line byte
// for byte with Clean + AppendCleanedLine.
func TestCleanMatchesPython(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3 for the reference cleaning")
	}
	in := cleanInputs(t)
	var stdin bytes.Buffer
	for _, s := range in {
		b, err := json.Marshal(s)
		require.NoError(t, err)
		stdin.Write(b)
		stdin.WriteByte('\n')
	}
	cmd := exec.Command(py, "-c", pyClean)
	cmd.Stdin = &stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	want := bytes.SplitAfter(out, []byte("\n"))
	want = want[:len(want)-1]
	require.Len(t, want, len(in))
	for i, s := range in {
		got := AppendCleanedLine(nil, "text", Clean(s))
		if !assert.Equal(t, string(want[i]), string(got), "input %d %q", i, s) {
			return
		}
	}
}

func TestCleanInvalidUTF8(t *testing.T) {
	assert.Equal(t, "ab", Clean("a\xff\xfeb"))
}

func TestContent(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{"object", `{"id": 1, "title": "T", "content": "正文 text"}`, "正文 text", ""},
		{"no content", `{"title": "T"}`, "", `no "content" field`},
		{"null content", `{"content": null}`, "", `"content" is null, want a string`},
		{"number content", `{"content": 3}`, "", `"content" is a number, want a string`},
		{"not an object", `"just a string"`, "", "not a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Content([]byte(c.in))
			if c.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}
