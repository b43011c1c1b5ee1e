package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/data/indexed"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

const hfFixtures = "../../testdata/hf"

// TestEvaluateMatchesFixtureLoss compares the loss and logits with transformers' fixtures,
// in one process and (llama-gqa, gpt2) with two tensor-parallel ranks, each reading only its
// shard of the Hugging Face folder.
func TestEvaluateMatchesFixtureLoss(t *testing.T) {
	for _, name := range []string{"llama-mha", "llama-gqa", "gpt2", "bloom", "llama-gqa/tp2", "gpt2/tp2"} {
		t.Run(name, func(t *testing.T) {
			name, tp2 := strings.CutSuffix(name, "/tp2")
			dir := filepath.Join(hfFixtures, name)
			dump := filepath.Join(t.TempDir(), "logits.safetensors")
			var out bytes.Buffer
			args := []string{"--load", dir, "--tokens", filepath.Join(dir, "inputs.safetensors"), "--json", "--dump-logits", dump}
			if tp2 {
				o := runGolaunch(t, append([]string{"--standalone", "--nproc-per-node", "2", "evaluate", "--tensor-model-parallel-size", "2"}, args...)...)
				out.WriteString(o[strings.Index(o, "{") : strings.LastIndex(o, "}")+1])
			} else {
				require.NoError(t, runEvaluate(args, &out))
			}
			var res struct {
				Loss        float64   `json:"loss"`
				PerSequence []float64 `json:"per_sequence"`
			}
			require.NoError(t, json.Unmarshal(out.Bytes(), &res))
			ref, err := safetensors.Open(filepath.Join(dir, "outputs.safetensors"))
			require.NoError(t, err)
			defer ref.Close()
			lt, err := ref.Tensor("loss")
			require.NoError(t, err)
			require.InDelta(t, float64(lt.ToF32()[0]), res.Loss, 1e-5)
			require.Len(t, res.PerSequence, 2)
			// Equal lengths: the overall loss is the mean of the per-sequence losses.
			require.InDelta(t, (res.PerSequence[0]+res.PerSequence[1])/2, res.Loss, 1e-9)

			got, err := safetensors.Open(dump)
			require.NoError(t, err)
			defer got.Close()
			gl, err := got.Tensor("logits")
			require.NoError(t, err)
			rl, err := ref.Tensor("logits")
			require.NoError(t, err)
			require.Equal(t, rl.Shape(), gl.Shape())
			g, r := gl.ToF32(), rl.ToF32()
			for i := range g {
				require.InDelta(t, r[i], g[i], 1e-4, "logit %d", i)
			}
		})
	}
}

func TestEvaluateBadInput(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-gqa")
	tokens := filepath.Join(src, "inputs.json")
	mk := func(t *testing.T, edit func(cfg map[string]any), dropTensor string) string {
		dir := t.TempDir()
		raw, err := os.ReadFile(filepath.Join(src, "config.json"))
		require.NoError(t, err)
		var cfg map[string]any
		require.NoError(t, json.Unmarshal(raw, &cfg))
		if edit != nil {
			edit(cfg)
		}
		b, _ := json.Marshal(cfg)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
		f, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
		require.NoError(t, err)
		defer f.Close()
		var keep []safetensors.Named
		for _, n := range f.Names() {
			if n == dropTensor {
				continue
			}
			tt, err := f.Tensor(n)
			require.NoError(t, err)
			keep = append(keep, safetensors.Named{Name: n, T: tt})
		}
		require.NoError(t, safetensors.Write(filepath.Join(dir, "model.safetensors"), keep, nil))
		return dir
	}
	cases := []struct {
		name    string
		edit    func(map[string]any)
		drop    string
		tokens  string
		wantErr []string
	}{
		{"unknown architecture", func(c map[string]any) { c["model_type"] = "t5" }, "", tokens, []string{"model_type \"t5\"", "not a supported architecture"}},
		{"missing tensor", nil, "model.layers.1.mlp.up_proj.weight", tokens, []string{"model.layers.1.mlp.up_proj.weight"}},
		{"shape mismatch", func(c map[string]any) { c["intermediate_size"] = 100.0 }, "", tokens, []string{"model.layers.0.mlp.gate_proj.weight", "decoder.layers.0.mlp.linear_fc1.weight"}},
		{"heads not divisible by groups", func(c map[string]any) { c["num_key_value_heads"] = 3.0 }, "", tokens, []string{"--num-attention-heads 4", "--num-query-groups 3"}},
		{"bad tokens file", nil, "", filepath.Join(src, "config.json"), []string{"config.json", "list of lists"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := mk(t, c.edit, c.drop)
			err := runEvaluate([]string{"--load", dir, "--tokens", c.tokens}, &bytes.Buffer{})
			require.Error(t, err)
			for _, w := range c.wantErr {
				require.True(t, strings.Contains(err.Error(), w), "error %q should mention %q", err, w)
			}
		})
	}
	err := runEvaluate([]string{"--load", src, "--tokens", tokens, "--tensor-model-parallel-size", "2"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "--tensor-model-parallel-size 2, but 1 processes were launched")
}

// TestEvaluateMegatronCheckpointAndIndexedData: the HF fixture saved as a Megatron (mcore,
// torch-format) checkpoint evaluates to Hugging Face's loss, and the same token ids read
// from a .bin/.idx dataset give the same per-sequence losses as --tokens.
func TestEvaluateMegatronCheckpointAndIndexedData(t *testing.T) {
	src := filepath.Join(hfFixtures, "llama-gqa")
	be := cpu.New()
	_, gm, err := hf.Load(be, src)
	require.NoError(t, err)
	dir := t.TempDir()
	tensors := map[string]*tensor.Tensor{}
	for _, p := range gm.Params {
		tensors[p.Name] = p.Data
	}
	model, err := megatron.ModelDict(megatron.MCore, gm.Params, tensors)
	require.NoError(t, err)
	loc := megatron.Location{Root: filepath.Join(dir, "ckpt"), Release: true}
	args := megatron.Args(gm.Cfg, 1, 1, tensor.F32, megatron.MCore, "llama")
	require.NoError(t, megatron.SaveShard(loc, 0, 0, 1, megatron.StateDict(args, 0, model)))
	require.NoError(t, megatron.WriteTracker(loc))

	eval := func(args ...string) (float64, []float64) {
		var out bytes.Buffer
		require.NoError(t, runEvaluate(append(args, "--json"), &out))
		var res struct {
			Loss float64   `json:"loss"`
			Per  []float64 `json:"per_sequence"`
		}
		require.NoError(t, json.Unmarshal(out.Bytes(), &res))
		return res.Loss, res.Per
	}
	hfLoss, hfPer := eval("--load", src, "--tokens", filepath.Join(src, "inputs.json"))
	mgLoss, mgPer := eval("--load", loc.Root, "--tokens", filepath.Join(src, "inputs.json"))
	require.Equal(t, hfLoss, mgLoss, "the Megatron copy of the weights gives the same loss")
	require.Equal(t, hfPer, mgPer)

	ids, err := readTokens(filepath.Join(src, "inputs.json"))
	require.NoError(t, err)
	prefix := filepath.Join(dir, "data_text_document")
	b, err := indexed.NewBuilder(prefix+".bin", indexed.Uint16)
	require.NoError(t, err)
	for _, s := range ids {
		doc := make([]int64, len(s))
		copy(doc, s)
		require.NoError(t, b.AddItemInt64(doc))
		b.EndDocument()
	}
	require.NoError(t, b.Finalize(prefix+".idx"))
	_, dataPer := eval("--load", loc.Root, "--data-path", prefix)
	require.Equal(t, hfPer, dataPer)

	err = runEvaluate([]string{"--load", src, "--tokens", filepath.Join(src, "inputs.json"), "--data-path", prefix}, &bytes.Buffer{})
	require.ErrorContains(t, err, "exactly one of --tokens, --data-path and --jsonl")
}
