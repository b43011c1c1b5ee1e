package layers

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestPresetParamCounts checks preset shapes against the published parameter counts of the
// Hugging Face checkpoints (unpadded vocabulary).
func TestPresetParamCounts(t *testing.T) {
	want := map[string]int64{
		"llama2-7b":  6738415616,
		"llama2-13b": 13015864320,
		"llama2-70b": 68976648192,
		"llama3-8b":  8030261248,
		"mistral-7b": 7241732096,
		"gpt2":       124439808,
		"bloom-560m": 559214592,
		"falcon-7b":  6921720704,
	}
	for name, n := range want {
		c, err := Preset(name)
		require.NoError(t, err)
		c.MakeVocabSizeDivisibleBy = 1
		got, err := ParamCount(c)
		require.NoError(t, err, name)
		require.Equal(t, n, got, name)
	}
	for _, name := range PresetNames() {
		c, err := Preset(name)
		require.NoError(t, err)
		require.NoError(t, c.Finalize(), name)
	}
}

// TestParamCountMatchesModel checks the formula against the allocated model.
func TestParamCountMatchesModel(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-gpt2"} {
		c, err := Preset(name)
		require.NoError(t, err)
		m, err := NewGPTModel(cpu.New(), c, 1)
		require.NoError(t, err)
		n, err := ParamCount(c)
		require.NoError(t, err)
		require.Equal(t, n, int64(m.Params.Numel()), name)
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	base, err := Preset("tiny-llama")
	require.NoError(t, err)
	cases := []struct {
		edit func(*Config)
		want []string
	}{
		{func(c *Config) { c.NumQueryGroups = 3 }, []string{"--num-attention-heads 4", "--num-query-groups 3"}},
		{func(c *Config) { c.HiddenSize = 66; c.KVChannels = 0 }, []string{"--hidden-size 66", "--num-attention-heads 4"}},
		{func(c *Config) { c.PositionEmbeddingType = "sinusoidal" }, []string{"--position-embedding-type", "sinusoidal"}},
		{func(c *Config) { c.Normalization = "BatchNorm" }, []string{"--normalization", "BatchNorm"}},
		{func(c *Config) { c.NumLayers = 0 }, []string{"--num-layers"}},
		{func(c *Config) { c.TensorModelParallelSize = 3 }, []string{"--num-attention-heads 4", "--tensor-model-parallel-size 3"}},
		{func(c *Config) { c.RotaryPercent = 0.1 }, []string{"--rotary-percent"}},
		{func(c *Config) { c.AttentionDropout = 1 }, []string{"--attention-dropout"}},
		{func(c *Config) { c.MoEFFNHiddenSize = 64 }, []string{"--moe-ffn-hidden-size 64", "--num-experts"}},
		{func(c *Config) { c.MoESharedExpertGate = true }, []string{"--moe-shared-expert-gate", "--num-experts"}},
		{func(c *Config) { c.NumExperts, c.MoESharedExpertGate = 4, true }, []string{"--moe-shared-expert-gate needs --moe-shared-expert-intermediate-size"}},
		{func(c *Config) {
			c.NumExperts, c.MoERouterPreSoftmax, c.MoERouterLoadBalancingType = 4, true, "sinkhorn"
		}, []string{"--moe-router-pre-softmax", "sinkhorn"}},
		{func(c *Config) {
			c.NumExperts, c.DisableBiasLinear, c.MoESharedExpertIntermediateSize, c.TensorModelParallelSize = 4, true, 33, 2
		}, []string{"--moe-shared-expert-intermediate-size 33", "--tensor-model-parallel-size 2"}},
	}
	// --moe-ffn-hidden-size is each expert's FFN, --ffn-hidden-size the dense layers'.
	c := base
	c.NumExperts, c.FFNHiddenSize, c.MoEFFNHiddenSize, c.DisableBiasLinear = 4, 256, 48, true
	require.NoError(t, c.Finalize())
	require.Equal(t, []int{48, 256}, []int{c.ExpertFFN(), c.FFNHiddenSize})
	// --moe-layer-freq: canonical, and which layers have experts.
	for _, tc := range []struct{ freq, canon string }{{"1", ""}, {"([1]*4)", ""}, {"2", "[1, 0, 1, 0]"}, {"([0]+[1]*3)", "[0, 1, 1, 1]"}} {
		c := base
		c.NumExperts, c.DisableBiasLinear, c.MoELayerFreq, c.NumLayers = 4, true, tc.freq, 4
		require.NoError(t, c.Finalize(), tc.freq)
		require.Equal(t, tc.canon, c.MoELayerFreq, tc.freq)
		p, _ := MoELayerPattern(tc.freq, 4)
		for i, v := range p {
			require.Equal(t, v == 1, c.IsMoELayer(i), "%s layer %d", tc.freq, i)
		}
	}
	for freq, want := range map[string]string{"([0]*4)": "no layer is an MoE layer", "([1]*3)": "the pattern has 3 layers, the model 4"} {
		c := base
		c.NumExperts, c.DisableBiasLinear, c.MoELayerFreq, c.NumLayers = 4, true, freq, 4
		require.ErrorContains(t, c.Finalize(), want)
	}
	for _, tc := range cases {
		c := base
		tc.edit(&c)
		err := c.Finalize()
		require.Error(t, err)
		for _, w := range tc.want {
			require.True(t, strings.Contains(err.Error(), w), "%q should mention %q", err, w)
		}
	}
}

func TestALiBiSlopes(t *testing.T) {
	// The fixtures README: 4 heads → [1/4, 1/16, 1/64, 1/256]; 12 heads →
	// [2^-1 … 2^-8, 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5].
	require.Equal(t, []float32{0.25, 0.0625, 0.015625, 0.00390625}, ALiBiSlopes(4))
	s := ALiBiSlopes(12)
	for i := 0; i < 8; i++ {
		require.InDelta(t, 1/float64(int(1)<<(i+1)), s[i], 1e-9)
	}
	for i, e := range []float64{-0.5, -1.5, -2.5, -3.5} {
		require.InDelta(t, pow2(e), s[8+i], 1e-7)
	}
}

func pow2(e float64) float64 {
	r := 1.0
	for e <= -1 {
		r /= 2
		e++
	}
	if e != 0 {
		r *= 0.7071067811865476 // 2^-0.5
	}
	return r
}

// TestApplyLayernorm1p: with --apply-layernorm-1p the LayerNorm weights start at 0 and the
// norms scale by 1 + weight, so a model holding w computes exactly what a plain model
// holding w + 1 does — the same loss and the same gradients, norm weights' included; RMSNorm
// refuses it as Megatron does.
func TestApplyLayernorm1p(t *testing.T) {
	be := cpu.New()
	c, err := Preset("tiny-gpt2")
	require.NoError(t, err)
	c.AttentionDropout, c.HiddenDropout = 0, 0
	p1 := c
	p1.ApplyLayernorm1p = true
	a, err := NewGPTModel(be, p1, 5)
	require.NoError(t, err)
	b, err := NewGPTModel(be, c, 5)
	require.NoError(t, err)
	norms := 0
	for i, pa := range a.Params {
		if strings.HasSuffix(pa.Name, "layernorm.weight") {
			norms++
			for _, v := range pa.Data.F32() {
				require.Zero(t, v, "%s starts at 0", pa.Name)
			}
			for j := range pa.Data.F32() { // something other than the initial 0
				pa.Data.F32()[j] = 0.01 * float32(j%7-3)
			}
			for j, v := range pa.Data.F32() {
				b.Params[i].Data.F32()[j] = v + 1
			}
			continue
		}
		copy(b.Params[i].Data.F32(), pa.Data.F32())
	}
	require.Equal(t, 5, norms, "input/pre-MLP norms of 2 layers and the final norm")
	bt := patternBatch(32)
	run := func(m *GPTModel) (float64, [][]float32) {
		for _, p := range m.Params {
			p.Grad = be.Alloc(tensor.F32, p.Shape...)
		}
		st := m.NewStash(16, 2)
		sum, n, err := m.Forward(st, bt, 0, 0)
		require.NoError(t, err)
		require.NoError(t, m.Backward(st, float32(1/n), nil))
		var g [][]float32
		for _, p := range m.Params {
			g = append(g, p.Grad.F32())
		}
		return sum / n, g
	}
	la, ga := run(a)
	lb, gb := run(b)
	require.Equal(t, lb, la)
	require.Equal(t, gb, ga)
	r := p1
	r.Normalization = "RMSNorm"
	_, err = NewGPTModel(be, r, 5)
	require.ErrorContains(t, err, "RMSNorm does not currently support the layernorm_1p formulation")
}

// TestSquaredReLU: --squared-relu makes the MLP fc2(max(fc1(x), 0)²): the model's loss
// equals one computed with the activation done by hand, and its gradients pass finite
// differences; it refuses --swiglu, as Megatron asserts.
func TestSquaredReLU(t *testing.T) {
	be := cpu.New()
	c, err := Preset("tiny-gpt2")
	require.NoError(t, err)
	c.AttentionDropout, c.HiddenDropout, c.SquaredReLU = 0, 0, true
	m, err := NewGPTModel(be, c, 3)
	require.NoError(t, err)
	l := m.Layers[0]
	x := tensor.New(tensor.F32, 3, l.FC1.Out)
	for i := range x.F32() {
		x.F32()[i] = float32(i%11) - 5
	}
	out := tensor.New(tensor.F32, 3, l.FC1.Out)
	c.activation(be, out, x)
	for i, v := range x.F32() {
		want := float32(0)
		if v > 0 {
			want = v * v
		}
		require.Equal(t, want, out.F32()[i])
	}
	gelu := c
	gelu.SquaredReLU = false
	g, err := NewGPTModel(be, gelu, 3)
	require.NoError(t, err)
	bt := patternBatch(32)
	loss := func(m *GPTModel) float64 {
		st := m.NewStash(16, 2)
		sum, n, err := m.Forward(st, bt, 0, 0)
		require.NoError(t, err)
		return sum / n
	}
	require.NotEqual(t, loss(g), loss(m), "the activation is not GeLU")
	// Gradients of a few linear_fc1 weights against central differences of the loss.
	for _, p := range m.Params {
		p.Grad = be.Alloc(tensor.F32, p.Shape...)
	}
	st := m.NewStash(16, 2)
	_, n, err := m.Forward(st, bt, 0, 0)
	require.NoError(t, err)
	require.NoError(t, m.Backward(st, float32(1/n), nil))
	w := m.Layers[1].FC1.W
	for _, i := range []int{3, 517, 2048, 9000} {
		v := w.Data.F32()[i]
		const h = 1e-2
		w.Data.F32()[i] = v + h
		up := loss(m)
		w.Data.F32()[i] = v - h
		down := loss(m)
		w.Data.F32()[i] = v
		require.InDelta(t, (up-down)/(2*h), float64(w.Grad.F32()[i]), 5e-5, "d loss / d fc1[%d] (gradients ~1e-3)", i)
	}
	bad := c
	bad.SwiGLU = true
	_, err = NewGPTModel(be, bad, 3)
	require.ErrorContains(t, err, "--squared-relu and --swiglu are exclusive")
}

// patternBatch is n tokens (two rows of 16 for the tests' stashes) of a fixed pattern
// within the tiny presets' 256-token vocabulary, every position in the loss.
func patternBatch(n int) Batch {
	bt := Batch{Tokens: make([]int64, n), Labels: make([]int64, n), LossMask: make([]float32, n)}
	for i := range bt.Tokens {
		bt.Tokens[i], bt.Labels[i], bt.LossMask[i] = int64(i*7%256), int64(i*11%256), 1
	}
	return bt
}
