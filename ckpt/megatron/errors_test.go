package megatron

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
)

// TestBadCheckpoints breaks a valid TP 2 × PP 2 checkpoint in one way each and requires
// Open to fail with an error naming the file (and the tensor or argument) at fault.
func TestBadCheckpoints(t *testing.T) {
	shard := func(loc Location, tp, pp int) string { return loc.ShardFile(tp, pp, 2, ModelFile) }
	// rewrite loads a shard file, lets edit change it, and saves it back.
	rewrite := func(t *testing.T, path string, edit func(d *torchpickle.Dict)) {
		v, err := torchpickle.Load(path)
		require.NoError(t, err)
		edit(v.(*torchpickle.Dict))
		require.NoError(t, torchpickle.Save(path, v))
	}
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, loc Location) // damages the checkpoint
		want   []string                         // substrings of the error
	}{
		{"shape does not match args", func(t *testing.T, loc Location) {
			rewrite(t, shard(loc, 0, 0), func(d *torchpickle.Dict) {
				a, _ := d.Get("args")
				a.(*torchpickle.Namespace).Set("ffn_hidden_size", 40)
			})
		}, []string{"mp_rank_00_000/model_optim_rng.pt", "decoder.layers.0.mlp.linear_fc1.weight", "shape [48 32]", "[40 32]"}},
		{"tensor missing", func(t *testing.T, loc Location) {
			rewrite(t, shard(loc, 1, 1), func(d *torchpickle.Dict) {
				m, _ := d.Get("model")
				old := m.(*torchpickle.Dict)
				nm := torchpickle.NewDict(true)
				for i, k := range old.Keys {
					if k != "decoder.layers.1.self_attention.linear_proj.weight" {
						nm.Set(k, old.Values[i])
					}
				}
				d.Set("model", nm)
			})
		}, []string{"mp_rank_01_001/model_optim_rng.pt", "decoder.layers.1.self_attention.linear_proj.weight", "missing"}},
		{"unknown tensor", func(t *testing.T, loc Location) {
			rewrite(t, shard(loc, 0, 1), func(d *torchpickle.Dict) {
				m, _ := d.Get("model")
				w, _ := m.(*torchpickle.Dict).Get("decoder.final_layernorm.weight")
				m.(*torchpickle.Dict).Set("decoder.layers.0.self_attention.q_layernorm.weight", w)
			})
		}, []string{"mp_rank_00_001/model_optim_rng.pt", "q_layernorm.weight", "not a parameter"}},
		{"missing shard", func(t *testing.T, loc Location) {
			require.NoError(t, os.RemoveAll(filepath.Dir(shard(loc, 1, 0))))
		}, []string{"iter_0000003", "mp_rank_01_000", "missing"}},
		{"last TP shard missing", func(t *testing.T, loc Location) {
			require.NoError(t, os.RemoveAll(filepath.Dir(shard(loc, 1, 0))))
			require.NoError(t, os.RemoveAll(filepath.Dir(shard(loc, 1, 1))))
		}, []string{"tensor_model_parallel_size 2", "missing shard folders mp_rank_01_000, mp_rank_01_001"}},
		{"missing file in shard folder", func(t *testing.T, loc Location) {
			require.NoError(t, os.Remove(shard(loc, 1, 1)))
		}, []string{"mp_rank_01_001/model_optim_rng.pt", "no such file"}},
		{"truncated file", func(t *testing.T, loc Location) {
			p := shard(loc, 1, 0)
			st, err := os.Stat(p)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(p, st.Size()/2))
		}, []string{"mp_rank_01_000/model_optim_rng.pt"}},
		{"unknown pickle global", func(t *testing.T, loc Location) {
			rewrite(t, shard(loc, 0, 0), func(d *torchpickle.Dict) {
				d.Set("optimizer", torchpickle.Global{Module: "os", Name: "system"})
			})
		}, []string{"mp_rank_00_000/model_optim_rng.pt", "os.system"}},
		{"args disagree with the shard grid", func(t *testing.T, loc Location) {
			rewrite(t, shard(loc, 0, 0), func(d *torchpickle.Dict) {
				a, _ := d.Get("args")
				a.(*torchpickle.Namespace).Set("tensor_model_parallel_size", 1)
			})
		}, []string{"mp_rank_00_000/model_optim_rng.pt", "tensor_model_parallel_size 1", "2×2"}},
		{"tracker names a missing iteration", func(t *testing.T, loc Location) {
			require.NoError(t, os.WriteFile(filepath.Join(loc.Root, TrackerFile), []byte("9"), 0o644))
		}, []string{TrackerFile, "iter_0000009", "missing"}},
		{"tracker is garbage", func(t *testing.T, loc Location) {
			require.NoError(t, os.WriteFile(filepath.Join(loc.Root, TrackerFile), []byte("latest"), 0o644))
		}, []string{TrackerFile, `"latest"`}},
		{"required arg missing", func(t *testing.T, loc Location) {
			rewrite(t, shard(loc, 0, 0), func(d *torchpickle.Dict) {
				a, _ := d.Get("args")
				a.(*torchpickle.Namespace).Set("hidden_size", nil)
			})
		}, []string{"mp_rank_00_000/model_optim_rng.pt", "args.hidden_size", "missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := Location{Root: t.TempDir(), Iteration: 3}
			saveTestCheckpoint(t, loc, testConfig(false), 2, 2, MCore)
			tc.break_(t, loc)
			c, err := Open(loc.Root)
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
