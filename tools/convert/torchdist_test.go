package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFromTorchDist: a torch_dist checkpoint written by Megatron-LM converts to Hugging
// Face into the same files as its torch-format twin, and to the torch format at another
// layout with the same tensors (ckpt/megatron/testdata/torch_dist/README.md).
func TestFromTorchDist(t *testing.T) {
	for _, name := range []string{"dense", "moe"} {
		t.Run(name, func(t *testing.T) {
			fixture := filepath.Join("..", "..", "ckpt", "megatron", "testdata", "torch_dist", name)
			tmp := t.TempDir()
			hf := map[string]string{}
			for _, format := range []string{"torch", "torch_dist"} {
				out := filepath.Join(tmp, format)
				var o, e bytes.Buffer
				require.NoError(t, run([]string{"--load_path", filepath.Join(fixture, format), "--save_path", out, "--progress", "none",
					"--convert_checkpoint_from_megatron_to_transformers"}, &o, &e), e.String())
				hf[format] = out
			}
			for _, f := range []string{"config.json", "model.safetensors"} {
				a, err := os.ReadFile(filepath.Join(hf["torch"], f))
				require.NoError(t, err)
				b, err := os.ReadFile(filepath.Join(hf["torch_dist"], f))
				require.NoError(t, err)
				require.True(t, bytes.Equal(a, b), "%s differs", f)
			}
			// torch_dist → torch at TP 1, PP 1, EP 1, then to Hugging Face: the same files again.
			mg := filepath.Join(tmp, "mg")
			var o, e bytes.Buffer
			require.NoError(t, run([]string{"--load_path", filepath.Join(fixture, "torch_dist"), "--save_path", mg, "--progress", "none",
				"--target_tensor_model_parallel_size", "1", "--target_pipeline_model_parallel_size", "1",
				"--target_expert_model_parallel_size", "1"}, &o, &e), e.String())
			back := filepath.Join(tmp, "back")
			require.NoError(t, run([]string{"--load_path", mg, "--save_path", back, "--progress", "none",
				"--convert_checkpoint_from_megatron_to_transformers"}, &o, &e), e.String())
			a, err := os.ReadFile(filepath.Join(hf["torch"], "model.safetensors"))
			require.NoError(t, err)
			b, err := os.ReadFile(filepath.Join(back, "model.safetensors"))
			require.NoError(t, err)
			require.True(t, bytes.Equal(a, b), "model.safetensors differs after torch_dist → torch → Hugging Face")
		})
	}
}

// TestToTorchDist: --ckpt-format torch_dist writes the tensors --ckpt-format torch writes
// (Llama at TP 2 × PP 2, Mixtral at EP 2 with the Transformer Engine spec), Hugging Face
// comes back unchanged from it, and what torch_dist cannot hold is refused.
func TestToTorchDist(t *testing.T) {
	for name, tc := range map[string]struct {
		hf     func(t *testing.T, dir string) string // the Hugging Face source
		layout []string
	}{
		"llama": {func(t *testing.T, dir string) string { return filepath.Join(hfFixtures, "llama-gqa") },
			[]string{"--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2"}},
		"mixtral": {func(t *testing.T, dir string) string { syntheticHF(t, dir, tinyMixtral); return dir },
			[]string{"--target_expert_model_parallel_size", "2"}},
	} {
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			src := tc.hf(t, filepath.Join(tmp, "hf"))
			out := map[string]string{}
			for _, format := range []string{"torch", "torch_dist"} {
				out[format] = filepath.Join(tmp, format)
				convertOK(t, append([]string{"--load_path", src, "--save_path", out[format], "--ckpt-format", format}, tc.layout...)...)
			}
			require.FileExists(t, filepath.Join(out["torch_dist"], "release", "metadata.json"))
			_, a := megatronFull(t, out["torch"])
			c, b := megatronFull(t, out["torch_dist"])
			require.True(t, c.TorchDist())
			requireSameTensors(t, a, b)
			back := filepath.Join(tmp, "back")
			convertOK(t, "--load_path", out["torch_dist"], "--save_path", back, "--convert_checkpoint_from_megatron_to_transformers")
			requireSameTensors(t, hfTensors(t, src), hfTensors(t, back))
		})
	}
	src := filepath.Join(hfFixtures, "llama-gqa")
	var o, e bytes.Buffer
	err := run([]string{"--load_path", src, "--save_path", filepath.Join(t.TempDir(), "x"), "--progress", "none",
		"--ckpt-format", "torch_dist", "--megatron-format", "legacy"}, &o, &e)
	require.ErrorContains(t, err, "--ckpt-format torch_dist holds Megatron-Core keys only")
}
