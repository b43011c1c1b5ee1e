package megatron

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// fixtureManifest is the part of shared/fixtures/megatron/checkpoints/manifest.json used here.
type fixtureManifest struct {
	HyperRaw    map[string]float64 `json:"hyperparameters"`
	Checkpoints map[string]struct {
		TP      int `json:"tensor_model_parallel_size"`
		Tracker struct {
			Content string `json:"content"`
		} `json:"tracker_file"`
		Files []struct {
			File    string `json:"file"`
			Tensors []struct {
				Path   []any  `json:"path"`
				Shape  []int  `json:"shape"`
				DType  string `json:"dtype"`
				SHA256 string `json:"sha256_contiguous_le_bytes"`
			} `json:"tensors"`
		} `json:"files"`
	} `json:"checkpoints"`
}

// fixtureDir returns the checkpoint fixtures: the shared tree when present (with tracker
// files), else the copy in ckpt/torchpickle/testdata (shard files only). ok reports
// whether tracker files exist.
func fixtureDir(t *testing.T) (root string, trackers bool) {
	shared := filepath.Join("..", "..", "..", "shared", "fixtures", "megatron", "checkpoints")
	if r := os.Getenv("GOMEGATRON_FIXTURES"); r != "" {
		shared = filepath.Join(r, "megatron", "checkpoints")
	}
	if _, err := os.Stat(filepath.Join(shared, "legacy_tp1", TrackerFile)); err == nil {
		return shared, true
	}
	return filepath.Join("..", "torchpickle", "testdata", "checkpoints"), false
}

func loadManifest(t *testing.T, root string) *fixtureManifest {
	b, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	require.NoError(t, err)
	var m fixtureManifest
	require.NoError(t, json.Unmarshal(b, &m))
	return &m
}

// fixturePath is the path of checkpoint name: the root (tracker) or its iteration folder.
func fixturePath(root, name string, trackers bool) string {
	if trackers {
		return filepath.Join(root, name)
	}
	return filepath.Join(root, name, "iter_0000010")
}

func sha(t *tensor.Tensor) string {
	h := sha256.Sum256(t.Data)
	return hex.EncodeToString(h[:])
}

// TestReadFixtures opens every real Megatron checkpoint fixture, checks the
// configuration rebuilt from its args against the manifest's hyperparameters, and checks
// every full tensor (TP shards joined, cast back to the stored dtype) byte for byte
// against the TP=1 file's tensor in the manifest (legacy_tp2 must merge into legacy_tp1).
func TestReadFixtures(t *testing.T) {
	root, trackers := fixtureDir(t)
	man := loadManifest(t, root)
	h := man.HyperRaw
	for _, tc := range []struct {
		name, ref string
		format    Format
		dtype     tensor.DType
	}{
		{"legacy_tp1", "legacy_tp1", Legacy, tensor.BF16},
		{"legacy_tp2", "legacy_tp1", Legacy, tensor.BF16},
		{"mcore_tp1", "mcore_tp1", MCoreTE, tensor.F32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(fixturePath(root, tc.name, trackers))
			require.NoError(t, err)
			defer c.Close()
			require.Equal(t, man.Checkpoints[tc.name].TP, c.TP)
			require.Equal(t, 1, c.PP)
			require.Equal(t, 10, c.Iteration)
			require.False(t, c.Release)
			require.Equal(t, tc.format, c.Format)
			require.Equal(t, tc.dtype, c.DType)
			require.Equal(t, 3.0, c.Version)
			cfg := c.Config
			require.Equal(t, int(h["num_layers"]), cfg.NumLayers)
			require.Equal(t, int(h["hidden_size"]), cfg.HiddenSize)
			require.Equal(t, int(h["num_attention_heads"]), cfg.NumAttentionHeads)
			require.Equal(t, int(h["num_query_groups"]), cfg.NumQueryGroups)
			require.True(t, cfg.GroupQueryAttention)
			require.Equal(t, int(h["kv_channels"]), cfg.KVChannels)
			require.Equal(t, int(h["ffn_hidden_size"]), cfg.FFNHiddenSize)
			require.Equal(t, int(h["vocab_size"]), cfg.VocabSize)
			require.Equal(t, int(h["padded_vocab_size"]), cfg.PaddedVocabSize)
			require.Equal(t, int(h["max_position_embeddings"]), cfg.MaxPositionEmbeddings)
			require.Equal(t, "RMSNorm", cfg.Normalization)
			require.Equal(t, "rope", cfg.PositionEmbeddingType)
			require.True(t, cfg.SwiGLU && cfg.UntieEmbeddingsAndOutputWeights && cfg.DisableBiasLinear)

			ref := man.Checkpoints[tc.ref].Files[0]
			want := map[string]string{} // manifest path joined by "/" → sha
			shapes := map[string][]int{}
			for _, rt := range ref.Tensors {
				if rt.Path[0] != "model" || strings.HasSuffix(rt.Path[len(rt.Path)-1].(string), "_extra_state") {
					continue
				}
				parts := make([]string, len(rt.Path)-1)
				for i, p := range rt.Path[1:] {
					parts[i] = p.(string)
				}
				want[strings.Join(parts, "/")] = rt.SHA256
				shapes[strings.Join(parts, "/")] = rt.Shape
			}
			require.Len(t, c.Keys(), len(want), "parameter count")
			for _, key := range c.Keys() {
				p, ok := c.Param(key)
				require.True(t, ok)
				path, err := KeyPath(tc.format, p.Name, p.Shared)
				require.NoError(t, err)
				k := strings.Join(path, "/")
				vals, shape, err := c.Full(key)
				require.NoError(t, err)
				require.Equal(t, shapes[k], shape, key)
				full := tensor.FromF32Values(c.DType, vals, shape...)
				require.Equal(t, want[k], sha(full), "full tensor %s (%s)", key, k)
			}
		})
	}
}
