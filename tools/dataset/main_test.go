package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Megatron fixtures live in data/gpt/testdata (copied from shared/fixtures/megatron).
const fixtures = "../../data/gpt/testdata"

type fixtureConfig struct {
	Dataset string `json:"dataset"`
	Config  struct {
		RandomSeed         uint32 `json:"random_seed"`
		SequenceLength     int    `json:"sequence_length"`
		Split              string `json:"split"`
		Sizes              []*int `json:"sizes_passed_to_builder"`
		IndexSplit         string `json:"index_split"`
		DropLastValidation bool   `json:"drop_last_partial_validation_sequence"`
	} `json:"config"`
	Samples []struct {
		Idx    int     `json:"idx"`
		Tokens []int64 `json:"tokens"`
	} `json:"samples"`
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func (f *fixtureConfig) args() []string {
	var ns []string
	for _, s := range f.Config.Sizes {
		if s == nil {
			ns = append(ns, "")
		} else {
			ns = append(ns, fmt.Sprint(*s))
		}
	}
	a := []string{"--data-path", filepath.Join(fixtures, f.Dataset), "--split", f.Config.Split,
		"--seq-length", fmt.Sprint(f.Config.SequenceLength), "--seed", fmt.Sprint(f.Config.RandomSeed),
		"--num-samples", strings.Join(ns, ",")}
	if !f.Config.DropLastValidation {
		a = append(a, "--no-drop-last-partial-validation-sequence")
	}
	return a
}

func loadConfigs(t *testing.T) map[string]*fixtureConfig {
	dirs, err := filepath.Glob(filepath.Join(fixtures, "gpt", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, dirs, "fixtures missing under %s", fixtures)
	out := map[string]*fixtureConfig{}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "config.json"))
		require.NoError(t, err)
		var f fixtureConfig
		require.NoError(t, json.Unmarshal(b, &f))
		out[d] = &f
	}
	return out
}

// TestIndicesMatchMegatron runs `dataset indices` with each fixture's Megatron inputs and
// requires the recorded split's three .npy files to equal Megatron's cache files.
func TestIndicesMatchMegatron(t *testing.T) {
	for dir, f := range loadConfigs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := t.TempDir()
			stdout, stderr, code := runCLI(t, append([]string{"indices", "--out", out}, f.args()...)...)
			require.Equal(t, 0, code, stderr)
			assert.Contains(t, stdout, f.Config.IndexSplit)
			for _, kind := range []string{"document_index", "sample_index", "shuffle_index"} {
				want, err := os.ReadFile(filepath.Join(dir, kind+".npy"))
				require.NoError(t, err)
				got, err := os.ReadFile(filepath.Join(out, f.Config.IndexSplit, kind+".npy"))
				require.NoError(t, err)
				assert.Equal(t, want, got, kind)
			}
		})
	}
}

// TestShowMatchesMegatron prints the recorded samples and finds Megatron's tokens in the output.
func TestShowMatchesMegatron(t *testing.T) {
	for dir, f := range loadConfigs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			for _, s := range f.Samples[:2] {
				stdout, stderr, code := runCLI(t, append([]string{"show", "--split-name", f.Config.IndexSplit,
					"--start", fmt.Sprint(s.Idx), "--count", "1"}, f.args()...)...)
				require.Equal(t, 0, code, stderr)
				assert.Contains(t, stdout, fmt.Sprintf("tokens    %v\n", s.Tokens))
			}
		})
	}
}

func TestInfo(t *testing.T) {
	stdout, stderr, code := runCLI(t, "info", filepath.Join(fixtures, "indexed", "b_int32"))
	require.Equal(t, 0, code, stderr)
	// b_int32: 12 documents, 26 sequences, 490 tokens, int32 (fixture README table).
	for _, want := range []string{"dtype      int32 (code 4", "documents  12\n", "sequences  26\n", "tokens     490\n"} {
		assert.Contains(t, stdout, want)
	}
}

func TestErrors(t *testing.T) {
	prefix := filepath.Join(fixtures, "indexed", "a_uint16")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"info", "/nonexistent/x"}, "/nonexistent/x.idx"},
		{[]string{"indices", "--out", t.TempDir(), "--data-path", prefix, "--seq-length", "16", "--num-samples", "1,2,3,4"}, "--num-samples"},
		{[]string{"indices", "--out", t.TempDir(), "--data-path", prefix, "--seq-length", "16", "--num-samples", "x"}, "--num-samples"},
		{[]string{"indices", "--out", t.TempDir(), "--data-path", prefix, "--seq-length", "1"}, "--seq-length"},
		{[]string{"indices", "--out", t.TempDir(), "--data-path", prefix, "--seq-length", "16", "--split", "0,0,0"}, "--split"},
		{[]string{"show", "--data-path", prefix, "--seq-length", "16", "--split", "1,0,0", "--split-name", "valid"}, "valid split no sequences"},
		{[]string{"show", "--data-path", prefix, "--seq-length", "16", "--start", "100000"}, "--start"},
		{[]string{"indices", "--out", t.TempDir(), "--data-path", prefix, "--seq-length", "16", "--data-cache-path", t.TempDir(), "--tokenizer-identifiers", "[1]"}, "--tokenizer-identifiers"},
	} {
		_, stderr, code := runCLI(t, c.args...)
		assert.NotEqual(t, 0, code, "%v", c.args)
		assert.Contains(t, stderr, c.want, "%v", c.args)
	}
}

// TestDataCachePath writes Megatron-named cache files: the file name for the fixture config
// with NullTokenizer identifiers is Megatron's own.
func TestDataCachePath(t *testing.T) {
	dir := filepath.Join(fixtures, "gpt", "a_s16_seed1234_1epoch")
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	var f struct {
		fixtureConfig
		Names map[string]string `json:"megatron_cache_file_names"`
		Tok   json.RawMessage   `json:"-"`
	}
	require.NoError(t, json.Unmarshal(b, &f))
	var raw struct {
		Config struct {
			Tokenizer json.RawMessage `json:"tokenizer"`
		} `json:"config"`
	}
	require.NoError(t, json.Unmarshal(b, &raw))
	cache := t.TempDir()
	args := f.fixtureConfig.args()
	args[1] = "indexed/a_uint16" // Megatron's dataset_path in the hash, relative to the fixtures
	wd, err := os.Getwd()
	require.NoError(t, err)
	require.NoError(t, os.Chdir(fixtures))
	defer os.Chdir(wd)
	cacheArgs := append([]string{"--data-cache-path", cache, "--tokenizer-identifiers", string(raw.Config.Tokenizer)}, args...)
	_, stderr, code := runCLI(t, append([]string{"indices", "--out", t.TempDir()}, cacheArgs...)...)
	require.Equal(t, 0, code, stderr)
	// A second run loads Megatron's cache files and still writes the same indices.
	out2 := t.TempDir()
	stdout, stderr, code := runCLI(t, append([]string{"indices", "--out", out2}, cacheArgs...)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "(from the cache)")
	for _, kind := range []string{"document_index", "sample_index", "shuffle_index"} {
		got, err := os.ReadFile(filepath.Join(out2, "train", kind+".npy"))
		require.NoError(t, err)
		want, err := os.ReadFile(filepath.Join(wd, dir, kind+".npy"))
		require.NoError(t, err)
		assert.Equal(t, want, got, kind)
	}
	for kind, name := range f.Names {
		got, err := os.ReadFile(filepath.Join(cache, name))
		require.NoError(t, err)
		want, err := os.ReadFile(filepath.Join(wd, dir, kind+".npy"))
		require.NoError(t, err)
		assert.Equal(t, want, got, name)
	}
}
