package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/data/tokenizer"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// chinesePieces is a --new-pieces list: new Chinese words (天气, 公园, 散步 occur in the
// corpus line "今天天气很好，我们去公园散步吧。"), pieces made of new pieces only (人工智能 from
// 人工 and 智能, ▁人工智能 from ▁ and 人工智能), one whose halves never are (▁今天: neither ▁今 nor 今天 is
// a piece), a space-written piece, a duplicate, and pieces already in sp_bpe2k (▁the, 中文).
const chinesePieces = "天气\n公园\n散步\n人工\n智能\n人工智能\n▁人工智能\n▁今天\n 公园\n天气\n▁the\n中文\t-3.5\n\n"

var chineseAdded = []string{"天气", "公园", "散步", "人工", "智能", "人工智能", "▁人工智能", "▁今天", "▁公园"}

type extendCase struct {
	name      string
	fixture   fixtureOpts
	newPieces string // a file under testdata, or the text of a list
	init      string
	padTo     int
}

var extendCases = []extendCase{
	{name: "list-f32-mean", fixture: fixtureOpts{dtype: tensor.F32}, newPieces: chinesePieces, init: "mean"},
	{name: "unigram-model-bf16-sharded-pad64", fixture: fixtureOpts{dtype: tensor.BF16, sharded: true}, newPieces: "sp_unigram2k.model", init: "mean", padTo: 64},
	{name: "list-f32-tied", fixture: fixtureOpts{dtype: tensor.F32, tied: true}, newPieces: chinesePieces, init: "mean"},
	{name: "list-f16-normal", fixture: fixtureOpts{dtype: tensor.F16}, newPieces: chinesePieces, init: "normal", padTo: 8},
}

// runCase builds the fixture, runs the tool through its command line and returns the
// input folder, the output folder and what extend did (rerun on a scratch output).
func runCase(t *testing.T, tc extendCase) (in, out string, s *summary) {
	t.Helper()
	in = makeHFDir(t, tc.fixture)
	pieces := filepath.Join("testdata", tc.newPieces)
	if !strings.HasSuffix(tc.newPieces, ".model") {
		pieces = filepath.Join(t.TempDir(), "pieces.txt")
		require.NoError(t, os.WriteFile(pieces, []byte(tc.newPieces), 0o644))
	}
	out = filepath.Join(t.TempDir(), "out")
	args := []string{"--model-dir", in, "--new-pieces", pieces, "--output-dir", out, "--init", tc.init, "--progress", "bar"}
	if tc.padTo > 0 {
		args = append(args, "--pad-to-multiple-of", strconv.Itoa(tc.padTo))
	}
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(args, &stdout, &stderr))
	assert.Contains(t, stdout.String(), "new pieces added")
	s, err := extend(options{modelDir: in, newPieces: pieces, outputDir: filepath.Join(t.TempDir(), "again"),
		init: tc.init, padTo: tc.padTo, seed: 1234, progress: newProgress("none", nil)})
	require.NoError(t, err)
	return in, out, s
}

func TestExtend(t *testing.T) {
	corpus := loadCorpus(t, filepath.Join("testdata", "sp-bpe2k.expected.jsonl"))
	for _, tc := range extendCases {
		t.Run(tc.name, func(t *testing.T) {
			in, out, s := runCase(t, tc)
			const oldN = 2000
			require.Equal(t, oldN, s.oldVocab)
			if !strings.HasSuffix(tc.newPieces, ".model") {
				var got []string
				for _, p := range s.added {
					got = append(got, p.Piece)
					assert.Equal(t, spPiece{Piece: p.Piece, Score: 0, Type: typeNormal}, p)
				}
				assert.Equal(t, chineseAdded, got)
				assert.Equal(t, 3, s.duplicates) // 天气 again, ▁the, 中文
				assert.Equal(t, []string{"▁今天"}, s.unreachable)
			} else {
				assert.Greater(t, len(s.added), 500)
			}
			newN := oldN + len(s.added)
			rows := newN
			if tc.padTo > 0 {
				rows = (newN + tc.padTo - 1) / tc.padTo * tc.padTo
			}
			require.Equal(t, newN, s.newVocab)
			require.Equal(t, rows, s.rows)

			// Tokenizer: old ids kept, new pieces encode to their new ids.
			oldSP, err := tokenizer.LoadSentencePiece(filepath.Join(in, "tokenizer.model"))
			require.NoError(t, err)
			sp, err := tokenizer.LoadSentencePiece(filepath.Join(out, "tokenizer.model"))
			require.NoError(t, err)
			require.Equal(t, newN, sp.VocabSize())
			unreachable := map[string]bool{}
			for _, p := range s.unreachable {
				unreachable[p] = true
			}
			for k, p := range s.added {
				if !strings.HasPrefix(p.Piece, "\u2581") || p.Type != typeNormal {
					continue
				}
				text := strings.ReplaceAll(p.Piece[len("\u2581"):], "\u2581", " ")
				if unreachable[p.Piece] {
					assert.NotEqual(t, []int{oldN + k}, sp.Encode(text), "%q", p.Piece)
					continue
				}
				assert.Equal(t, []int{oldN + k}, sp.Encode(text), "%q", p.Piece)
				// The averaged ids are the old tokenizer's ids of the piece's text.
				assert.Equal(t, oldSP.Encode(text), s.sources[k], "%q", p.Piece)
			}
			if !strings.HasSuffix(tc.newPieces, ".model") {
				ids := sp.Encode("今天天气很好，我们去公园散步吧。")
				for k := range 3 { // 天气, 公园, 散步
					assert.Contains(t, ids, oldN+k)
				}
				assert.Equal(t, []int{oldN + 6}, sp.Encode("人工智能"))
			}
			unchanged := 0
			for _, c := range corpus {
				norm := "\u2581" + strings.ReplaceAll(c.Text, " ", "\u2581")
				hit := false
				for _, p := range s.added {
					hit = hit || strings.Contains(norm, p.Piece)
				}
				if !hit {
					assert.Equal(t, c.IDs, sp.Encode(c.Text), "%q", c.Text)
					unchanged++
				}
			}
			t.Logf("%d added, %d corpus lines without a new piece encode as before", len(s.added), unchanged)
			assert.Positive(t, unchanged)

			// Weights.
			checkWeights(t, tc, in, out, s)

			// Files: config vocab_size, tokenizer files, no tokenizer.json.
			cfgIn, err := os.ReadFile(filepath.Join(in, "config.json"))
			require.NoError(t, err)
			cfgOut, err := os.ReadFile(filepath.Join(out, "config.json"))
			require.NoError(t, err)
			assert.Equal(t, strings.Replace(string(cfgIn), `"vocab_size": 2000`, `"vocab_size": `+strconv.Itoa(rows), 1), string(cfgOut))
			for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
				a, _ := os.ReadFile(filepath.Join(in, name))
				b, err := os.ReadFile(filepath.Join(out, name))
				require.NoError(t, err)
				assert.Equal(t, a, b, name)
			}
			assert.NoFileExists(t, filepath.Join(out, "tokenizer.json"))

			// The golaunch evaluate path loads it.
			m, gm, err := hf.Load(cpu.New(), out)
			require.NoError(t, err)
			assert.Equal(t, rows, m.Config.VocabSize)
			assert.NotNil(t, gm)

			// The project's LLamaTokenizer reads the folder: tokenizer.model with BOS.
			tok, err := tokenizer.Build(tokenizer.Config{TokenizerType: "LLamaTokenizer", TokenizerModel: out})
			require.NoError(t, err)
			assert.Equal(t, newN, tok.VocabSize())
		})
	}
}

// checkWeights: old rows and every other tensor bit-identical; new rows the float64 mean
// of the source rows rounded to float32 and then to the dtype (mean init), or the same
// N(0, 0.02) draws in both matrices (normal init); padding rows the mean of all old rows.
func checkWeights(t *testing.T, tc extendCase, in, out string, s *summary) {
	setIn, err := safetensors.OpenDir(in)
	require.NoError(t, err)
	defer setIn.Close()
	setOut, err := safetensors.OpenDir(out)
	require.NoError(t, err)
	defer setOut.Close()
	require.Equal(t, setIn.Names(), setOut.Names())
	if tc.fixture.sharded {
		require.Greater(t, len(setOut.Files()), 1)
		assert.FileExists(t, filepath.Join(out, safetensors.IndexFile))
	}
	var normalRows [][]float32
	for _, name := range setIn.Names() {
		a, err := setIn.Tensor(name)
		require.NoError(t, err)
		b, err := setOut.Tensor(name)
		require.NoError(t, err)
		require.Equal(t, a.DType(), b.DType(), name)
		if name != embedName && name != lmHeadName {
			assert.Equal(t, a.Shape(), b.Shape(), name)
			assert.True(t, bytes.Equal(a.Data, b.Data), "%s changed", name)
			continue
		}
		h := a.Dim(1)
		require.Equal(t, []int{s.rows, h}, b.Shape(), name)
		assert.True(t, bytes.Equal(a.Data, b.Data[:len(a.Data)]), "%s: old rows changed", name)
		oldF := a.ToF32()
		newRows := b.Slice(s.oldVocab, s.rows).ToF32()
		mean := func(ids []int) []float32 {
			acc := make([]float64, h)
			for _, id := range ids {
				for j := range h {
					acc[j] += float64(oldF[id*h+j])
				}
			}
			out := make([]float32, h)
			for j := range out {
				out[j] = float32(acc[j] / float64(len(ids)))
			}
			return tensor.FromF32Values(a.DType(), out, h).ToF32()
		}
		switch tc.init {
		case "mean":
			for k, ids := range s.sources {
				require.NotEmpty(t, ids)
				assert.Equal(t, mean(ids), newRows[k*h:(k+1)*h], "%s row %d (%q from %v)", name, s.oldVocab+k, s.added[k].Piece, ids)
			}
			all := make([]int, s.oldVocab)
			for i := range all {
				all[i] = i
			}
			for k := s.newVocab; k < s.rows; k++ {
				assert.Equal(t, mean(all), newRows[(k-s.oldVocab)*h:(k-s.oldVocab+1)*h], "%s padding row %d", name, k)
			}
		case "normal":
			normalRows = append(normalRows, newRows)
			var sum, sq float64
			for _, v := range newRows {
				sum += float64(v)
				sq += float64(v) * float64(v)
			}
			n := float64(len(newRows))
			std := math.Sqrt(sq/n - (sum/n)*(sum/n))
			assert.InDelta(t, 0.02, std, 0.002, "%s: std of the new rows", name)
		}
	}
	if tc.init == "normal" {
		require.Len(t, normalRows, 2)
		assert.Equal(t, normalRows[0], normalRows[1], "embedding and output share the N(0, 0.02) rows")
	}
}
