package tokenizer

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// expectedRow is one line of a <name>.expected.jsonl fixture (see testdata/README.md).
type expectedRow struct {
	Idx                int      `json:"idx"`
	Category           string   `json:"category"`
	Text               string   `json:"text"`
	IDs                []int    `json:"ids"`
	IDsWithSpecial     []int    `json:"ids_with_special"`
	Decoded            string   `json:"decoded"`
	DecodedWithSpecial *string  `json:"decoded_with_special"`
	DecodedSkipSpecial *string  `json:"decoded_skip_special"`
	Tokens             []string `json:"tokens"`
}

// readExpected decodes a JSONL fixture with a JSON decoder (strings hold control
// characters and U+2028, so the file must not be split on text lines).
func readExpected(t testing.TB, name string) []expectedRow {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	dec := json.NewDecoder(f)
	var rows []expectedRow
	for {
		var r expectedRow
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, name)
		rows = append(rows, r)
	}
	require.NotEmpty(t, rows, name)
	return rows
}

// largeFile returns the path of a large third-party file under testdata/large, or skips.
func largeFile(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join("..", "..", "testdata", "large", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s is missing: run `make testdata` (scripts/testdata.sh) to fetch it", p)
	}
	return p
}

// loadHFFixture loads testdata/large/tokenizers/<name>/tokenizer.json with the fixture's
// tokenizer_config.json (copied into testdata/ as <name>.tokenizer_config.json).
func loadHFFixture(t testing.TB, name string) *HF {
	t.Helper()
	p := largeFile(t, filepath.Join("tokenizers", name, "tokenizer.json"))
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	tok, err := ParseHF(data)
	require.NoError(t, err, p)
	cfg, err := os.ReadFile(filepath.Join("testdata", name+".tokenizer_config.json"))
	require.NoError(t, err)
	require.NoError(t, tok.SetSpecialFromConfig(cfg))
	return tok
}

// mismatchLog reports the first few mismatching rows and counts passes.
type mismatchLog struct {
	t      *testing.T
	name   string
	n, bad int
}

func (m *mismatchLog) check(r expectedRow, what string, ok bool, got, want any) bool {
	if ok {
		return true
	}
	if m.bad < 8 {
		m.t.Errorf("%s idx %d (%s) %s:\n text %q\n got  %v\n want %v", m.name, r.Idx, r.Category, what, r.Text, got, want)
	}
	return false
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHFFixtures(t *testing.T) {
	for _, name := range []string{"llama2", "llama3", "qwen3", "gpt2", "cl100k"} {
		t.Run(name, func(t *testing.T) {
			tok := loadHFFixture(t, name)
			rows := readExpected(t, name+".expected.jsonl")
			m := &mismatchLog{t: t, name: name}
			for _, r := range rows {
				ok := true
				ids := tok.EncodeSpecial(r.Text, false)
				ok = m.check(r, "ids", equalInts(ids, r.IDs), ids, r.IDs) && ok
				idsS := tok.EncodeSpecial(r.Text, true)
				ok = m.check(r, "ids_with_special", equalInts(idsS, r.IDsWithSpecial), idsS, r.IDsWithSpecial) && ok
				require.Equal(t, idsS, tok.Encode(r.Text), "Encode is add_special_tokens=true")
				dec := tok.Decode(r.IDs)
				ok = m.check(r, "decoded", dec == r.Decoded, dec, r.Decoded) && ok
				if r.DecodedWithSpecial != nil {
					d := tok.Decode(r.IDsWithSpecial)
					ok = m.check(r, "decoded_with_special", d == *r.DecodedWithSpecial, d, *r.DecodedWithSpecial) && ok
				}
				if r.DecodedSkipSpecial != nil {
					d := tok.DecodeSkip(r.IDsWithSpecial, true)
					ok = m.check(r, "decoded_skip_special", d == *r.DecodedSkipSpecial, d, *r.DecodedSkipSpecial) && ok
				}
				m.n++
				if !ok {
					m.bad++
				}
			}
			t.Logf("%s: %d/%d rows match (ids, ids_with_special, decodes)", name, m.n-m.bad, m.n)
		})
	}
}

func TestSentencePieceFixtures(t *testing.T) {
	for _, tc := range []struct {
		name, model, expected string
		generic               bool // BPE models: force the whole-text encoder instead of the per-word one
	}{
		{"sp_bpe2k", "testdata/sp_bpe2k.model", "sp-bpe2k.expected.jsonl", false},
		{"sp_bpe2k/generic", "testdata/sp_bpe2k.model", "sp-bpe2k.expected.jsonl", true},
		{"sp_unigram2k", "testdata/sp_unigram2k.model", "sp-unigram2k.expected.jsonl", false},
		{"llama2_tokenizer", "", "llama2-sp.expected.jsonl", false},
		{"llama2_tokenizer/generic", "", "llama2-sp.expected.jsonl", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			model := tc.model
			if model == "" {
				model = largeFile(t, "tokenizers/sentencepiece/llama2_tokenizer.model")
			}
			sp, err := LoadSentencePiece(model)
			require.NoError(t, err)
			if sp.m.modelType == 2 {
				require.NotNil(t, sp.fast, "the per-word BPE encoder should apply to this model")
			}
			if tc.generic {
				sp.fast = nil
			}
			bos := &SentencePieceBOS{sp}
			rows := readExpected(t, tc.expected)
			m := &mismatchLog{t: t, name: tc.name}
			for _, r := range rows {
				ok := true
				ids := sp.Encode(r.Text)
				ok = m.check(r, "ids", equalInts(ids, r.IDs), ids, r.IDs) && ok
				idsB := bos.Encode(r.Text)
				ok = m.check(r, "ids_with_special (add_bos)", equalInts(idsB, r.IDsWithSpecial), idsB, r.IDsWithSpecial) && ok
				pieces := sp.Pieces(r.Text)
				ok = m.check(r, "tokens", equalStrings(pieces, r.Tokens), pieces, r.Tokens) && ok
				dec := sp.Decode(r.IDs)
				ok = m.check(r, "decoded", dec == r.Decoded, dec, r.Decoded) && ok
				m.n++
				if !ok {
					m.bad++
				}
			}
			t.Logf("%s: %d/%d rows match (ids, ids with BOS, pieces, decoded)", tc.name, m.n-m.bad, m.n)
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
