package cuda

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gomegatron/gomegatron/kernels"
	"github.com/gomegatron/gomegatron/tensor"
)

// attnMaxD is the largest head dim of the simple attention kernels (32 lanes × 8).
const attnMaxD = 256

type attnGeom struct {
	b, h, g, s, t, d int
	dt               tensor.DType // of the activations (q, k, v, out and their gradients)
}

// attnCheck checks the operands of op; grads are AttentionBackward's dout, dq, dk and dv.
func (b *Backend) attnCheck(op string, q, k, v, out, lse *tensor.Tensor, p kernels.AttnParams, grads ...*tensor.Tensor) attnGeom {
	dt := b.acts(op, append([]*tensor.Tensor{q, k, v, out}, grads...)...)
	b.f32(op, lse)
	if q.Rank() != 4 || k.Rank() != 4 || !tensor.SameShape(k.Shape(), v.Shape()) || !tensor.SameShape(q.Shape(), out.Shape()) {
		panic(fmt.Sprintf("cuda.%s: want q, out [B, H, S, D] and k, v [B, G, T, D]; got q %v k %v v %v out %v", op, q, k, v, out))
	}
	g := attnGeom{b: q.Dim(0), h: q.Dim(1), s: q.Dim(2), d: q.Dim(3), g: k.Dim(1), t: k.Dim(2), dt: dt}
	if k.Dim(0) != g.b || k.Dim(3) != g.d || g.g == 0 || g.h%g.g != 0 {
		panic(fmt.Sprintf("cuda.%s: q %v and k %v: need equal B and D and H %% G == 0", op, q, k))
	}
	if g.d > attnMaxD {
		panic(fmt.Sprintf("cuda.%s: head dim %d > %d", op, g.d, attnMaxD))
	}
	if lse.Numel() != g.b*g.h*g.s {
		panic(fmt.Sprintf("cuda.%s: lse %v must be [%d, %d, %d]", op, lse, g.b, g.h, g.s))
	}
	if p.ALiBiSlopes != nil && len(p.ALiBiSlopes) != g.h {
		panic(fmt.Sprintf("cuda.%s: %d ALiBi slopes for %d heads", op, len(p.ALiBiSlopes), g.h))
	}
	if len(p.ALiBiSlopes)*4 > scratchBytes/2 {
		panic(fmt.Sprintf("cuda.%s: %d ALiBi slopes exceed the scratch buffer", op, len(p.ALiBiSlopes)))
	}
	if ks := p.KeyStart; ks != nil {
		b.mustDev(op, ks)
		if ks.DType() != tensor.I32 || ks.Numel() != g.b*g.s {
			panic(fmt.Sprintf("cuda.%s: KeyStart %v for q %v: need I32 [%d, %d]", op, ks, q, g.b, g.s))
		}
	}
	return g
}

// geomStruct packs the kernels' AttnGeom C struct: int B, H, G, S, T, D; float scale;
// int causal, window, qoff, before; float dthr, dscale; int dheads, dhead0, drows (16
// four-byte fields), u64 dseed, doff.
func geomStruct(g attnGeom, p kernels.AttnParams) Struct {
	var thr, scale float32
	if p.DropoutP > 0 {
		thr, scale = p.DropoutP*(1<<24), 1/(1-p.DropoutP)
	}
	heads := p.DropoutHeads
	if heads == 0 {
		heads = g.h
	}
	v := []uint32{uint32(g.b), uint32(g.h), uint32(g.g), uint32(g.s), uint32(g.t), uint32(g.d),
		math.Float32bits(p.Scale), uint32(bool32(p.Causal)), uint32(int32(p.SlidingWindow)), uint32(int32(p.QOffset)),
		uint32(bool32(p.ALiBiBeforeScale)), math.Float32bits(thr), math.Float32bits(scale), uint32(heads), uint32(p.DropoutHead0),
		uint32(int32(p.DropoutRows))}
	out := make([]byte, 64+16)
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], x)
	}
	binary.LittleEndian.PutUint64(out[64:], p.DropoutSeed)
	binary.LittleEndian.PutUint64(out[72:], p.DropoutOffset)
	return out
}

// slopes uploads the ALiBi slopes into the scratch buffer (device thread); 0 without ALiBi.
func (b *Backend) slopes(p kernels.AttnParams) (uintptr, error) {
	if p.ALiBiSlopes == nil {
		return 0, nil
	}
	return b.scratch, b.dev.upload(b.scratch, f32Bytes(p.ALiBiSlopes))
}

// warpsGrid is the grid of a one-warp-per-row kernel with 4 warps per block.
func warpsGrid(rows int) int { return (rows + 3) / 4 }

// Flash-attention tiles (src/attention.cu: FA_MAXD, FA_BQ, FA_BK).
const (
	flashMaxD = 128
	flashRows = 64 // query rows per forward and dq block (4 warps), keys per dk/dv block
)

// flash reports whether the tensor-core kernels serve geometry g.
func (b *Backend) flash(g attnGeom) bool {
	return b.FlashAttention && g.d%16 == 0 && g.d <= flashMaxD
}

// flashKernel names the flash kernel kind ("fwd", "bwd_dq", "bwd_kv") for g, with its
// block size and the query rows per block of fwd and bwd_dq: the _d64 variants for head
// dims up to 64; for fwd and bwd_dq, _d64w (128 query rows, 8 warps) when b.flashWide; or
// _d64p (cp.async and ldmatrix) when b.flashPipe, the activations are BF16 and the
// operands it copies with cp.async 16-byte aligned (aligned: k and v for fwd and bwd_dq,
// q and dout for bwd_kv). (Names are spelled out: TestKernelNames matches them against
// the sources.)
func (b *Backend) flashKernel(kind string, g attnGeom, aligned bool) (name string, threads, rows int) {
	threads, rows = 128, flashRows
	switch {
	case g.d > 64:
		switch kind {
		case "fwd":
			return "gm_flash_fwd" + sfx(g.dt), threads, rows
		case "bwd_dq":
			return "gm_flash_bwd_dq" + sfx(g.dt), threads, rows
		}
		return "gm_flash_bwd_kv" + sfx(g.dt), threads, rows
	case b.flashWide && kind == "fwd":
		return "gm_flash_fwd_d64w" + sfx(g.dt), 256, 2 * flashRows
	case b.flashWide && kind == "bwd_dq":
		return "gm_flash_bwd_dq_d64w" + sfx(g.dt), 256, 2 * flashRows
	case b.flashPipe && g.dt == tensor.BF16 && aligned:
		switch kind {
		case "fwd":
			return "gm_flash_fwd_d64p_bf16", threads, rows
		case "bwd_dq":
			return "gm_flash_bwd_dq_d64p_bf16", threads, rows
		}
		return "gm_flash_bwd_kv_d64p_bf16", threads, rows
	}
	switch kind {
	case "fwd":
		return "gm_flash_fwd_d64" + sfx(g.dt), threads, rows
	case "bwd_dq":
		return "gm_flash_bwd_dq_d64" + sfx(g.dt), threads, rows
	}
	return "gm_flash_bwd_kv_d64" + sfx(g.dt), threads, rows
}

// Attention: see kernels.AttnParams. One warp per query row with an online softmax, or the
// flash kernel (Backend.FlashAttention); a query that sees no key gets out = 0 and
// lse = −Inf (as kernels/cpu). KeyStart goes to every kernel as its last argument (null
// when unset).
func (b *Backend) Attention(out, lse, q, k, v *tensor.Tensor, p kernels.AttnParams) {
	g := b.attnCheck("Attention", q, k, v, out, lse, p)
	rows := g.b * g.h * g.s
	ks := ptr(p.KeyStart)
	b.run(func() error {
		sl, err := b.slopes(p)
		if err != nil {
			return err
		}
		if b.flash(g) {
			name, threads, rows := b.flashKernel("fwd", g, (k.Ptr|v.Ptr)%16 == 0)
			grid := g.b * g.h * ((g.s + rows - 1) / rows)
			return b.dev.launch(name, grid, threads, 0, out.Ptr, lse.Ptr, q.Ptr, k.Ptr, v.Ptr, sl, geomStruct(g, p), ks)
		}
		return b.dev.launch("gm_attn_fwd"+sfx(g.dt), warpsGrid(rows), 128, 0, out.Ptr, lse.Ptr, q.Ptr, k.Ptr, v.Ptr, sl, geomStruct(g, p), ks)
	})
}

// AttentionBackward: D_i = Σ dout_i·out_i into arena scratch, then dq (one warp per query
// row) and dk, dv (one warp per key row, summing the group's heads), or the flash kernel.
func (b *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse *tensor.Tensor, p kernels.AttnParams) {
	op := "AttentionBackward"
	g := b.attnCheck(op, q, k, v, out, lse, p, dout, dq, dk, dv)
	sameShape(op, q, dq, dout)
	sameShape(op, k, dk, dv)
	rows := g.b * g.h * g.s
	krows := g.b * g.g * g.t
	ks := ptr(p.KeyStart)
	b.run(func() error {
		sl, err := b.slopes(p)
		if err != nil {
			return err
		}
		dsum, err := b.dev.arena.Alloc(uintptr(4 * rows))
		if err != nil {
			return err
		}
		defer b.dev.arena.Free(dsum) // reused only by later work on the same stream
		gs := geomStruct(g, p)
		if err := b.dev.launch("gm_attn_bwd_dsum"+sfx(g.dt), warpsGrid(rows), 128, 0, dsum, dout.Ptr, out.Ptr, int64(rows), int32(g.d)); err != nil {
			return err
		}
		if b.flash(g) {
			return b.flashBackward(g, dq, dk, dv, dout, q, k, v, lse, dsum, sl, gs, ks)
		}
		if err := b.dev.launch("gm_attn_bwd_dq"+sfx(g.dt), warpsGrid(rows), 128, 0, dq.Ptr, dout.Ptr, q.Ptr, k.Ptr, v.Ptr, lse.Ptr, dsum, sl, gs, ks); err != nil {
			return err
		}
		return b.dev.launch("gm_attn_bwd_dkv"+sfx(g.dt), warpsGrid(krows), 128, 0, dk.Ptr, dv.Ptr, dout.Ptr, q.Ptr, k.Ptr, v.Ptr, lse.Ptr, dsum, sl, gs, ks)
	})
}

// flashBackward runs the flash backward kernels: dq (one block per query block, written
// once) and dk, dv (one block per key block and head, added up atomically in F32 over a
// group's heads: into the outputs themselves when they are F32, else into F32 scratch that
// gm_cast rounds once into BF16). Runs on the device thread.
func (b *Backend) flashBackward(g attnGeom, dq, dk, dv, dout, q, k, v, lse *tensor.Tensor, dsum, sl uintptr, gs Struct, ks uintptr) error {
	name, threads, rows := b.flashKernel("bwd_dq", g, (k.Ptr|v.Ptr)%16 == 0)
	grid := g.b * g.h * ((g.s + rows - 1) / rows)
	if err := b.dev.launch(name, grid, threads, 0, dq.Ptr, dout.Ptr, q.Ptr, k.Ptr, v.Ptr, lse.Ptr, dsum, sl, gs, ks); err != nil {
		return err
	}
	outs := [2]*tensor.Tensor{dk, dv}
	var f32 [2]uintptr
	for i, t := range outs {
		f32[i] = t.Ptr
		if g.dt == tensor.BF16 {
			p, err := b.dev.arena.Alloc(uintptr(4 * t.Numel()))
			if err != nil {
				return err
			}
			defer b.dev.arena.Free(p) // reused only by later work on the same stream
			f32[i] = p
		}
		if err := b.dev.memset32(f32[i], 0, t.Numel()); err != nil {
			return err
		}
	}
	name, threads, rows = b.flashKernel("bwd_kv", g, (q.Ptr|dout.Ptr)%16 == 0)
	grid = g.b * g.h * ((g.t + rows - 1) / rows)
	if err := b.dev.launch(name, grid, threads, 0, f32[0], f32[1], dout.Ptr, q.Ptr, k.Ptr, v.Ptr, lse.Ptr, dsum, sl, gs, ks); err != nil {
		return err
	}
	if g.dt != tensor.BF16 {
		return nil
	}
	for i, t := range outs {
		n := t.Numel() // F32 (kind 0) into BF16 (kind 1)
		if err := b.dev.launch("gm_cast", b.grid1D(n), blockSize, 0, t.Ptr, f32[i], int32(0), int32(1), int64(n)); err != nil {
			return err
		}
	}
	return nil
}
