package hf_test

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/ckpt/torchpickle"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

func fixtureDir(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "hf", name)
}

// hfBatch turns HF's input_ids [B, T] into our batch: labels shifted left and the last
// position masked, which is HF's internal shift (mean over B·(T−1) tokens).
func hfBatch(ids []int64, b, t int) layers.Batch {
	bt := layers.Batch{Tokens: ids, Labels: make([]int64, len(ids)), LossMask: make([]float32, len(ids))}
	for i := 0; i < b; i++ {
		for j := 0; j < t-1; j++ {
			bt.Labels[i*t+j] = ids[i*t+j+1]
			bt.LossMask[i*t+j] = 1
		}
	}
	return bt
}

func maxAbsDiff(a, b []float32) (d float64, ref float64) {
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		ref = math.Max(ref, math.Abs(float64(b[i])))
	}
	return
}

func relL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// TestMatchesHuggingFace loads every fixture model and checks logits, loss, hidden states
// and every parameter gradient against Hugging Face's, with the fixtures' tolerances.
func TestMatchesHuggingFace(t *testing.T) {
	for _, name := range []string{"llama-mha", "llama-gqa", "gpt2", "bloom"} {
		t.Run(name, func(t *testing.T) {
			dir := fixtureDir(name)
			be := cpu.New()
			m, gm, err := hf.Load(be, dir)
			require.NoError(t, err)
			optim.Attach(be, gm.Params, 1)

			in, err := safetensors.Open(filepath.Join(dir, "inputs.safetensors"))
			require.NoError(t, err)
			defer in.Close()
			idsT, err := in.Tensor("input_ids")
			require.NoError(t, err)
			b, s := idsT.Dim(0), idsT.Dim(1)
			ids := append([]int64(nil), idsT.I64()...)

			out, err := safetensors.Open(filepath.Join(dir, "outputs.safetensors"))
			require.NoError(t, err)
			defer out.Close()
			ref := func(key string) []float32 {
				tt, err := out.Tensor(key)
				require.NoError(t, err, key)
				return tt.ToF32()
			}

			st := gm.NewStash(s, b)
			lossSum, ntok, err := gm.Forward(st, hfBatch(ids, b, s), 0, 0)
			require.NoError(t, err)
			loss := lossSum / ntok
			require.InDelta(t, float64(ref("loss")[0]), loss, 1e-5, "loss")
			t.Logf("loss %.7f ref %.7f", loss, ref("loss")[0])
			require.InDelta(t, float64(ref("loss_f64")[0]), loss, 1e-5, "loss_f64")

			// Logits: ours are [s, b, V]; HF's [b, s, V].
			v := m.Config.PaddedVocabSize
			ours := st.Logits.F32()
			got := make([]float32, len(ours))
			for si := 0; si < s; si++ {
				for bi := 0; bi < b; bi++ {
					copy(got[(bi*s+si)*v:(bi*s+si+1)*v], ours[(si*b+bi)*v:(si*b+bi+1)*v])
				}
			}
			d, _ := maxAbsDiff(got, ref("logits"))
			require.LessOrEqual(t, d, 1e-4, "logits max abs diff")

			// Hidden states: 0 = embeddings, i = output of block i−1, L = final norm output.
			L := m.Config.NumLayers
			for i := 0; i <= L; i++ {
				var h *tensor.Tensor
				switch {
				case i == L:
					h = st.FinalHidden()
				default:
					h = st.HiddenState(i - 1)
				}
				hv, hd := h.F32(), m.Config.HiddenSize
				g := make([]float32, len(hv))
				for si := 0; si < s; si++ {
					for bi := 0; bi < b; bi++ {
						copy(g[(bi*s+si)*hd:(bi*s+si+1)*hd], hv[(si*b+bi)*hd:(si*b+bi+1)*hd])
					}
				}
				d, _ := maxAbsDiff(g, ref("hidden_states."+itoa(i)))
				require.LessOrEqual(t, d, 1e-4, "hidden_states.%d", i)
			}

			require.NoError(t, gm.Backward(st, float32(1/ntok), nil))
			grads, err := m.Export(be, gm, true)
			require.NoError(t, err)
			checked := 0
			for _, key := range out.Names() {
				if len(key) < 5 || key[:5] != "grad." {
					continue
				}
				g, ok := grads[key[5:]]
				require.True(t, ok, "no gradient exported for %s", key[5:])
				want := ref(key)
				d, mx := maxAbsDiff(g.F32(), want)
				require.LessOrEqual(t, d, 1e-4*mx+1e-12, "%s max abs diff (max |ref| %g)", key, mx)
				require.LessOrEqual(t, relL2(g.F32(), want), 1e-4, "%s rel L2", key)
				checked++
			}
			require.Equal(t, len(grads), checked, "every parameter's gradient is in the fixture")
		})
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// TestSaveLayernorm1p: a model with --apply-layernorm-1p (LayerNorm weights stored as γ − 1)
// saved as Hugging Face GPT-2 holds γ, so the loaded plain model has the same loss.
func TestSaveLayernorm1p(t *testing.T) {
	be := cpu.New()
	c, err := layers.Preset("tiny-gpt2")
	require.NoError(t, err)
	c.AttentionDropout, c.HiddenDropout, c.ApplyLayernorm1p = 0, 0, true
	gm, err := layers.NewGPTModel(be, c, 9)
	require.NoError(t, err)
	for _, p := range gm.Params {
		for j := range p.Data.F32() { // norm weights away from their initial 0 too
			p.Data.F32()[j] += 0.003 * float32(j%5)
		}
	}
	dir := filepath.Join(t.TempDir(), "gpt2")
	_, err = hf.Save(be, gm, dir, hf.GPT2, tensor.F32, nil)
	require.NoError(t, err)
	_, loaded, err := hf.Load(be, dir)
	require.NoError(t, err)
	require.False(t, loaded.Cfg.ApplyLayernorm1p)
	loss := func(m *layers.GPTModel) float64 {
		bt := layers.Batch{Tokens: make([]int64, 32), Labels: make([]int64, 32), LossMask: make([]float32, 32)}
		for i := range bt.Tokens {
			bt.Tokens[i], bt.Labels[i], bt.LossMask[i] = int64(i*5%256), int64(i*3%256), 1
		}
		st := m.NewStash(16, 2)
		sum, n, err := m.Forward(st, bt, 0, 0)
		require.NoError(t, err)
		return sum / n
	}
	require.InDelta(t, loss(gm), loss(loaded), 1e-6)
}

// TestLoadPytorchBin: a folder holding pytorch_model.bin (a torch.save'd state dict, as
// older checkpoints ship, here in bf16) instead of safetensors loads into the same model.
func TestLoadPytorchBin(t *testing.T) {
	src := fixtureDir("llama-gqa")
	set, err := safetensors.OpenDir(src)
	require.NoError(t, err)
	defer set.Close()
	dir := t.TempDir()
	sd := torchpickle.NewDict(true)
	for _, n := range set.Names() {
		x, err := set.Tensor(n)
		require.NoError(t, err)
		sd.Set(n, tensor.FromF32Values(tensor.BF16, x.ToF32(), x.Shape()...))
	}
	require.NoError(t, torchpickle.Save(filepath.Join(dir, "pytorch_model.bin"), sd))
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644))

	_, want, err := hf.Load(cpu.New(), src)
	require.NoError(t, err)
	_, got, err := hf.Load(cpu.New(), dir)
	require.NoError(t, err)
	for i, p := range want.Params {
		w := p.Data.F32()
		for j, v := range got.Params[i].Data.F32() {
			require.Equal(t, tensor.F32FromBF16(tensor.BF16FromF32(w[j])), v, "%s[%d] (bf16 in the .bin)", p.Name, j)
		}
	}
	empty := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(empty, "config.json"), cfg, 0o644))
	_, _, err = hf.Load(cpu.New(), empty)
	require.ErrorContains(t, err, "has neither *.safetensors nor pytorch_model*.bin files")
}
