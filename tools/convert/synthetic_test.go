package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// synthShapes are Llama-2 architectures for the memory benchmark (docs/perf).
var synthShapes = map[string]struct{ layers, hidden, ffn, heads, kv, vocab int }{
	"7b":   {32, 4096, 11008, 32, 32, 32000},
	"1.3b": {24, 2048, 5504, 16, 16, 32000},
	"tiny": {2, 64, 172, 4, 2, 256},
}

// TestWriteSyntheticLlama writes a Llama-2-shaped Hugging Face checkpoint of random fp16
// values (sharded at 10 GB as the real one) into $GOMEGATRON_SYNTH_DIR, shape
// $GOMEGATRON_SYNTH_SHAPE (7b, 1.3b or tiny). It is the input of the peak-RSS benchmark
// in docs/perf/2026-11-26-convert.md and is skipped unless the directory is given.
func TestWriteSyntheticLlama(t *testing.T) {
	dir := os.Getenv("GOMEGATRON_SYNTH_DIR")
	if dir == "" {
		t.Skip("set GOMEGATRON_SYNTH_DIR (and GOMEGATRON_SYNTH_SHAPE) to write the synthetic benchmark checkpoint")
	}
	name := os.Getenv("GOMEGATRON_SYNTH_SHAPE")
	if name == "" {
		name = "7b"
	}
	s, ok := synthShapes[name]
	require.True(t, ok, "unknown shape %q", name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_act": "silu",
		"hidden_size": s.hidden, "intermediate_size": s.ffn, "num_attention_heads": s.heads,
		"num_key_value_heads": s.kv, "num_hidden_layers": s.layers, "vocab_size": s.vocab,
		"max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"tie_word_embeddings": false, "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))

	hd := s.hidden / s.heads
	var outs []hfOut
	add := func(n string, shape ...int) { outs = append(outs, hfOut{name: n, shape: shape}) }
	add("model.embed_tokens.weight", s.vocab, s.hidden)
	for i := 0; i < s.layers; i++ {
		p := "model.layers." + strconv.Itoa(i) + "."
		add(p+"input_layernorm.weight", s.hidden)
		add(p+"self_attn.q_proj.weight", s.heads*hd, s.hidden)
		add(p+"self_attn.k_proj.weight", s.kv*hd, s.hidden)
		add(p+"self_attn.v_proj.weight", s.kv*hd, s.hidden)
		add(p+"self_attn.o_proj.weight", s.hidden, s.heads*hd)
		add(p+"post_attention_layernorm.weight", s.hidden)
		add(p+"mlp.gate_proj.weight", s.ffn, s.hidden)
		add(p+"mlp.up_proj.weight", s.ffn, s.hidden)
		add(p+"mlp.down_proj.weight", s.hidden, s.ffn)
	}
	add("model.norm.weight", s.hidden)
	add("lm_head.weight", s.vocab, s.hidden)
	var state uint64 = 0x853c49e6748fea9b
	produce := func(o hfOut) (*tensor.Tensor, error) {
		x := tensor.New(tensor.F16, o.shape...)
		u := x.U16()
		for i := range u {
			// xorshift64*, then a value in about ±0.05 (sum of two uniforms ≈ bell shape).
			state ^= state >> 12
			state ^= state << 25
			state ^= state >> 27
			r := state * 2685821657736338717
			a := float32(r>>40) / (1 << 24)
			c := float32(r&0xFFFFFF) / (1 << 24)
			u[i] = tensor.F16FromF32((a + c - 1) * 0.05)
		}
		if len(o.shape) == 1 {
			one := tensor.F16FromF32(1)
			for i := range u {
				u[i] = one
			}
		}
		return x, nil
	}
	require.NoError(t, writeSafetensorsStreaming(dir, outs, tensor.F16, 10_000_000_000, produce))
	var total float64
	for _, o := range outs {
		total += float64(tensor.ShapeNumel(o.shape))
	}
	fmt.Printf("wrote %s: %.2fB parameters, %.2f GB fp16\n", dir, total/1e9, total*2/1e9)
}
