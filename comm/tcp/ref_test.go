package tcp

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// world runs f on every rank of an in-process world of n ranks and returns each rank's error.
func world(t *testing.T, n int, o Options, f func(c comm.Comm) error) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	comms, err := LocalWorld(ctx, n, o)
	require.NoError(t, err)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(c)
		}()
	}
	wg.Wait()
	for _, c := range comms {
		c.Close()
	}
	return errs
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		require.NoError(t, err, "rank %d", r)
	}
}

// input returns rank r's deterministic test tensor: normal floats with a spread of
// magnitudes (so the summation order changes the rounding), full-range integers (so sums wrap).
func input(dt tensor.DType, n, r int, seed uint64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, uint64(r)*7919+uint64(dt)))
	t := tensor.New(dt, n)
	switch dt {
	case tensor.F32, tensor.BF16, tensor.F16, tensor.F64:
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * float64(int(1)<<rng.IntN(12)))
		}
		if dt == tensor.F64 {
			d := t.F64()
			for i := range d {
				d[i] = float64(v[i]) + rng.Float64()*1e-9
			}
			return t
		}
		tensor.ConvertFromF32(t, v)
	case tensor.I32:
		for i := range t.I32() {
			t.I32()[i] = int32(rng.Uint32())
		}
	case tensor.I64:
		for i := range t.I64() {
			t.I64()[i] = int64(rng.Uint64())
		}
	case tensor.U8:
		for i := range t.Data {
			t.Data[i] = byte(rng.Uint32())
		}
	}
	return t
}

// reference reduces the ranks' tensors serially, element by element: a left fold in rank
// order, half types accumulated in float32 and rounded once, Avg = sum / n.
func reference(in []*tensor.Tensor, op comm.Op) *tensor.Tensor {
	n, dt, m := len(in), in[0].DType(), in[0].Numel()
	out := tensor.New(dt, in[0].Shape()...)
	pick := func(acc, x float64) float64 {
		switch op {
		case comm.Max:
			if x > acc {
				return x
			}
			return acc
		case comm.Min:
			if x < acc {
				return x
			}
			return acc
		}
		return acc + x
	}
	var f32 [][]float32
	if dt == tensor.F32 || dt == tensor.BF16 || dt == tensor.F16 {
		for _, t := range in {
			f32 = append(f32, t.ToF32())
		}
	}
	for i := range m {
		switch dt {
		case tensor.F32, tensor.BF16, tensor.F16:
			var acc float32
			for r := range n {
				x := f32[r][i]
				if r == 0 {
					acc = x
				} else if op == comm.Sum || op == comm.Avg {
					acc += x // float32 addition, rounded each step
				} else {
					acc = float32(pick(float64(acc), float64(x)))
				}
			}
			if op == comm.Avg {
				acc /= float32(n)
			}
			tensor.ConvertFromF32(out.Slice(i, i+1), []float32{acc})
		case tensor.F64:
			var acc float64
			for r := range n {
				if x := in[r].F64()[i]; r == 0 {
					acc = x
				} else {
					acc = pick(acc, x)
				}
			}
			if op == comm.Avg {
				acc /= float64(n)
			}
			out.F64()[i] = acc
		case tensor.I32:
			acc := in[0].I32()[i]
			for r := 1; r < n; r++ {
				x := in[r].I32()[i]
				switch op {
				case comm.Sum:
					acc += x
				case comm.Max:
					acc = max(acc, x)
				case comm.Min:
					acc = min(acc, x)
				}
			}
			out.I32()[i] = acc
		case tensor.I64:
			acc := in[0].I64()[i]
			for r := 1; r < n; r++ {
				x := in[r].I64()[i]
				switch op {
				case comm.Sum:
					acc += x
				case comm.Max:
					acc = max(acc, x)
				case comm.Min:
					acc = min(acc, x)
				}
			}
			out.I64()[i] = acc
		case tensor.U8:
			acc := in[0].Data[i]
			for r := 1; r < n; r++ {
				x := in[r].Data[i]
				switch op {
				case comm.Sum:
					acc += x
				case comm.Max:
					acc = max(acc, x)
				case comm.Min:
					acc = min(acc, x)
				}
			}
			out.Data[i] = acc
		}
	}
	return out
}
