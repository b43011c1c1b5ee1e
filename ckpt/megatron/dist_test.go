package megatron

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomegatron/gomegatron/layers"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fixtures in testdata/torch_dist were written by Megatron-LM itself
// (testdata/make_torch_dist.py; see testdata/torch_dist/README.md): one tiny GPT saved by
// the same ranks in both formats, torch_dist and torch. Every full tensor read from the
// torch_dist folder must equal the one joined from the torch shards.
func TestTorchDistMatchesTorchFormat(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tp, pp, ep int
		experts    int
	}{
		{"dense", 2, 2, 1, 0},
		{"moe", 1, 2, 2, 4},
		{"dense-mcore020", 2, 2, 1, 0}, // common state inside the .distcp files
		{"qwen-moe", 1, 2, 2, 4},       // a dense first layer: every layer keyed alone
		{"gpt", 2, 2, 1, 0},            // LayerNorm, GeLU, biases, learned positions, tied embeddings
		{"rope", 2, 1, 1, 0},           // half, interleaved RoPE with base 500, q/k norms
		{"deepseek-moe", 1, 2, 2, 4},   // DeepSeek-V3's router: sigmoid, groups, expert bias; shared experts
		{"mqa", 1, 1, 1, 0},            // one query group, kv-channels 16
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("testdata", "torch_dist", tc.name)
			dist, err := Open(filepath.Join(dir, "torch_dist"))
			require.NoError(t, err)
			defer dist.Close()
			ref, err := Open(filepath.Join(dir, "torch"))
			require.NoError(t, err)
			defer ref.Close()

			assert.True(t, dist.TorchDist())
			assert.False(t, ref.TorchDist())
			assert.Equal(t, 7, dist.Iteration)
			assert.Equal(t, []int{tc.tp, tc.pp, tc.ep}, []int{dist.TP, dist.PP, dist.EP})
			assert.Equal(t, ref.Config, dist.Config)
			assert.Equal(t, ref.DType, dist.DType)
			assert.Equal(t, 3.0, dist.Version)
			assert.Equal(t, tc.experts, dist.Config.NumExperts)
			require.NotEmpty(t, ref.Keys())
			require.NoError(t, ref.EqualTensors(dist))
		})
	}
}

// The distributed optimizer's state in torch_dist (fully_sharded_model_space: each
// data-parallel rank's ranges of each TP/PP block, flattened) reads back as full tensors
// equal to the state Megatron's optimizer held: the fixture's references put each
// parameter's state, gathered from the live optimizer, where its weight would be in the
// torch format.
func TestTorchDistOptimizerState(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tp, pp, ep int
	}{
		{"dense-optim", 2, 2, 1}, // TP 2 × PP 2 × DP 2
		{"moe-optim", 1, 2, 2},   // PP 2 × EP 2 × DP 2: experts in a second optimizer
		{"plain-optim", 2, 2, 1}, // the non-distributed optimizer: states in the model's shapes
	} {
		dir := filepath.Join("testdata", "torch_dist", tc.name)
		ck, err := Open(filepath.Join(dir, "torch_dist"))
		require.NoError(t, err)
		defer ck.Close()
		assert.Equal(t, []int{tc.tp, tc.pp, tc.ep}, []int{ck.TP, ck.PP, ck.EP})
		for _, state := range OptimizerStates {
			t.Run(tc.name+"/"+state, func(t *testing.T) {
				require.True(t, ck.HasOptimizerState(state))
				ref, err := Open(filepath.Join(dir, state))
				require.NoError(t, err)
				defer ref.Close()
				require.Equal(t, ref.Keys(), ck.Keys())
				for _, key := range ck.Keys() {
					want, wantShape, err := ref.Full(key)
					require.NoError(t, err)
					got, shape, err := ck.OptimizerFull(state, key)
					require.NoError(t, err, key)
					require.Equal(t, wantShape, shape, key)
					require.Equal(t, want, got, key)
				}
			})
		}
	}
	// A model-only checkpoint has none.
	plain, err := Open(filepath.Join("testdata", "torch_dist", "dense", "torch_dist"))
	require.NoError(t, err)
	defer plain.Close()
	assert.False(t, plain.HasOptimizerState("exp_avg"))
	_, _, err = plain.OptimizerFull("exp_avg", plain.Keys()[0])
	assert.ErrorContains(t, err, "optimizer.state.exp_avg.")
}

// Broken torch_dist folders fail with the file and the tensor named.
func TestTorchDistErrors(t *testing.T) {
	src := filepath.Join("testdata", "torch_dist", "dense", "torch_dist", "iter_0000007")
	clone := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "iter_0000007")
		require.NoError(t, os.MkdirAll(dir, 0o755))
		ents, err := os.ReadDir(src)
		require.NoError(t, err)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644))
		}
		return dir
	}
	t.Run("missing data file", func(t *testing.T) {
		dir := clone(t)
		require.NoError(t, os.Remove(filepath.Join(dir, "__1_0.distcp")))
		_, err := Open(dir)
		assert.ErrorContains(t, err, "__1_0.distcp")
	})
	t.Run("truncated data file", func(t *testing.T) {
		dir := clone(t)
		p := filepath.Join(dir, "__2_1.distcp")
		st, err := os.Stat(p)
		require.NoError(t, err)
		require.NoError(t, os.Truncate(p, st.Size()-100))
		_, err = Open(dir)
		assert.ErrorContains(t, err, "__2_1.distcp")
		assert.ErrorContains(t, err, "truncated")
	})
	t.Run("corrupt chunk", func(t *testing.T) {
		dir := clone(t)
		c, err := Open(dir)
		require.NoError(t, err)
		ch := c.dist.tensors["embedding.word_embeddings.weight"].chunks[0]
		c.Close()
		p := filepath.Join(dir, ch.file)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		for i := ch.start; i < ch.start+8; i++ { // the archive's first local header
			b[i] ^= 0xff
		}
		require.NoError(t, os.WriteFile(p, b, 0o644))
		c, err = Open(dir)
		require.NoError(t, err) // the index is intact; the damage shows on reading
		defer c.Close()
		_, _, err = c.Full("embedding.word_embeddings.weight")
		assert.ErrorContains(t, err, ch.file+" bytes [")
		assert.ErrorContains(t, err, "embedding.word_embeddings.weight")
	})
	t.Run("other backend", func(t *testing.T) {
		dir := clone(t)
		require.NoError(t, os.WriteFile(filepath.Join(dir, DistMetadataFile), []byte(`{"sharded_backend": "zarr"}`), 0o644))
		_, err := Open(dir)
		assert.ErrorContains(t, err, `sharded_backend "zarr" is not supported`)
	})
	t.Run("no common state", func(t *testing.T) {
		dir := clone(t)
		require.NoError(t, os.Remove(filepath.Join(dir, DistCommonFile)))
		_, err := Open(dir)
		assert.ErrorContains(t, err, "common_state")
	})
	t.Run("corrupt metadata", func(t *testing.T) {
		dir := clone(t)
		p := filepath.Join(dir, dcpMetadataFile)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(p, b[:len(b)/2], 0o644))
		_, err = Open(dir)
		assert.ErrorContains(t, err, ".metadata")
	})
}

// TestTorchDistWrite: the shards of Megatron's fixtures, written back by WriteDistShard and
// FinishDist, give the same stored keys, shapes, dtypes, chunks and objects as Megatron's
// own torch_dist folder, and read back to the same tensors.
func TestTorchDistWrite(t *testing.T) {
	for _, name := range []string{"dense", "moe", "qwen-moe", "gpt", "rope", "deepseek-moe"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "torch_dist", name)
			ref, err := Open(filepath.Join(dir, "torch"))
			require.NoError(t, err)
			defer ref.Close()
			meg, err := Open(filepath.Join(dir, "torch_dist"))
			require.NoError(t, err)
			defer meg.Close()

			out := filepath.Join(t.TempDir(), "iter_0000007")
			require.NoError(t, os.MkdirAll(out, 0o755))
			rank := 0
			for e := 0; e < ref.EP; e++ {
				for p := 0; p < ref.PP; p++ {
					for tp := 0; tp < ref.TP; tp++ {
						specs, err := layers.Specs(ref.Config, layers.Parallel{TPRank: tp, TPSize: ref.TP, PPRank: p, PPSize: ref.PP, EPRank: e, EPSize: ref.EP})
						require.NoError(t, err)
						sh := DistShard{Cfg: ref.Config, Format: MCore, TPRank: tp, TPSize: ref.TP}
						for _, sp := range specs {
							if !DistWrites(sp, tp, e) {
								continue
							}
							sh.Params = append(sh.Params, DistParam{Param: sp, DType: ref.DType, Local: func() ([]float32, error) {
								return sp.LocalFrom(func(q *layers.Param) ([]float32, error) {
									v, _, err := ref.Full(q.InitKey)
									return v, err
								}, tp, ref.TP)
							}})
						}
						require.NoError(t, WriteDistShard(out, rank, sh))
						rank++
					}
				}
			}
			require.NoError(t, FinishDist(out, meg.Common))
			left, err := filepath.Glob(filepath.Join(out, "*"+distSidecarSuffix))
			require.NoError(t, err)
			require.Empty(t, left)

			ours, err := Open(out)
			require.NoError(t, err)
			defer ours.Close()
			require.Equal(t, len(meg.dist.tensors), len(ours.dist.tensors))
			for k, mt := range meg.dist.tensors {
				ot, ok := ours.dist.tensors[k]
				require.True(t, ok, "missing %s", k)
				require.Equal(t, mt.size, ot.size, k)
				require.Equal(t, mt.dtype, ot.dtype, k)
				require.ElementsMatch(t, chunkBoxes(mt), chunkBoxes(ot), k)
			}
			var megObjs, ourObjs []string
			for k := range meg.dist.objects {
				if !strings.HasPrefix(k, distCommonObject) && !strings.HasPrefix(k, "rerun_state_machine_state/") {
					megObjs = append(megObjs, k)
				}
			}
			for k := range ours.dist.objects {
				ourObjs = append(ourObjs, k)
			}
			require.ElementsMatch(t, megObjs, ourObjs)
			require.NoError(t, ref.EqualTensors(ours))
		})
	}
}

func chunkBoxes(t *dcpTensor) []string {
	var out []string
	for _, c := range t.chunks {
		out = append(out, fmt.Sprint(c.off, c.size))
	}
	return out
}

// TestTorchDistSaveAgain: an iteration saved again at another layout (one rank instead of
// Megatron's four) after ClearDist holds only the new save's files and reads back whole.
func TestTorchDistSaveAgain(t *testing.T) {
	src := filepath.Join("testdata", "torch_dist", "dense")
	ref, err := Open(filepath.Join(src, "torch"))
	require.NoError(t, err)
	defer ref.Close()
	out := filepath.Join(t.TempDir(), "iter_0000007")
	require.NoError(t, os.MkdirAll(out, 0o755))
	ents, err := os.ReadDir(filepath.Join(src, "torch_dist", "iter_0000007"))
	require.NoError(t, err)
	for _, e := range ents { // Megatron's four-rank save first
		b, err := os.ReadFile(filepath.Join(src, "torch_dist", "iter_0000007", e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(out, e.Name()), b, 0o644))
	}
	meg, err := Open(out)
	require.NoError(t, err)
	common := meg.Common
	meg.Close()

	require.NoError(t, ClearDist(out))
	specs, err := layers.Specs(ref.Config, layers.Parallel{})
	require.NoError(t, err)
	sh := DistShard{Cfg: ref.Config, Format: MCore, TPSize: 1}
	for _, sp := range specs {
		sh.Params = append(sh.Params, DistParam{Param: sp, DType: ref.DType, Local: func() ([]float32, error) {
			v, _, err := ref.Full(sp.InitKey)
			return v, err
		}})
	}
	require.NoError(t, WriteDistShard(out, 0, sh))
	require.NoError(t, FinishDist(out, common))
	files, err := filepath.Glob(filepath.Join(out, "__*"))
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(out, DistFileName(0))}, files)
	again, err := Open(out)
	require.NoError(t, err)
	defer again.Close()
	require.NoError(t, ref.EqualTensors(again))
}
