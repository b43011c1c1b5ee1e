// elementwise.cu: fill, scale, axpy, add, mul, bias, row scaling and row dots, sum of
// squares, strided copy (and permute), QKV split and merge, dropout. Activations F32 or
// BF16 (T: float or u16, through ld/st), bias and db F32; 1-D grid-stride loops unless noted.
#include "common.cuh"

template <typename T> GM_DEV void fill(T* x, float v, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) st(x, i, v);
}
GM_KERNEL gm_fill_f32(float* x, float v, i64 n) { fill(x, v, n); }
GM_KERNEL gm_fill_bf16(u16* x, float v, i64 n) { fill(x, v, n); }

template <typename T> GM_DEV void scale(T* x, float a, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) st(x, i, ld(x, i) * a);
}
GM_KERNEL gm_scale_f32(float* x, float a, i64 n) { scale(x, a, n); }
GM_KERNEL gm_scale_bf16(u16* x, float a, i64 n) { scale(x, a, n); }

// y ← y + a·x (rounded as the CPU: the product, then the sum).
template <typename T> GM_DEV void axpy(T* y, float a, const T* x, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float p = a * ld(x, i);
		p = no_fma(p); // keep mul and add separate (no FMA contraction), as Go does
		st(y, i, ld(y, i) + p);
	}
}
GM_KERNEL gm_axpy_f32(float* y, float a, const float* x, i64 n) { axpy(y, a, x, n); }
GM_KERNEL gm_axpy_bf16(u16* y, float a, const u16* x, i64 n) { axpy(y, a, x, n); }

template <typename T> GM_DEV void add(T* o, const T* a, const T* b, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) st(o, i, ld(a, i) + ld(b, i));
}
GM_KERNEL gm_add_f32(float* o, const float* a, const float* b, i64 n) { add(o, a, b, n); }
GM_KERNEL gm_add_bf16(u16* o, const u16* a, const u16* b, i64 n) { add(o, a, b, n); }

template <typename T> GM_DEV void mul(T* o, const T* a, const T* b, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) st(o, i, ld(a, i) * ld(b, i));
}
GM_KERNEL gm_mul_f32(float* o, const float* a, const float* b, i64 n) { mul(o, a, b, n); }
GM_KERNEL gm_mul_bf16(u16* o, const u16* a, const u16* b, i64 n) { mul(o, a, b, n); }

// x[r, f] += bias[f] over n·f elements.
template <typename T> GM_DEV void add_bias(T* x, const float* bias, i64 n, int f) {
	i64 total = n * f;
	for (i64 i = gstart(); i < total; i += gstride()) st(x, i, ld(x, i) + bias[i % f]);
}
GM_KERNEL gm_add_bias_f32(float* x, const float* bias, i64 n, int f) { add_bias(x, bias, n, f); }
GM_KERNEL gm_add_bias_bf16(u16* x, const float* bias, i64 n, int f) { add_bias(x, bias, n, f); }

// x[r, f] *= s[r] over n·f elements (MoE routing scores).
template <typename T> GM_DEV void scale_rows(T* x, const float* s, i64 n, int f) {
	i64 total = n * f;
	for (i64 i = gstart(); i < total; i += gstride()) st(x, i, ld(x, i) * s[i / f]);
}
GM_KERNEL gm_scale_rows_f32(float* x, const float* s, i64 n, int f) { scale_rows(x, s, n, f); }
GM_KERNEL gm_scale_rows_bf16(u16* x, const float* s, i64 n, int f) { scale_rows(x, s, n, f); }

// out[r] = Σ_j a[r, j]·b[r, j] in double: one block per row.
template <typename T> GM_DEV void row_dot(float* out, const T* a, const T* b, int f) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	double acc = 0;
	for (int j = tid_x(); j < f; j += ntid_x()) acc += (double)ld(a, r * f + j) * (double)ld(b, r * f + j);
	acc = block_sum_d(acc, sh);
	if (tid_x() == 0) out[r] = (float)acc;
}
GM_KERNEL gm_row_dot_f32(float* out, const float* a, const float* b, int f) { row_dot(out, a, b, f); }
GM_KERNEL gm_row_dot_bf16(float* out, const u16* a, const u16* b, int f) { row_dot(out, a, b, f); }

// Σ x² in double: each block adds its partial sum into *acc (zeroed by the caller).
// Σ x² in two deterministic steps: each block writes its double partial sum to part[block]
// (a grid-stride loop, so the partition depends only on n and the grid), then
// gm_sumsq_finish adds the partials in one block, in a fixed order. Atomic adds would
// make the last bits depend on the blocks' timing, and a grad norm must repeat exactly.
template <typename T> GM_DEV void sumsq(double* part, const T* x, i64 n) {
	__shared__ double sh[32];
	double s = 0;
	for (i64 i = gstart(); i < n; i += gstride()) {
		double v = (double)ld(x, i);
		s += v * v;
	}
	s = block_sum_d(s, sh);
	if (tid_x() == 0) part[ctaid_x()] = s;
}
GM_KERNEL gm_sumsq_f32(double* part, const float* x, i64 n) { sumsq(part, x, n); }
GM_KERNEL gm_sumsq_bf16(double* part, const u16* x, i64 n) { sumsq(part, x, n); }
GM_KERNEL gm_sumsq_finish(double* out, const double* part, int nb) {
	__shared__ double sh[32];
	double s = 0;
	for (int i = (int)tid_x(); i < nb; i += (int)ntid_x()) s += part[i];
	s = block_sum_d(s, sh);
	if (tid_x() == 0) *out = s;
}

// Strided copy (StridedCopy, and Permute with contiguous dst strides): for every index
// (i0,i1,i2,i3) of [d0,d1,d2,d3] (leading 1s for rank < 4),
// dst[Σ ik·dsk] = src[Σ ik·ssk], the offsets already added to the pointers. The bits
// are copied as they are (T float or u16: no bf16 round trip).
template <typename T>
GM_DEV void strided_copy(T* dst, const T* src, i64 d0, i64 d1, i64 d2, i64 d3, i64 ds0, i64 ds1, i64 ds2, i64 ds3,
                         i64 ss0, i64 ss1, i64 ss2, i64 ss3) {
	i64 n = d0 * d1 * d2 * d3;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 r = i;
		i64 i3 = r % d3; r /= d3;
		i64 i2 = r % d2; r /= d2;
		i64 i1 = r % d1; r /= d1;
		dst[r * ds0 + i1 * ds1 + i2 * ds2 + i3 * ds3] = src[r * ss0 + i1 * ss1 + i2 * ss2 + i3 * ss3];
	}
}
GM_KERNEL gm_strided_copy_f32(float* dst, const float* src, i64 d0, i64 d1, i64 d2, i64 d3, i64 ds0, i64 ds1, i64 ds2,
                              i64 ds3, i64 ss0, i64 ss1, i64 ss2, i64 ss3) {
	strided_copy(dst, src, d0, d1, d2, d3, ds0, ds1, ds2, ds3, ss0, ss1, ss2, ss3);
}
GM_KERNEL gm_strided_copy_bf16(u16* dst, const u16* src, i64 d0, i64 d1, i64 d2, i64 d3, i64 ds0, i64 ds1, i64 ds2,
                               i64 ds3, i64 ss0, i64 ss1, i64 ss2, i64 ss3) {
	strided_copy(dst, src, d0, d1, d2, d3, ds0, ds1, ds2, ds3, ss0, ss1, ss2, ss3);
}

// Megatron's fused QKV [S, B, G·(R+2)·D] ⇄ q [B, G·R, S, D], k, v [B, G, S, D]: one thread
// per element of qkv; merge = 1 writes qkv from q, k, v.
template <typename T> GM_DEV void qkv_split(T* q, T* k, T* v, T* qkv, int S, int B, int G, int R, int D, int merge) {
	i64 n = (i64)S * B * G * (R + 2) * D;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 t = i;
		int d = (int)(t % D); t /= D;
		int j = (int)(t % (R + 2)); t /= (R + 2);
		int g = (int)(t % G); t /= G;
		int b = (int)(t % B); t /= B;
		int s = (int)t;
		T* p;
		if (j < R) p = q + (((i64)b * G * R + (g * R + j)) * S + s) * D + d;
		else if (j == R) p = k + (((i64)b * G + g) * S + s) * D + d;
		else p = v + (((i64)b * G + g) * S + s) * D + d;
		if (merge) st(qkv, i, ld(p, 0)); else st(p, 0, ld(qkv, i));
	}
}
GM_KERNEL gm_qkv_f32(float* q, float* k, float* v, float* qkv, int S, int B, int G, int R, int D, int merge) {
	qkv_split(q, k, v, qkv, S, B, G, R, D, merge);
}
GM_KERNEL gm_qkv_bf16(u16* q, u16* k, u16* v, u16* qkv, int S, int B, int G, int R, int D, int merge) {
	qkv_split(q, k, v, qkv, S, B, G, R, D, merge);
}

// Dropout: u = mix64(mix64(seed) + (offset+i+1)·0x9E3779B97F4A7C15), keep iff
// float(u>>40) ≥ p·2²⁴ (kernels/cpu.DropoutBits), out = x·scale where kept.
template <typename T>
GM_DEV void dropout(T* out, u8* mask, const T* x, float p, float scale, u64 seed, u64 offset, i64 n) {
	u64 s0 = mix64(seed);
	float thr = p * 16777216.0f;
	for (i64 i = gstart(); i < n; i += gstride()) {
		if (p == 0.0f) {
			st(out, i, ld(x, i));
			mask[i] = 1;
			continue;
		}
		u64 u = mix64(s0 + (offset + (u64)i + 1ull) * 0x9E3779B97F4A7C15ull);
		if ((float)(u >> 40) >= thr) {
			mask[i] = 1;
			st(out, i, ld(x, i) * scale);
		} else {
			mask[i] = 0;
			st(out, i, 0.0f);
		}
	}
}
GM_KERNEL gm_dropout_f32(float* out, u8* mask, const float* x, float p, float scale, u64 seed, u64 offset, i64 n) {
	dropout(out, mask, x, p, scale, seed, offset, n);
}
GM_KERNEL gm_dropout_bf16(u16* out, u8* mask, const u16* x, float p, float scale, u64 seed, u64 offset, i64 n) {
	dropout(out, mask, x, p, scale, seed, offset, n);
}

template <typename T> GM_DEV void dropout_bwd(T* dx, const T* dout, const u8* mask, float scale, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) st(dx, i, mask[i] ? ld(dout, i) * scale : 0.0f);
}
GM_KERNEL gm_dropout_bwd_f32(float* dx, const float* dout, const u8* mask, float scale, i64 n) {
	dropout_bwd(dx, dout, mask, scale, n);
}
GM_KERNEL gm_dropout_bwd_bf16(u16* dx, const u16* dout, const u8* mask, float scale, i64 n) {
	dropout_bwd(dx, dout, mask, scale, n);
}
