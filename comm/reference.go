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
			acc := in[0].I32()[i]
			for r := 1; r < n; r++ {
				x := in[r].I32()[i]
				switch op {
				case Sum:
					acc += x
				case Max:
					acc = max(acc, x)
				case Min:
					acc = min(acc, x)
				}
			}
			out.I32()[i] = acc
		case tensor.I64:
			acc := in[0].I64()[i]
			for r := 1; r < n; r++ {
				x := in[r].I64()[i]
				switch op {
				case Sum:
					acc += x
				case Max:
					acc = max(acc, x)
				case Min:
					acc = min(acc, x)
				}
			}
			out.I64()[i] = acc
		case tensor.U8:
			acc := in[0].Data[i]
			for r := 1; r < n; r++ {
				x := in[r].Data[i]
				switch op {
				case Sum:
					acc += x
				case Max:
					acc = max(acc, x)
				case Min:
					acc = min(acc, x)
				}
			}
			out.Data[i] = acc
		}
	}
	return out, nil
}
