package train

import (
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/tensor"
)

// paramsNorm is Megatron's calc_params_l2_norm (--log-params-norm): the L2 norm of the model
// parameters as the model holds them (16-bit values widened), leaving out the tied output
// layer's copy and counting TP-replicated parameters on TP rank 0 only, summed over the
// model-parallel group (every data-parallel replica holds the same values).
func paramsNorm(be kernels.Backend, params layers.Params, tpRank int, mp comm.Comm) (float64, error) {
	var ss float64
	for _, p := range params {
		if p.Shared || (!p.TensorParallel() && tpRank != 0) {
			continue
		}
		if p.Data.DType() == tensor.F16 { // not a SumSquares dtype: widen on the host
			h := tensor.New(tensor.F16, p.Data.Shape()...)
			be.Download(h, p.Data)
			for _, v := range h.U16() {
				x := float64(tensor.F32FromF16(v))
				ss += x * x
			}
			continue
		}
		ss += be.SumSquares(p.Data)
	}
	if mp != nil && mp.Size() > 1 {
		t := tensor.New(tensor.F64, 1)
		t.F64()[0] = ss
		if err := mp.AllReduce(t, comm.Sum); err != nil {
			return 0, fmt.Errorf("all-reduce of the params norm: %w", err)
		}
		ss = t.F64()[0]
	}
	return math.Sqrt(ss), nil
}
