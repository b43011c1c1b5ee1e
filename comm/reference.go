package comm

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// ReduceSerial is the definition of a reduction's result (see Comm), computed serially
// element by element: the left fold over in[0], in[1], … (rank order), half types
// accumulated in float32 and rounded once, Avg = fold / n. Tests compare backends with it.
// The tensors must have the same dtype and element count.
func ReduceSerial(in []*tensor.Tensor, op Op) (*tensor.Tensor, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("ReduceSerial: no tensors")
	}
	n, dt, m := len(in), in[0].DType(), in[0].Numel()
	for r, t := range in {
		if err := CheckTensor(fmt.Sprintf("ReduceSerial: tensor %d", r), t); err != nil {
			return nil, err
		}
		if t.DType() != dt || t.Numel() != m {
			return nil, fmt.Errorf("ReduceSerial: tensor %d is %v, tensor 0 is %v", r, t, in[0])
		}
	}
	if err := CheckOp(op, dt); err != nil {
		return nil, err
	}
	out := tensor.New(dt, in[0].Shape()...)
	pick := func(acc, x float64) float64 {
		switch op {
		case Max: // NaN propagates, as torch.maximum
			if x > acc || x != x {
				return x
			}
			return acc
		case Min:
			if x < acc || x != x {
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
				} else if op == Sum || op == Avg {
					acc += x // float32 addition, rounded each step
				} else {
					acc = float32(pick(float64(acc), float64(x)))
				}
			}
			if op == Avg {
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
			if op == Avg {
				acc /= float64(n)
			}
			out.F64()[i] = acc
		case tensor.I32:
			out.I32()[i] = reduceInts(op, n, func(r int) int32 { return in[r].I32()[i] })
		case tensor.I64:
			out.I64()[i] = reduceInts(op, n, func(r int) int64 { return in[r].I64()[i] })
		case tensor.U8:
			out.Data[i] = reduceInts(op, n, func(r int) uint8 { return in[r].Data[i] })
		}
	}
	return out, nil
}

// reduceInts reduces the n ranks' values x(r) of one element with op (integers wrap on
// Sum, as NCCL's do).
func reduceInts[T int32 | int64 | uint8](op Op, n int, x func(r int) T) T {
	acc := x(0)
	for r := 1; r < n; r++ {
		switch op {
		case Sum:
			acc += x(r)
		case Max:
			acc = max(acc, x(r))
		case Min:
			acc = min(acc, x(r))
		}
	}
	return acc
}
