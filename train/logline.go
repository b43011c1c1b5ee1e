package train

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/layers"
)

// logFields are the values of one Megatron iteration line.
type logFields struct {
	Iteration, TrainIters int
	ConsumedSamples       int64
	ElapsedMS             float64
	TFLOPS                float64 // < 0: not printed (--log-throughput off)
	LR                    float64
	GlobalBatchSize       int
	Loss                  float64 // NaN: no successful iteration in the interval (field omitted)
	LossScale, GradNorm   float64 // GradNorm NaN: skipped iteration (field omitted)
	NumZeros              float64 // NaN: not printed (--log-num-zeros-in-grad off, or a skipped iteration)
	ParamsNorm            float64 // NaN: not printed (--log-params-norm off)
	Skipped, NaN          int
}

// format renders Megatron's training_log line, field by field with its format specs.
func (f logFields) format(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, " [%s] iteration %8d/%8d |", now.Format("2006-01-02 15:04:05.000000"), f.Iteration, f.TrainIters)
	fmt.Fprintf(&b, " consumed samples: %12d |", f.ConsumedSamples)
	fmt.Fprintf(&b, " elapsed time per iteration (ms): %.1f |", f.ElapsedMS)
	if f.TFLOPS >= 0 {
		fmt.Fprintf(&b, " throughput per GPU (TFLOP/s/GPU): %.1f |", f.TFLOPS)
	}
	fmt.Fprintf(&b, " learning rate: %.6E |", f.LR)
	fmt.Fprintf(&b, " global batch size: %5d |", f.GlobalBatchSize)
	if !math.IsNaN(f.Loss) {
		fmt.Fprintf(&b, " lm loss: %.6E |", f.Loss)
	}
	fmt.Fprintf(&b, " loss scale: %.1f |", f.LossScale)
	if !math.IsNaN(f.GradNorm) {
		fmt.Fprintf(&b, " grad norm: %.3f |", f.GradNorm)
	}
	if !math.IsNaN(f.NumZeros) {
		fmt.Fprintf(&b, " num zeros: %.1f |", f.NumZeros)
	}
	if !math.IsNaN(f.ParamsNorm) {
		fmt.Fprintf(&b, " params norm: %.3f |", f.ParamsNorm)
	}
	fmt.Fprintf(&b, " number of skipped iterations: %3d |", f.Skipped)
	fmt.Fprintf(&b, " number of nan iterations: %3d |", f.NaN)
	return b.String()
}

// memoryLine is Megatron's report_memory line after the first logged iteration:
// "[Rank r] (after n iterations) memory (MB) | allocated: … | max allocated: … |
// reserved: … | max reserved: …".
func memoryLine(rank, iteration int, m kernels.MemoryStats) string {
	const mb = 1024 * 1024
	return fmt.Sprintf("[Rank %d] (after %d iterations) memory (MB) | allocated: %.2f | max allocated: %.2f | reserved: %.2f | max reserved: %.2f",
		rank, iteration, float64(m.Allocated)/mb, float64(m.MaxAllocated)/mb, float64(m.Reserved)/mb, float64(m.MaxReserved)/mb)
}

// FLOPs is Megatron's num_floating_point_operations for a dense GPT and a batch of
// batch sequences:
//
//	B·s·[6·h·(ffn·f)·L + 6·(h·(q+2k) + q·h)·L + 6·h·Vpad] + B·s²·6·q·L
//
// with q = kv_channels·heads, k = kv_channels·groups and f = 3 with SwiGLU, else 2; with
// mixture-of-experts layers the MLP term counts the --moe-router-topk experts each token
// runs through and the shared experts (Megatron's num_experts_routed_to·moe_ffn +
// shared_expert_ffn; the router is not counted), layer by layer with --moe-layer-freq;
// multi-latent attention's terms are mlaFLOPs'.
func FLOPs(c *layers.Config, batch int) float64 {
	B, s := float64(batch), float64(c.SeqLength)
	h, L := float64(c.HiddenSize), float64(c.NumLayers)
	q := float64(c.KVChannels * c.NumAttentionHeads)
	k := float64(c.KVChannels * c.NumQueryGroups)
	f := 2.0
	if c.SwiGLU {
		f = 3
	}
	var mlp float64 // Σ over layers of the FFN widths a token runs through
	for i := range c.NumLayers {
		if c.IsMoELayer(i) {
			mlp += float64(c.ExpertFFN()*c.MoERouterTopK + c.MoESharedExpertIntermediateSize)
		} else {
			mlp += float64(c.FFNHiddenSize)
		}
	}
	attn, core := 6*(h*(q+2*k)+q*h), 6*q // per token and layer: projections, and core attention per position
	if c.MultiLatentAttention {
		attn, core = mlaFLOPs(c)
	}
	return B*s*(6*h*mlp*f+attn*L+6*h*float64(c.PaddedVocabSize)) + B*s*s*core*L
}

// mlaFLOPs is Megatron's multi-latent attention terms per token and layer: the projections
// (the query's, low-rank or not, the kv latent's, the shared rotary key's and linear_proj),
//
//	6·(q + rkv·(h + H·(dn+dv) + 1) + h·dr + H·dv·h),  q = h·H·(dn+dr) or rq·(h + H·(dn+dr) + 1),
//
// and core attention per position, 3·H·(dn + dr + dv) (causal: half the scores).
func mlaFLOPs(c *layers.Config) (attn, core float64) {
	h, H := float64(c.HiddenSize), float64(c.NumAttentionHeads)
	dn, dr, dv := float64(c.QKHeadDim), float64(c.QKPosEmbHeadDim), float64(c.VHeadDim)
	rq, rkv := float64(c.QLoRARank), float64(c.KVLoRARank)
	q := h * H * (dn + dr)
	if rq > 0 {
		q = rq * (h + H*(dn+dr) + 1)
	}
	return 6 * (q + rkv*(h+H*(dn+dv)+1) + h*dr + H*dv*h), 3 * H * (dn + dr + dv)
}

// validationBlock is Megatron's evaluate_and_print_results output.
func validationBlock(prefix string, loss float64, ppl float64) string {
	s := fmt.Sprintf(" validation loss at %s | lm loss value: %.6E | lm loss PPL: %.6E | ", prefix, loss, ppl)
	line := strings.Repeat("-", len(s)+1)
	return line + "\n" + s + "\n" + line
}
