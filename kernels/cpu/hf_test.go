package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// torchPython runs a Python snippet with torch imported, skipping the test when
// /usr/bin/python3 or torch is missing. args are passed as sys.argv[1:].
func torchPython(t *testing.T, script string, args ...string) string {
	t.Helper()
	if exec.Command("/usr/bin/python3", "-c", "import torch").Run() != nil {
		t.Skip("skipping: /usr/bin/python3 with torch not available (Debian python3-torch)")
	}
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", "import sys, math, torch, numpy as np\n" + script}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "python: %s", out)
	return string(out)
}

func writeF32(t *testing.T, path string, v []float32) {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

func readF32(t *testing.T, path string) []float32 {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// HF 4.35 LlamaRotaryEmbedding + apply_rotary_pos_emb in float32, with GPT-NeoX's partial
// rotary (rotate the first rot channels, pass the rest). Each argument is one case:
// "in,out,B,H,S,D,base,rot,offset".
const hfRoPE = `
def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)
for arg in sys.argv[1:]:
    inp, outp, B, H, S, D, base, rot, off = arg.split(",")
    B, H, S, D, rot, off, base = int(B), int(H), int(S), int(D), int(rot), int(off), float(base)
    x = torch.from_numpy(np.fromfile(inp, dtype=np.float32)).reshape(B, H, S, D)
    inv_freq = 1.0 / (base ** (torch.arange(0, rot, 2).float() / rot))
    t = torch.arange(off + S, dtype=inv_freq.dtype)
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[off:], emb.sin()[off:]
    xr, xp = x[..., :rot], x[..., rot:]
    out = torch.cat(((xr * cos) + (rotate_half(xr) * sin), xp), dim=-1)
    out.numpy().astype(np.float32).tofile(outp)
    inv_freq.numpy().astype(np.float32).tofile(outp + ".inv")
`

// TestRoPEMatchesHF compares RoPE with Hugging Face's float32 computation in torch, at
// positions up to 8k where a float64 angle would differ by more than 1e-4.
func TestRoPEMatchesHF(t *testing.T) {
	t.Parallel()
	cases := []struct {
		b, h, s, d int
		p          kernels.RoPEParams
	}{
		{2, 3, 33, 64, kernels.RoPEParams{Base: 10000, RotaryDim: 64}},
		{1, 2, 40, 128, kernels.RoPEParams{Base: 1e6, RotaryDim: 128, PosOffset: 8000}},
		{1, 2, 17, 80, kernels.RoPEParams{Base: 10000, RotaryDim: 40, PosOffset: 3000}}, // rotary-percent 0.5
	}
	be := New()
	dir := t.TempDir()
	xs := make([][]float32, len(cases))
	var args []string
	for i, c := range cases {
		x := make([]float32, c.b*c.h*c.s*c.d)
		for j := range x {
			x[j] = float32(math.Sin(float64(j)*0.37+float64(i))) * 2
		}
		xs[i] = x
		in, out := filepath.Join(dir, fmt.Sprint(i, ".in")), filepath.Join(dir, fmt.Sprint(i, ".out"))
		writeF32(t, in, x)
		args = append(args, fmt.Sprintf("%s,%s,%d,%d,%d,%d,%v,%d,%d", in, out, c.b, c.h, c.s, c.d, c.p.Base, c.p.RotaryDim, c.p.PosOffset))
	}
	torchPython(t, hfRoPE, args...)
	for i, c := range cases {
		t.Run(fmt.Sprintf("%+v", c.p), func(t *testing.T) {
			outPath := filepath.Join(dir, fmt.Sprint(i, ".out"))
			want := readF32(t, outPath)
			got := tensor.New(tensor.F32, c.b, c.h, c.s, c.d)
			be.RoPE(got, tensor.FromF32(xs[i], c.b, c.h, c.s, c.d), c.p)
			var maxd float64
			for j, g := range got.F32() {
				maxd = math.Max(maxd, math.Abs(float64(g-want[j])))
			}
			// torch's float32 cos/sin are within an ulp of the correctly rounded ones.
			require.Less(t, maxd, 2e-6, "max |RoPE − HF|")
			// θ matches torch's inv_freq to the ulp (torch's float32 pow is not always
			// correctly rounded: 1 of 64 values differs by an ulp at base 1e6).
			wantInv, gotInv := readF32(t, outPath+".inv"), RoPEInvFreq(c.p.Base, c.p.RotaryDim)
			for j := range wantInv {
				require.InEpsilonf(t, wantInv[j], gotInv[j], 1.2e-7, "inv_freq[%d]", j)
			}
		})
	}
}

// TestALiBiSlopesMatchHF compares ALiBiSlopes with BLOOM's build_alibi_tensor slopes.
func TestALiBiSlopesMatchHF(t *testing.T) {
	t.Parallel()
	ns := []int{1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 40, 64, 71, 112}
	var args []string
	for _, n := range ns {
		args = append(args, fmt.Sprint(n))
	}
	out := torchPython(t, `
for a in sys.argv[1:]:
    num_heads = int(a)
    closest_power_of_2 = 2 ** math.floor(math.log2(num_heads))
    base = torch.tensor(2 ** (-(2 ** -(math.log2(closest_power_of_2) - 3))), dtype=torch.float32)
    powers = torch.arange(1, 1 + closest_power_of_2, dtype=torch.int32)
    slopes = torch.pow(base, powers)
    if closest_power_of_2 != num_heads:
        extra_base = torch.tensor(2 ** (-(2 ** -(math.log2(2 * closest_power_of_2) - 3))), dtype=torch.float32)
        num_remaining_heads = min(closest_power_of_2, num_heads - closest_power_of_2)
        extra_powers = torch.arange(1, 1 + 2 * num_remaining_heads, 2, dtype=torch.int32)
        slopes = torch.cat([slopes, torch.pow(extra_base, extra_powers)], dim=0)
    print(" ".join(repr(float(s)) for s in slopes))
`, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(ns))
	for i, n := range ns {
		var want []float32
		for _, f := range strings.Fields(lines[i]) {
			var v float64
			_, err := fmt.Sscan(f, &v)
			require.NoError(t, err)
			want = append(want, float32(v))
		}
		got := ALiBiSlopes(n)
		require.Len(t, got, n)
		for h := range got {
			require.InEpsilonf(t, want[h], got[h], 2e-7, "n=%d head %d", n, h)
		}
	}
}

// TestRoPEInvFreqLlama3MatchesHF compares RoPEInvFreqScaled with transformers'
// _compute_llama3_parameters in float32 torch (Llama 3.1's factor 8 and Llama 3.2's 32,
// low 1, high 4, 8192 positions): every θ in each band, to the ulp.
func TestRoPEInvFreqLlama3MatchesHF(t *testing.T) {
	t.Parallel()
	cases := []struct {
		base float64
		d    int
		sc   kernels.RoPEScaling
	}{
		{500000, 128, kernels.RoPEScaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OrigMaxPos: 8192}},
		{500000, 64, kernels.RoPEScaling{Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OrigMaxPos: 8192}},
		{10000, 16, kernels.RoPEScaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OrigMaxPos: 8192}},
	}
	var args []string
	for _, c := range cases {
		args = append(args, fmt.Sprintf("%v,%d,%v,%v,%v,%d", c.base, c.d, c.sc.Factor, c.sc.LowFreqFactor, c.sc.HighFreqFactor, c.sc.OrigMaxPos))
	}
	out := torchPython(t, `
for a in sys.argv[1:]:
    base, d, factor, low, high, old = a.split(",")
    base, d, factor, low, high, old = float(base), int(d), float(factor), float(low), float(high), int(old)
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    low_freq_wavelen = old / low
    high_freq_wavelen = old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old / wavelen - low) / (high - low)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    inv_freq_llama = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    print(" ".join(repr(float(v)) for v in inv_freq_llama))
`, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(cases))
	for i, c := range cases {
		got := RoPEInvFreqScaled(c.base, c.d, c.sc)
		plain := RoPEInvFreq(c.base, c.d)
		fields := strings.Fields(lines[i])
		require.Len(t, fields, len(got))
		bands := map[string]int{}
		for j, f := range fields {
			want, err := strconv.ParseFloat(f, 64)
			require.NoError(t, err)
			require.InEpsilonf(t, want, float64(got[j]), 1.2e-7, "base %v d %d: θ[%d]", c.base, c.d, j)
			switch r := got[j] / plain[j]; {
			case r == 1:
				bands["high"]++
			case math.Abs(float64(r*float32(c.sc.Factor))-1) < 1e-6:
				bands["low"]++
			default:
				bands["medium"]++
			}
		}
		require.Len(t, bands, 3, "base %v d %d: every band is exercised: %v", c.base, c.d, bands)
	}
}

// TestRoPEYaRNMatchesHF compares YaRN's θ (RoPEInvFreqScaled) with transformers'
// _compute_yarn_parameters in float32 torch, for Qwen2.5's long-context setting (base 1e6,
// factor 4 over 32768 positions) and DeepSeek's (base 10000, factor 40 over 4096, no
// rounding of the correction range): every θ within an ulp, all three regions (scaled,
// blended, plain) present; and that the tables carry the mscale on cos and sin.
func TestRoPEYaRNMatchesHF(t *testing.T) {
	t.Parallel()
	cases := []struct {
		base float64
		d    int
		sc   kernels.RoPEScaling
	}{
		{1e6, 128, kernels.RoPEScaling{YaRN: true, Factor: 4, OrigMaxPos: 32768, BetaFast: 32, BetaSlow: 1, RoundCorrection: true}},
		{10000, 64, kernels.RoPEScaling{YaRN: true, Factor: 40, OrigMaxPos: 4096, BetaFast: 32, BetaSlow: 1}},
	}
	var args []string
	for _, c := range cases {
		args = append(args, fmt.Sprintf("%v,%d,%v,%d,%v,%v,%v", c.base, c.d, c.sc.Factor, c.sc.OrigMaxPos, c.sc.BetaFast, c.sc.BetaSlow, c.sc.RoundCorrection))
	}
	out := torchPython(t, `
for a in sys.argv[1:]:
    base, dim, factor, old, beta_fast, beta_slow, truncate = a.split(",")
    base, dim, factor, old, beta_fast, beta_slow, truncate = float(base), int(dim), float(factor), int(old), float(beta_fast), float(beta_slow), truncate == "true"
    def find_correction_dim(num_rotations):
        return (dim * math.log(old / (num_rotations * 2 * math.pi))) / (2 * math.log(base))
    low, high = find_correction_dim(beta_fast), find_correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).to(dtype=torch.float) / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    extrapolation_factor = 1 - ramp
    inv_freq = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor
    print(" ".join(repr(float(v)) for v in inv_freq))
`, args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(cases))
	for i, c := range cases {
		got, plain := RoPEInvFreqScaled(c.base, c.d, c.sc), RoPEInvFreq(c.base, c.d)
		fields := strings.Fields(lines[i])
		require.Len(t, fields, len(got))
		regions := map[string]int{}
		for j, f := range fields {
			want, err := strconv.ParseFloat(f, 64)
			require.NoError(t, err)
			require.InEpsilonf(t, want, float64(got[j]), 1.2e-7, "base %v d %d: θ[%d]", c.base, c.d, j)
			switch r := float64(got[j] / plain[j]); {
			case r == 1:
				regions["plain"]++
			case math.Abs(r*c.sc.Factor-1) < 1e-6:
				regions["scaled"]++
			default:
				regions["blended"]++
			}
		}
		require.Len(t, regions, 3, "%+v: %v", c.sc, regions)
	}
	// The mscale multiplies the float32 cos and sin.
	sc := cases[0].sc
	sc.Concentration = 0.1*math.Log(4) + 1
	tab, ref := New().ropeTables(1e6, 128, 8, 0, sc), New().ropeTables(1e6, 128, 8, 0, cases[0].sc)
	for j := range ref.cos[:8*64] {
		require.Equal(t, ref.cos[j]*float32(sc.Concentration), tab.cos[j])
		require.Equal(t, ref.sin[j]*float32(sc.Concentration), tab.sin[j])
	}
}
