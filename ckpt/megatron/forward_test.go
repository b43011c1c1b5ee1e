package megatron

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/data/gpt"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestMatchesMegatronForward: on each torch_dist fixture's weights, our fp32 forward and
// backward give Megatron-LM's own loss and every parameter's gradient
// (testdata/megatron_forward.py ran Megatron-Core's GPTModel on the CPU in float64; see
// testdata/torch_dist/README.md). The MoE models add Megatron-Core's router losses to the
// gradients (seq_aux_loss, aux_loss, the z-loss) and its later routers: pre-softmax scores,
// sigmoid scores with top-k scaling and group-limited routing, and Sinkhorn.
func TestMatchesMegatronForward(t *testing.T) {
	for name, tc := range map[string]struct {
		fixture, ref string
		tweak        func(c *layers.Config)
	}{
		"dense":            {"dense", "megatron_forward.pt", func(c *layers.Config) {}},
		"gpt":              {"gpt", "megatron_forward.pt", func(c *layers.Config) {}},
		"gpt-squared-relu": {"gpt", "megatron_forward_squared_relu.pt", func(c *layers.Config) { c.SquaredReLU = true }},
		"mqa":              {"mqa", "megatron_forward.pt", func(c *layers.Config) {}}, // one query group, kv-channels 16 ≠ hidden/heads
		// Llama 3.1's RoPE scaling and position interpolation, as Megatron-Core's RotaryEmbedding.
		"dense-rope-scaling": {"dense", "megatron_forward_rope_scaling.pt", func(c *layers.Config) {
			c.UseRopeScaling, c.RopeScalingFactor = true, 8
		}},
		// Packed documents: --reset-attention-mask and --reset-position-ids.
		"dense-reset": {"dense", "megatron_forward_reset.pt", func(c *layers.Config) {}},
		// Megatron's legacy GPTModel (Pai's non-mcore scripts), loaded from our legacy-key
		// conversion of the fixture; its gradients carry the legacy names.
		"dense-legacy-model": {"dense", "megatron_forward_legacy_model.pt", func(c *layers.Config) {}},
		"gpt-legacy-model":   {"gpt", "megatron_forward_legacy_model.pt", func(c *layers.Config) {}},
		// --apply-layernorm-1p, which only the legacy model runs without Transformer Engine.
		"gpt-legacy-layernorm-1p": {"gpt", "megatron_forward_legacy_layernorm_1p.pt", func(c *layers.Config) { c.ApplyLayernorm1p = true }},
		"dense-rope-interpolation": {"dense", "megatron_forward_rope_interpolation.pt", func(c *layers.Config) {
			c.RotarySeqLenInterpolationFactor = 2
		}},
		"rope": {"rope", "megatron_forward.pt", func(c *layers.Config) {}},
		// DeepSeek-V3's router from the args: sigmoid scores scaled by 2.5, two groups of
		// which one is chosen, the expert bias in the choice, seq_aux_loss; shared experts.
		"deepseek-moe": {"deepseek-moe", "megatron_forward.pt", func(c *layers.Config) {}},
		"moe": {"moe", "megatron_forward.pt", func(c *layers.Config) {
			c.MoERouterLoadBalancingType, c.MoEAuxLossCoeff, c.MoEZLossCoeff = "seq_aux_loss", 1, 0.001
		}},
		// Megatron-Core ≥ 0.8 divides aux_loss's expert fractions by k; Megatron 240126, which
		// we follow, does not: our coefficient 1/k is its 1 (k = 2).
		"moe-aux_loss": {"moe", "megatron_forward_aux_loss.pt", func(c *layers.Config) { c.MoEAuxLossCoeff = 0.5 }},
		"qwen-moe":     {"qwen-moe", "megatron_forward.pt", func(c *layers.Config) { c.MoEAuxLossCoeff, c.MoEZLossCoeff = 0, 0.001 }},
		// Megatron-Core's later routers.
		"moe-pre-softmax": {"moe", "megatron_forward_presoftmax.pt", func(c *layers.Config) {
			c.MoERouterPreSoftmax, c.MoEAuxLossCoeff = true, 0.5
		}},
		"moe-sigmoid-groups": {"moe", "megatron_forward_sigmoid.pt", func(c *layers.Config) {
			c.MoERouterScoreFunction, c.MoERouterTopKScaling, c.MoERouterNumGroups, c.MoERouterGroupTopK = "sigmoid", 2.5, 2, 1
			c.MoERouterLoadBalancingType, c.MoEAuxLossCoeff = "seq_aux_loss", 1
		}},
		"moe-sinkhorn": {"moe", "megatron_forward_sinkhorn.pt", func(c *layers.Config) {
			c.MoERouterLoadBalancingType, c.MoEAuxLossCoeff = "sinkhorn", 0
		}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "torch_dist", tc.fixture)
			be := cpu.New()
			m := fixtureModel(t, be, dir, tc.tweak)
			optim.Attach(be, m.Params, 1)

			v, err := torchpickle.Load(filepath.Join(dir, tc.ref))
			require.NoError(t, err)
			ref := v.(*torchpickle.Dict)
			get := func(k string) any { x, ok := ref.Get(k); require.True(t, ok, k); return x }
			bt, b, s := megatronBatch(get("tokens"), get("labels"))
			if strings.HasSuffix(name, "-reset") { // each row's documents, as our data pipeline marks them
				for r := range b {
					row := bt.Tokens[r*s : (r+1)*s]
					_, pos, _ := gpt.LTRMasksAndPositionIDs(row, 7, true, true, false, false)
					bt.Positions = append(bt.Positions, pos...)
					bt.DocStart = append(bt.DocStart, gpt.DocStarts(row, 7)...)
				}
			}
			st := m.NewStash(s, b)
			sum, n, err := m.Forward(st, bt, 0, 0)
			require.NoError(t, err)
			want, _ := torchpickle.AsFloat64(get("loss"))
			require.InDelta(t, want, sum/n, 2e-5*want, "loss")
			require.NoError(t, m.Backward(st, float32(1/n), nil))

			grads := torchpickle.NewDict(false)
			for i, k := range get("grads").(*torchpickle.Dict).Keys {
				if name := k.(string); strings.HasPrefix(name, "language_model.") {
					k = legacyToOurs(name)
				}
				grads.Set(k, get("grads").(*torchpickle.Dict).Values[i])
			}
			require.Equal(t, len(m.Params.Trainable()), grads.Len())
			// The fixtures' weights are N(0, 1) (loss ≈ 12, saturated softmaxes), which
			// amplifies fp32 rounding: our largest error from Megatron's float64 is 2.3e-4
			// (Megatron's own fp32 run: 7.5e-4); a wrong term (an aux-loss factor of 2, a
			// dropped z-loss, counting the routed experts for the aux loss under group-limited
			// routing) gives 1e-2 and more. The largest error is logged (go test -v).
			tol := 3e-4
			if name == "mqa" || name == "gpt-legacy-layernorm-1p" {
				// The most saturated attention here (loss 28 with 1p): fp32 rounding grows 3× a
				// layer going back; Megatron's own fp32 run strays 5.3e-4 and 6.3e-4.
				tol = 2e-3
			}
			worst, worstName := 0.0, ""
			for _, p := range m.Params.Trainable() { // not the expert bias, a buffer
				x, ok := grads.Get(p.Name)
				require.True(t, ok, "Megatron has no gradient for %s", p.Name)
				e := relErr(p.Grad.ToF32(), x.(*tensor.Tensor).ToF32())
				require.LessOrEqual(t, e, tol, "%s: relative L2 error of the gradient", p.Name)
				if e > worst {
					worst, worstName = e, p.Name
				}
			}
			t.Logf("loss %.10f (Megatron %.10f); largest gradient error %.2e, %s", sum/n, want, worst, worstName)
		})
	}
}

// TestMatchesMegatronSteps: two training iterations from the fixtures' weights give Megatron's
// losses, gradient norms and updated parameters (megatron_steps.pt: Megatron's
// DistributedDataParallel and get_megatron_optimizer, fp32 Adam with lr 1e-3, β2 0.95,
// weight decay 0.1 except on biases and 1-D parameters, gradients clipped to norm 1; the
// word embeddings and the output layer at their own lr with --decoupled-lr).
func TestMatchesMegatronSteps(t *testing.T) {
	for name, tc := range map[string]struct {
		fixture, ref string
		decoupled    float64 // --decoupled-lr (0: none)
		tweak        func(c *layers.Config)
	}{
		"dense":              {"dense", "megatron_steps.pt", 0, func(c *layers.Config) {}},
		"dense-decoupled-lr": {"dense", "megatron_steps_decoupled_lr.pt", 5e-3, func(c *layers.Config) {}},
		// Megatron-Core's aux coefficient 0.01 is 0.01/k here.
		"qwen-moe": {"qwen-moe", "megatron_steps.pt", 0, func(c *layers.Config) { c.MoEAuxLossCoeff, c.MoEZLossCoeff = 0.005, 0.001 }},
		// With the expert bias's update after each backward.
		"deepseek-moe": {"deepseek-moe", "megatron_steps.pt", 0, func(c *layers.Config) {}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "torch_dist", tc.fixture)
			be := cpu.New()
			m := fixtureModel(t, be, dir, tc.tweak)
			opt := optim.NewAdam(be, m.Params, optim.AdamConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, ClipGrad: 1}, false, optim.Groups{})
			opt.DecoupledLR = tc.decoupled
			v, err := torchpickle.Load(filepath.Join(dir, tc.ref))
			require.NoError(t, err)
			ref := v.(*torchpickle.Dict)
			list := func(k string) []any { x, ok := ref.Get(k); require.True(t, ok, k); return x.([]any) }
			tokens, labels, losses, norms := list("tokens"), list("labels"), list("loss"), list("grad_norm")
			for i := range tokens {
				bt, b, s := megatronBatch(tokens[i], labels[i])
				opt.ZeroGrads()
				st := m.NewStash(s, b)
				sum, n, err := m.Forward(st, bt, 0, uint64(i))
				require.NoError(t, err)
				require.NoError(t, m.Backward(st, float32(1/n), nil))
				require.NoError(t, opt.ReduceGrads())
				require.NoError(t, m.UpdateExpertBias(nil))
				norm, ok, err := opt.Step(1e-3)
				require.NoError(t, err)
				require.True(t, ok)
				wantLoss, _ := torchpickle.AsFloat64(losses[i])
				wantNorm, _ := torchpickle.AsFloat64(norms[i])
				require.InDelta(t, wantLoss, sum/n, 2e-5*wantLoss, "step %d loss", i+1)
				require.InDelta(t, wantNorm, norm, 3e-4*wantNorm, "step %d grad norm", i+1)
			}
			params, _ := ref.Get("params")
			for _, p := range m.Params {
				x, ok := params.(*torchpickle.Dict).Get(p.Name)
				require.True(t, ok, p.Name)
				// Adam moves an element by about lr whatever its gradient's size, so an element
				// whose gradient is near 0 differs by up to lr/2 (seen: 5.5e-4 in one expert
				// weight, 1.4e-5 of the tensor); weight decay off by 0.1 shows as 1e-4.
				require.LessOrEqual(t, relErr(p.Data.ToF32(), x.(*tensor.Tensor).ToF32()), 5e-5, "%s after the steps", p.Name)
			}
		})
	}
}

// fixtureModel builds a fixture's model (TP = 1, fp32, config adjusted by tweak) from its
// torch_dist folder.
func fixtureModel(t *testing.T, be *cpu.Backend, dir string, tweak func(c *layers.Config)) *layers.GPTModel {
	ck, err := Open(filepath.Join(dir, "torch_dist"))
	require.NoError(t, err)
	defer ck.Close()
	cfg := ck.Config
	cfg.TensorModelParallelSize = 1
	tweak(&cfg)
	m, err := layers.NewGPTModel(be, cfg, 0)
	require.NoError(t, err)
	for _, p := range m.Params {
		v, err := p.LocalFrom(func(q *layers.Param) ([]float32, error) {
			v, _, err := ck.Full(q.InitKey)
			return v, err
		}, 0, 1)
		require.NoError(t, err)
		be.Upload(p.Data, tensor.FromF32(v, p.Shape...))
	}
	return m
}

// megatronBatch is a [b, s] batch of Megatron's tokens and labels, every label counted.
func megatronBatch(tokens, labels any) (layers.Batch, int, int) {
	tk, lb := tokens.(*tensor.Tensor), labels.(*tensor.Tensor)
	b, s := tk.Dim(0), tk.Dim(1)
	bt := layers.Batch{Tokens: tk.I64(), Labels: lb.I64(), LossMask: make([]float32, b*s)}
	for i := range bt.LossMask {
		bt.LossMask[i] = 1
	}
	return bt, b, s
}

// relErr is ‖got − want‖ / ‖want‖.
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num, den = num+d*d, den+float64(want[i])*float64(want[i])
	}
	return math.Sqrt(num / den)
}
