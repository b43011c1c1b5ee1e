package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/megatron"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// pyDescribe loads each file with torch.load (which must unpickle argparse.Namespace) and
// prints, per file, the top-level keys, a few args and every tensor's dotted path, dtype,
// shape and SHA-256 of its bytes.
const pyDescribe = `
import sys, json, hashlib, torch
def walk(prefix, v, out):
    if isinstance(v, torch.Tensor):
        t = v.contiguous()
        size = t.element_size()
        raw = t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]) if t.numel() else t
        out[prefix] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                       "sha": hashlib.sha256(raw.numpy().tobytes() if t.numel() else b"").hexdigest()}
    elif isinstance(v, dict):
        for k, x in v.items():
            walk(prefix + "." + str(k) if prefix else str(k), x, out)
res = []
for path in sys.argv[1:]:
    d = torch.load(path, map_location="cpu")
    out = {}
    walk("", d["model"], out)
    a = d["args"]
    res.append({"keys": list(d.keys()), "tensors": out, "checkpoint_version": d["checkpoint_version"],
                "args": {k: str(getattr(a, k)) for k in ["tensor_model_parallel_size", "pipeline_model_parallel_size",
                         "num_layers", "hidden_size", "padded_vocab_size", "params_dtype", "num_query_groups"]},
                "args_class": type(a).__module__ + "." + type(a).__name__})
print(json.dumps(res))
`

// TestTorchLoadsConvertedShards writes a TP 2 × PP 2 checkpoint in each layout and loads
// every shard with PyTorch: the top-level keys, the args, and every model tensor's name,
// dtype, shape and bytes must be what Go reads back.
func TestTorchLoadsConvertedShards(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 with torch not available (%v)", err)
	}
	type tcase struct {
		format, fam string
		files       []string
	}
	var cases []tcase
	var all []string
	for _, format := range []string{"legacy", "mcore"} {
		for _, fam := range []string{"llama-gqa", "gpt2"} {
			meg := filepath.Join(t.TempDir(), "meg")
			convertOK(t, "--load_path", filepath.Join(hfFixtures, fam), "--save_path", meg, "--megatron-format", format,
				"--target_tensor_model_parallel_size", "2", "--target_pipeline_model_parallel_size", "2", "--target_params_dtype", "bf16")
			loc := megatron.Location{Root: meg, Release: true}
			tc := tcase{format: format, fam: fam}
			for pp := 0; pp < 2; pp++ {
				for tp := 0; tp < 2; tp++ {
					tc.files = append(tc.files, loc.ShardFile(tp, pp, 2, megatron.ModelFile))
				}
			}
			cases = append(cases, tc)
			all = append(all, tc.files...)
		}
	}
	// One Python run for every file: importing torch takes seconds.
	out, err := exec.Command("/usr/bin/python3", append([]string{"-c", pyDescribe}, all...)...).CombinedOutput()
	require.NoError(t, err, string(out))
	var res []struct {
		Keys    []string `json:"keys"`
		Tensors map[string]struct {
			DType string `json:"dtype"`
			Shape []int  `json:"shape"`
			SHA   string `json:"sha"`
		} `json:"tensors"`
		Version float64           `json:"checkpoint_version"`
		Args    map[string]string `json:"args"`
		Class   string            `json:"args_class"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res, len(all))
	for ci, tc := range cases {
		format, fam := tc.format, tc.fam
		t.Run(format+"/"+fam, func(t *testing.T) {
			for i, path := range tc.files {
				r := res[ci*4+i]
				require.Equal(t, []string{"args", "checkpoint_version", "iteration", "model"}, r.Keys)
				require.Equal(t, 3.0, r.Version)
				require.Equal(t, "argparse.Namespace", r.Class)
				require.Equal(t, "2", r.Args["tensor_model_parallel_size"])
				require.Equal(t, "2", r.Args["pipeline_model_parallel_size"])
				require.Equal(t, "torch.bfloat16", r.Args["params_dtype"])
				require.Equal(t, "256", r.Args["padded_vocab_size"])

				sf, err := megatron.OpenShardFile(path)
				require.NoError(t, err)
				model, _ := sf.State.Get("model")
				flat := torchpickle.Flatten(model)
				require.Len(t, r.Tensors, len(flat), path)
				for _, nt := range flat {
					pt, ok := r.Tensors[nt.Name]
					require.True(t, ok, "torch lacks %s in %s", nt.Name, path)
					require.Equal(t, nt.T.DType().String(), pt.DType, nt.Name)
					require.Equal(t, nt.T.Shape(), pt.Shape, nt.Name)
					h := sha256.Sum256(nt.T.Data)
					require.Equal(t, hex.EncodeToString(h[:]), pt.SHA, nt.Name)
				}
				// The names torch sees are the layout's: spot-check the expected keys.
				pp := i / 2
				want := map[string][]string{
					"legacy": {"language_model.encoder.layers.0.self_attention.query_key_value.weight", "language_model.encoder.layers.0.mlp.dense_4h_to_h.weight"},
					"mcore":  {"decoder.layers.0.self_attention.linear_qkv.weight", "decoder.layers.0.self_attention.linear_qkv._extra_state"},
				}[format]
				if pp == 0 {
					want = append(want, map[string]string{"legacy": "language_model.embedding.word_embeddings.weight", "mcore": "embedding.word_embeddings.weight"}[format])
				} else if fam == "gpt2" && format == "legacy" {
					want = append(want, "word_embeddings_for_head.weight", "language_model.encoder.final_norm.bias")
				}
				for _, k := range want {
					_, ok := r.Tensors[k]
					require.True(t, ok, "%s: torch sees no %s", path, k)
				}
				sf.Close()
			}
		})
	}
}

// TestShardsMatchMegatronSplit converts the real legacy_tp1 checkpoint to TP 2 and
// requires every shard tensor to equal, byte for byte, the legacy_tp2 files that
// Megatron's own splitting wrote (torch.chunk per rule, SwiGLU [W_r; V_r]).
func TestShardsMatchMegatronSplit(t *testing.T) {
	root, trackers := fixtureDir(t)
	out := filepath.Join(t.TempDir(), "tp2")
	convertOK(t, "--load_path", fixturePath(root, "legacy_tp1", trackers), "--save_path", out, "--target_tensor_model_parallel_size", "2")
	ours, err := megatron.Open(out)
	require.NoError(t, err)
	defer ours.Close()
	ref, err := megatron.Open(fixturePath(root, "legacy_tp2", trackers))
	require.NoError(t, err)
	defer ref.Close()
	require.Equal(t, megatron.Legacy, ours.Format)
	specs, err := layers.Specs(ref.Config, layers.Parallel{TPSize: 2, PPSize: 1})
	require.NoError(t, err)
	for tp := 0; tp < 2; tp++ {
		a, b := ours.ShardTensors(tp, 0), ref.ShardTensors(tp, 0)
		require.Len(t, a, len(b))
		for _, p := range specs {
			x, y := a[p.Name], b[p.Name]
			require.Equal(t, tensor.BF16, x.DType())
			require.Equal(t, y.Shape(), x.Shape(), p.Name)
			require.Equal(t, y.Data, x.Data, "rank %d %s", tp, p.Name)
		}
	}
}
