package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/safetensors"
)

const hfFixtures = "../../testdata/hf"

func TestEvaluateMatchesFixtureLoss(t *testing.T) {
	for _, name := range []string{"llama-mha", "llama-gqa", "gpt2", "bloom"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(hfFixtures, name)
			dump := filepath.Join(t.TempDir(), "logits.safetensors")
			var out bytes.Buffer
			require.NoError(t, runEvaluate([]string{"--load", dir, "--tokens", filepath.Join(dir, "inputs.safetensors"), "--json", "--dump-logits", dump}, &out))
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
}
