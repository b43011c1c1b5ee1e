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
