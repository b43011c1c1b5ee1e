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
