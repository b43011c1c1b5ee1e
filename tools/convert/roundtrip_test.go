package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

const hfFixtures = "../../testdata/hf"

var families = []string{"llama-mha", "llama-gqa", "gpt2", "bloom"}

// convertOK runs the convertor and fails the test on error.
func convertOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	require.NoError(t, run(append(args, "--progress", "none"), &out, &errb), "convert %v: %s", args, errb.String())
	return out.String()
}

// hfTensors reads every tensor of a Hugging Face folder (copies, so the set can close).
func hfTensors(t *testing.T, dir string) map[string]*tensor.Tensor {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	require.NoError(t, err)
	defer set.Close()
	out := map[string]*tensor.Tensor{}
	for _, n := range set.Names() {
		x, err := set.Tensor(n)
		require.NoError(t, err)
		out[n] = x.Clone()
	}
	return out
}

// requireSameTensors checks two state dicts for the same names, dtypes, shapes and bytes.
func requireSameTensors(t *testing.T, want, got map[string]*tensor.Tensor) {
	t.Helper()
	require.Equal(t, len(want), len(got), "tensor count")
	for n, w := range want {
		g, ok := got[n]
		require.True(t, ok, "tensor %s missing", n)
		require.Equal(t, w.DType(), g.DType(), n)
		require.Equal(t, w.Shape(), g.Shape(), n)
		require.True(t, bytes.Equal(w.Data, g.Data), "tensor %s differs", n)
	}
}

// megatronFull reads a Megatron checkpoint's full tensors in their stored dtype.
func megatronFull(t *testing.T, path string) (*megatron.Checkpoint, map[string]*tensor.Tensor) {
	t.Helper()
	c, err := megatron.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	out := map[string]*tensor.Tensor{}
	for _, k := range c.Keys() {
		v, shape, err := c.Full(k)
		require.NoError(t, err)
		out[k] = tensor.FromF32Values(c.DType, v, shape...)
	}
	return c, out
}

// TestHFMegatronHFRoundTrip converts every family fixture to Megatron (TP 2, PP 2) in
// each layout and back, and requires bit-identical tensors and a config.json that
// Hugging Face's reader turns into the same architecture — with the original config.json
// as the base (copied next to the Megatron checkpoint, as Pai does) and without any.
func TestHFMegatronHFRoundTrip(t *testing.T) {
	for _, fam := range families {
		src := filepath.Join(hfFixtures, fam)
		orig := hfTensors(t, src)
		origModel, err := hf.ReadConfig(src)
		require.NoError(t, err)
		require.Equal(t, string(origModel.Family), inferFamily(&origModel.Config), "family inferred from the architecture")
		for _, format := range [][]string{{"--megatron-format", "mcore"}, {"--megatron-format", "mcore", "--transformer-impl", "local"}, {"--megatron-format", "legacy"}} {
			t.Run(fam+"/"+strings.Join(format, " "), func(t *testing.T) {
				tmp := t.TempDir()
				meg, back := filepath.Join(tmp, "meg"), filepath.Join(tmp, "hf")
				convertOK(t, append([]string{"--load_path", src, "--save_path", meg,
					"--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2"}, format...)...)
				for _, d := range []string{"mp_rank_00_000", "mp_rank_01_000", "mp_rank_00_001", "mp_rank_01_001"} {
					require.FileExists(t, filepath.Join(meg, "release", d, megatron.ModelFile))
				}
				tr, err := os.ReadFile(filepath.Join(meg, megatron.TrackerFile))
				require.NoError(t, err)
				require.Equal(t, "release", string(tr))

				convertOK(t, "--load_path", filepath.Join(meg, "release"), "--save_path", back,
					"--convert_checkpoint_from_megatron_to_transformers")
				requireSameTensors(t, orig, hfTensors(t, back))
				got, err := hf.ReadConfig(back)
				require.NoError(t, err)
				require.Equal(t, origModel.Family, got.Family)
				require.Equal(t, origModel.Config, got.Config)

				// Without a base config.json the template alone must describe the model.
				require.NoError(t, os.Remove(filepath.Join(meg, "config.json")))
				bare := filepath.Join(tmp, "hf-bare")
				convertOK(t, "--load_path", meg, "--save_path", bare, "--convert_checkpoint_from_megatron_to_transformers", "--max_shard_size", "100KB")
				require.FileExists(t, filepath.Join(bare, safetensors.IndexFile), "sharded like save_pretrained")
				requireSameTensors(t, orig, hfTensors(t, bare))
				got, err = hf.ReadConfig(bare)
				require.NoError(t, err)
				require.Equal(t, origModel.Family, got.Family)
				require.Equal(t, origModel.Config, got.Config)
			})
		}
	}
}

// TestMegatronReshardRoundTrip reshards TP1 PP1 → TP4 PP2 (TP2 where the query groups
// allow no more) → TP1 PP1 and requires bit-identical full tensors at every step, then
// does the same for the real Megatron fixtures (legacy_tp2 must become legacy_tp1).
func TestMegatronReshardRoundTrip(t *testing.T) {
	for _, fam := range families {
		t.Run(fam, func(t *testing.T) {
			tmp := t.TempDir()
			src := filepath.Join(hfFixtures, fam)
			tp := "4"
			if fam == "llama-gqa" {
				tp = "2" // 2 query groups
			}
			a, b, c := filepath.Join(tmp, "tp1"), filepath.Join(tmp, "wide"), filepath.Join(tmp, "tp1-again")
			convertOK(t, "--load_path", src, "--save_path", a, "--target_params_dtype", "bf16")
			convertOK(t, "--load_path", a, "--save_path", b, "--target_tensor_model_parallel_size", tp, "--target_pipeline_model_parallel_size", "2")
			convertOK(t, "--load_path", b, "--save_path", c)
			ca, fa := megatronFull(t, a)
			cb, fb := megatronFull(t, b)
			cc, fc := megatronFull(t, c)
			require.Equal(t, tensor.BF16, ca.DType)
			require.Equal(t, 2, cb.PP)
			require.Equal(t, tp, map[int]string{2: "2", 4: "4"}[cb.TP])
			require.Equal(t, 1, cc.TP)
			requireSameTensors(t, fa, fc)
			// The wide checkpoint pads the vocabulary to 128·TP with zero rows; the rest is equal.
			for k, w := range fa {
				g := fb[k]
				if g.Shape()[0] != w.Shape()[0] && strings.Contains(k, "word_embeddings") || strings.HasPrefix(k, "output_layer") {
					require.True(t, bytes.Equal(w.Data, g.Data[:len(w.Data)]), k)
					require.True(t, bytes.Equal(g.Data[len(w.Data):], make([]byte, len(g.Data)-len(w.Data))), "%s padding rows are zero", k)
					continue
				}
				require.True(t, bytes.Equal(w.Data, g.Data), k)
			}
			require.Equal(t, ca.Config.VocabSize, cb.Config.VocabSize)
		})
	}
	root, trackers := fixtureDir(t)
	for _, tc := range []struct{ src, ref, format string }{
		{"legacy_tp2", "legacy_tp1", ""},
		{"mcore_tp1", "mcore_tp1", ""},
		{"legacy_tp1", "legacy_tp1", "mcore"},
	} {
		t.Run("fixture/"+tc.src+"/"+tc.format, func(t *testing.T) {
			tmp := t.TempDir()
			wide, one := filepath.Join(tmp, "wide"), filepath.Join(tmp, "one")
			extra := []string{}
			if tc.format != "" {
				extra = []string{"--megatron-format", tc.format}
			}
			convertOK(t, append([]string{"--load_path", fixturePath(root, tc.src, trackers), "--save_path", wide,
				"--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2"}, extra...)...)
			convertOK(t, "--load_path", wide, "--save_path", one)
			_, want := megatronFull(t, fixturePath(root, tc.ref, trackers))
			cw, fw := megatronFull(t, wide)
			co, fo := megatronFull(t, one)
			requireSameTensors(t, want, fw)
			requireSameTensors(t, want, fo)
			require.Equal(t, 10, co.Iteration, "the iteration is kept")
			require.False(t, co.Release)
			if tc.format == "mcore" {
				require.Equal(t, megatron.MCoreTE, cw.Format)
			}
		})
	}
}

// fixtureDir finds the real Megatron checkpoints (shared tree, else the torchpickle copy).
func fixtureDir(t *testing.T) (string, bool) {
	shared := filepath.Join("..", "..", "..", "shared", "fixtures", "megatron", "checkpoints")
	if r := os.Getenv("GOMEGATRON_FIXTURES"); r != "" {
		shared = filepath.Join(r, "megatron", "checkpoints")
	}
	if _, err := os.Stat(filepath.Join(shared, "legacy_tp1", megatron.TrackerFile)); err == nil {
		return shared, true
	}
	return filepath.Join("..", "..", "ckpt", "torchpickle", "testdata", "checkpoints"), false
}

func fixturePath(root, name string, trackers bool) string {
	if trackers {
		return filepath.Join(root, name)
	}
	return filepath.Join(root, name, "iter_0000010")
}

// TestConvertedLossMatchesHF loads a converted checkpoint (HF → Megatron TP 2 PP 2)
// through megatron.LoadModel (shards joined, model built from the checkpoint's args: the
// path `golaunch evaluate` takes for Megatron folders) and evaluates the fixture's
// tokens: the loss must equal, bit for bit, the loss of the Hugging Face original loaded
// by hf.Load, and match the loss transformers computed to 1e-5.
func TestConvertedLossMatchesHF(t *testing.T) {
	for _, fam := range families {
		t.Run(fam, func(t *testing.T) {
			src := filepath.Join(hfFixtures, fam)
			meg := filepath.Join(t.TempDir(), "meg")
			convertOK(t, "--load_path", src, "--save_path", meg, "--target_tensor_model_parallel_size", "2",
				"--target_pipeline_model_parallel_size", "2", "--megatron-format", "legacy")
			ids, b, s := fixtureTokens(t, src)

			be := cpu.New()
			_, ref, err := hf.Load(be, src)
			require.NoError(t, err)
			refLoss := forwardLoss(t, ref, ids, b, s)

			// megatron.LoadModel is what `golaunch evaluate --load <megatron dir>` uses.
			gm, _, err := megatron.LoadModel(be, meg)
			require.NoError(t, err)
			loss := forwardLoss(t, gm, ids, b, s)
			require.Equal(t, refLoss, loss, "loss of the converted checkpoint")

			out, err := safetensors.Open(filepath.Join(src, "outputs.safetensors"))
			require.NoError(t, err)
			defer out.Close()
			lt, err := out.Tensor("loss")
			require.NoError(t, err)
			require.InDelta(t, float64(lt.ToF32()[0]), loss, 1e-5)
		})
	}
}

func fixtureTokens(t *testing.T, dir string) ([]int64, int, int) {
	in, err := safetensors.Open(filepath.Join(dir, "inputs.safetensors"))
	require.NoError(t, err)
	defer in.Close()
	x, err := in.Tensor("input_ids")
	require.NoError(t, err)
	return append([]int64(nil), x.I64()...), x.Dim(0), x.Dim(1)
}

// forwardLoss is Hugging Face's shifted mean loss over a [b, s] batch (ids row-major).
func forwardLoss(t *testing.T, gm *layers.GPTModel, ids []int64, b, s int) float64 {
	bt := layers.Batch{Tokens: ids, Labels: make([]int64, len(ids)), LossMask: make([]float32, len(ids))}
	for i := 0; i < b; i++ {
		for j := 0; j < s-1; j++ {
			bt.Labels[i*s+j] = ids[i*s+j+1]
			bt.LossMask[i*s+j] = 1
		}
	}
	st := gm.NewStash(s, b)
	sum, n, err := gm.Forward(st, bt, 0, 0)
	require.NoError(t, err)
	return sum / n
}
