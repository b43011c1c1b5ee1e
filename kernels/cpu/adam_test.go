package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestAdamWMatchesTorch runs six steps of torch.optim.AdamW (torch 1.13's single-tensor
// path on CPU) and of AdamW on the same float32 parameters and gradients, and requires p,
// exp_avg and exp_avg_sq to agree to 1 float32 ulp after every step (they agree bit for
// bit on AVX2 machines; the ulp allows for FMA double-rounding ties).
func TestAdamWMatchesTorch(t *testing.T) {
	t.Parallel()
	const n, steps = 4099, 6
	h := kernels.AdamParams{LR: 3e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	r := rand.New(rand.NewPCG(7, 7))
	dir := t.TempDir()
	p0 := make([]float32, n)
	for i := range p0 {
		p0[i] = float32(r.NormFloat64())
	}
	writeF32(t, filepath.Join(dir, "p0"), p0)
	grads := make([][]float32, steps)
	for s := range grads {
		grads[s] = make([]float32, n)
		for i := range grads[s] {
			grads[s][i] = float32(r.NormFloat64() * 0.1)
		}
		if s == 2 {
			clear(grads[s][:50]) // moments decaying towards eps
		}
		writeF32(t, filepath.Join(dir, fmt.Sprint("g", s)), grads[s])
	}
	torchPython(t, `
d, steps = sys.argv[1], int(sys.argv[2])
lr, b1, b2, eps, wd = (float(x) for x in sys.argv[3:8])
p = torch.nn.Parameter(torch.from_numpy(np.fromfile(d + "/p0", dtype=np.float32)))
opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
for s in range(steps):
    p.grad = torch.from_numpy(np.fromfile(d + "/g%d" % s, dtype=np.float32))
    opt.step()
    st = opt.state[p]
    p.detach().numpy().tofile(d + "/p%d" % s)
    st["exp_avg"].numpy().tofile(d + "/m%d" % s)
    st["exp_avg_sq"].numpy().tofile(d + "/v%d" % s)
`, dir, fmt.Sprint(steps), f32s(h.LR), f32s(h.Beta1), f32s(h.Beta2), f32s(h.Eps), f32s(h.WeightDecay))

	b := New()
	p := tensor.FromF32(append([]float32(nil), p0...), n)
	m, v := tensor.New(tensor.F32, n), tensor.New(tensor.F32, n)
	for s := range steps {
		h.Step = s + 1
		b.AdamW(p, tensor.FromF32(grads[s], n), m, v, h)
		for name, got := range map[string][]float32{"p": p.F32(), "m": m.F32(), "v": v.F32()} {
			want := readF32(t, filepath.Join(dir, fmt.Sprint(name, s)))
			var worst int64
			for i := range want {
				worst = max(worst, ulps(got[i], want[i]))
			}
			t.Logf("step %d %s: worst %d ulp", s+1, name, worst)
			require.LessOrEqualf(t, worst, int64(1), "step %d %s", s+1, name)
		}
	}
}

// f32s formats a float32 so Python reads back the same float32 value.
func f32s(x float32) string { return fmt.Sprint(float64(x)) }

// ulps is the distance between a and b in float32 units in the last place.
func ulps(a, b float32) int64 {
	ia, ib := int64(math.Float32bits(a)), int64(math.Float32bits(b))
	if ia>>31 != ib>>31 {
		return int64(math.Abs(float64(a-b)) / float64(math.SmallestNonzeroFloat32))
	}
	d := ia - ib
	if d < 0 {
		d = -d
	}
	return d
}
