package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// parseCLI parses convertor flags as run does, without converting.
func parseCLI(t *testing.T, args ...string) *cli {
	t.Helper()
	var c cli
	parser, err := kong.New(&c, kong.Name("convert"), kong.Exit(func(int) {}))
	require.NoError(t, err)
	_, err = parser.Parse(args)
	require.NoError(t, err)
	return &c
}

// plan opens the flags' source and plans the Megatron target (expert-parallel rank 0's
// shards).
func plan(t *testing.T, c *cli) (*shardWriter, [][]layers.Params) {
	t.Helper()
	src, err := openSource(c.LoadPath, c.ModelName)
	require.NoError(t, err)
	t.Cleanup(src.close)
	dtype, err := targetDType(c.TargetParamsDType, src.dtype())
	require.NoError(t, err)
	prog := newProgress("none", io.Discard)
	w, stages, _, err := planMegatron(c, src, dtype, &prog, io.Discard)
	require.NoError(t, err)
	return w, stages[0]
}

// saveMaterialised is the convertor's former shard writer, kept as the reference: every
// tensor of the shard built in memory (tensor.FromF32Values), then megatron.SaveShard.
func saveMaterialised(t *testing.T, w *shardWriter, loc megatron.Location, tp, pp int, specs layers.Params) {
	t.Helper()
	tensors := make(map[string]*tensor.Tensor, len(specs))
	for _, p := range specs {
		vals, shape, err := w.src.full(p.InitKey)
		require.NoError(t, err)
		vals, shape, err = w.vp.apply(p.InitKey, vals, shape)
		require.NoError(t, err)
		require.Equal(t, p.FullShape, shape)
		tensors[p.Name] = tensor.FromF32Values(w.dtype, layers.Shard(vals, p.FullShape, p.PartitionDim, p.GLU, tp, w.c.TargetTP), p.Shape...)
	}
	model, err := megatron.ModelDict(w.format, specs, tensors)
	require.NoError(t, err)
	require.NoError(t, megatron.SaveShard(loc, tp, pp, w.c.TargetPP, megatron.StateDict(w.args, loc.Iteration, model)))
}

// TestStreamedShardsMatchMaterialised: every streamed shard file is byte-identical to the
// one saved from the materialised shard, for Hugging Face and Megatron sources, several
// layouts, dtypes and a resized vocabulary.
func TestStreamedShardsMatchMaterialised(t *testing.T) {
	tmp := t.TempDir()
	meg := filepath.Join(tmp, "meg-src")
	convertOK(t, "--load_path", filepath.Join(hfFixtures, "llama-gqa"), "--save_path", meg,
		"--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2")
	cases := []struct {
		name string
		args []string
	}{
		{"hf llama-gqa tp2 pp2 mcore extra vocab fp16", []string{"--load_path", filepath.Join(hfFixtures, "llama-gqa"),
			"--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2",
			"--extra_num_vocabs", "5", "--target_params_dtype", "fp16"}},
		{"hf gpt2 tp1 pp1 legacy", []string{"--load_path", filepath.Join(hfFixtures, "gpt2"), "--megatron-format", "legacy"}},
		{"hf bloom tp2 pp1 local bf16", []string{"--load_path", filepath.Join(hfFixtures, "bloom"),
			"--target_tensor_model_parallel_size", "2", "--transformer-impl", "local", "--target_params_dtype", "bf16"}},
		{"megatron tp2 pp2 to tp1 pp2", []string{"--load_path", meg, "--target_pipeline_model_parallel_size", "2"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tmp, "case", string(rune('a'+i)))
			c := parseCLI(t, append(tc.args, "--save_path", filepath.Join(dir, "streamed"))...)
			w, stages := plan(t, c)
			ref := w.loc
			ref.Root = filepath.Join(dir, "materialised")
			n := 0
			for pp := range stages {
				for tp, specs := range stages[pp] {
					require.NoError(t, w.write(0, tp, pp, specs))
					saveMaterialised(t, w, ref, tp, pp, specs)
					got, err := os.ReadFile(w.loc.ShardFile(tp, pp, c.TargetPP, megatron.ModelFile))
					require.NoError(t, err)
					want, err := os.ReadFile(ref.ShardFile(tp, pp, c.TargetPP, megatron.ModelFile))
					require.NoError(t, err)
					require.Equal(t, len(want), len(got), "shard tp %d pp %d size", tp, pp)
					require.True(t, bytes.Equal(want, got), "shard tp %d pp %d differs from the materialised save", tp, pp)
					n++
				}
			}
			require.Equal(t, c.TargetTP*c.TargetPP, n)
		})
	}
}

// failingSource fails on one parameter, as a truncated or unreadable source would.
type failingSource struct {
	source
	key string
}

func (s failingSource) full(key string) ([]float32, []int, error) {
	if key == s.key {
		return nil, nil, errors.New("source read failed")
	}
	return s.source.full(key)
}

// TestStreamedShardSourceError: a source error while a shard streams names the parameter
// and the shard file, and leaves no file (nor temporary file) behind.
func TestStreamedShardSourceError(t *testing.T) {
	dir := t.TempDir()
	c := parseCLI(t, "--load_path", filepath.Join(hfFixtures, "llama-gqa"), "--save_path", dir)
	w, stages := plan(t, c)
	w.src = failingSource{w.src, "decoder.layers.1.mlp.linear_fc2.weight"}
	err := w.write(0, 0, 0, stages[0][0])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "decoder.layers.1.mlp.linear_fc2.weight")
	assert.Contains(t, err.Error(), "source read failed")
	path := w.loc.ShardFile(0, 0, 1, megatron.ModelFile)
	assert.Contains(t, err.Error(), path)
	ents, rerr := os.ReadDir(filepath.Dir(path))
	require.NoError(t, rerr)
	assert.Empty(t, ents, "files left after a failed shard")
}
