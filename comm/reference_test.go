package comm

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/tensor"
)

// TestReduceSerialMatchesTorch checks the reduction's definition against torch doing the
// same fold (testdata/torch_fold.py): float32 accumulation of half types rounded once,
// wrapping integer sums, NaN-propagating max/min, avg = sum / n.
func TestReduceSerialMatchesTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("/usr/bin/python3 with torch not available")
	}
	const n, m = 5, 4001
	dir := t.TempDir()
	inputs := map[tensor.DType][]*tensor.Tensor{}
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16, tensor.I32, tensor.I64, tensor.U8} {
		rng := rand.New(rand.NewPCG(uint64(dt), 7))
		in := make([]*tensor.Tensor, n)
		var raw []byte
		for r := range in {
			in[r] = tensor.New(dt, m)
			if dt.IsFloat() {
				v := make([]float32, m)
				for i := range v {
					v[i] = float32(rng.NormFloat64() * float64(int(1)<<rng.IntN(14)))
				}
				v[r*7] = float32(rng.Float64()) / 0 * 0 // one NaN per rank
				tensor.ConvertFromF32(in[r], v)
			} else {
				for i := range in[r].Data {
					in[r].Data[i] = byte(rng.Uint32())
				}
			}
			raw = append(raw, in[r].Data...)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, "in_"+dt.String()+".bin"), raw, 0o644))
		inputs[dt] = in
	}
	out, err := exec.Command(py, "testdata/torch_fold.py", strconv.Itoa(n), strconv.Itoa(m), dir).CombinedOutput()
	require.NoError(t, err, "torch_fold.py: %s", out)
	for dt, in := range inputs {
		for _, op := range []Op{Sum, Max, Min, Avg} {
			if op == Avg && !dt.IsFloat() {
				continue
			}
			got, err := ReduceSerial(in, op)
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(dir, "out_"+dt.String()+"_"+op.String()+".bin"))
			require.NoError(t, err)
			if dt == tensor.BF16 || dt == tensor.F16 {
				// NaN payloads differ between torch and Go; compare NaN-ness, then bits.
				g, w := got.ToF32(), tensor.FromF32Values(dt, make([]float32, m), m)
				copy(w.Data, want)
				wf := w.ToF32()
				for i := range g {
					if g[i] != g[i] || wf[i] != wf[i] {
						assert.True(t, g[i] != g[i] && wf[i] != wf[i], "%v %v [%d]: %v vs torch %v", dt, op, i, g[i], wf[i])
						got.U16()[i], w.U16()[i] = 0, 0
					}
				}
				want = w.Data
			}
			if dt == tensor.F32 {
				g := got.F32()
				w := tensor.New(dt, m)
				copy(w.Data, want)
				for i := range g {
					if g[i] != g[i] && w.F32()[i] != w.F32()[i] {
						g[i], w.F32()[i] = 0, 0
					}
				}
				want = w.Data
			}
			assert.Equal(t, want, got.Data, "%v %v", dt, op)
		}
	}
}
