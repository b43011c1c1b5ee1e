package layers

import (
	"math"

	"github.com/gomegatron/gomegatron/tensor"
)

// normHead is Baichuan 2's NormHead (--use-normhead): the output layer multiplies by its
// weight's rows scaled to unit L2 norm, Ŵ_v = W_v/‖W_v‖, recomputed from W in every
// forward (torch.nn.functional.normalize, as Baichuan 2 trains), so the gradient reaches
// W through the normalisation:
//
//	dW_v = (dŴ_v − Ŵ_v·⟨Ŵ_v, dŴ_v⟩) / ‖W_v‖
//
// Both are the RMSNorm over each row with weight 1/√h and eps ε/h (ε = 10⁻²⁴, so that a
// zero row stays zero, as F.normalize's max(‖w‖, 10⁻¹²) keeps it):
// w·rsqrt(mean(w²) + ε/h)/√h = w/√(‖w‖² + ε). Rows split over TP normalise locally. The
// vocabulary's padding rows (ids ≥ the true vocabulary) get no gradient: converted
// checkpoints hold them as zeros, whose normalisation has a gradient of 1/√ε.
type normHead struct {
	w           Param          // Ŵ in the dtype the GEMM reads; Grad is dŴ (F32)
	rstd        *tensor.Tensor // [V/TP] F32
	gamma, dgam *tensor.Tensor // [h] F32: 1/√h, and its unused gradient
	dw          *tensor.Tensor // backward scratch: dW before accumulation (F32)
	dout, dx    *tensor.Tensor // and, for BF16 weights, dŴ and dW in their dtype
	// src is what the norm read last (the weights, or wide: F16 weights widened, as the
	// norms take F32 or BF16 only).
	src, wide *tensor.Tensor
}

// headWeight is the weight the output GEMMs read: the output layer's, or its row-normalised
// copy under --use-normhead (made here from the current weights).
func (m *GPTModel) headWeight() *Param {
	w := m.outputWeight()
	if !m.Cfg.UseNormHead {
		return w
	}
	src := weight(w)
	nh := &m.normHead
	if src.DType() == tensor.F16 {
		if nh.wide == nil {
			nh.wide = m.be.Alloc(tensor.F32, src.Shape()...)
		}
		m.be.Cast(nh.wide, src)
		src = nh.wide
	}
	nh.src = src
	if nh.gamma == nil || nh.w.Data.DType() != src.DType() {
		rows, h := src.Dim(0), src.Dim(1)
		nh.w = Param{Name: w.Name, Shape: w.Shape, Data: m.be.Alloc(src.DType(), rows, h)}
		nh.rstd, nh.gamma, nh.dgam = m.be.Alloc(tensor.F32, rows), m.be.Alloc(tensor.F32, h), m.be.Alloc(tensor.F32, h)
		m.be.Fill(nh.gamma, float32(1/math.Sqrt(float64(h))))
	}
	m.be.RMSNorm(nh.w.Data, nh.rstd, src, nh.gamma, normHeadEps/float32(src.Dim(1)))
	return &nh.w
}

const normHeadEps = 1e-24

// headBackward runs the output layer's backward (d final = dlogits·Ŵ, dW += dlogitsᵀ·final)
// through the normalisation when --use-normhead is set.
func (m *GPTModel) headBackward(dfinal, dlogits, final *tensor.Tensor) {
	w := m.outputWeight()
	if !m.Cfg.UseNormHead {
		m.cast.backward(m.be, dfinal, dlogits, final, w)
		return
	}
	nh := &m.normHead
	if nh.w.Grad == nil {
		nh.w.Grad, nh.dw = m.be.Alloc(tensor.F32, w.Shape...), m.be.Alloc(tensor.F32, w.Shape...)
	}
	m.be.Fill(nh.w.Grad, 0)
	// Ŵ and rstd as this microbatch's forward left them: every forward makes them from the
	// same weights until the optimizer steps.
	m.cast.backward(m.be, dfinal, dlogits, final, &nh.w)
	src, dout := nh.src, nh.w.Grad
	if src.DType() != tensor.F32 { // the norm's activations share one dtype: dŴ rounded to it
		if nh.dout == nil || nh.dout.DType() != src.DType() {
			nh.dout, nh.dx = m.be.Alloc(src.DType(), w.Shape...), m.be.Alloc(src.DType(), w.Shape...)
		}
		m.be.Cast(nh.dout, nh.w.Grad)
		dout = nh.dout
		m.be.RMSNormBackward(nh.dx, nh.dgam, dout, src, nh.gamma, nh.rstd)
		m.be.Cast(nh.dw, nh.dx)
	} else {
		m.be.RMSNormBackward(nh.dw, nh.dgam, dout, src, nh.gamma, nh.rstd)
	}
	if pad := m.Cfg.VocabSize - m.vocabLo; pad < nh.dw.Dim(0) {
		m.be.Fill(nh.dw.Slice(max(pad, 0), nh.dw.Dim(0)), 0)
	}
	m.be.Axpy(w.Grad, 1, nh.dw)
}
