// elementwise.cu: fill, scale, axpy, add, mul, bias, sum of squares, permute, QKV split
// and merge, dropout. All F32; 1-D grid-stride loops unless noted.
#include "common.cuh"

GM_KERNEL gm_fill_f32(float* x, float v, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) x[i] = v;
}

GM_KERNEL gm_scale_f32(float* x, float a, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) x[i] *= a;
}

// y ← y + a·x (rounded as the CPU: the product, then the sum).
GM_KERNEL gm_axpy_f32(float* y, float a, const float* x, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float p = a * x[i];
		p = no_fma(p); // keep mul and add separate (no FMA contraction), as Go does
		y[i] += p;
	}
}

GM_KERNEL gm_add_f32(float* o, const float* a, const float* b, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) o[i] = a[i] + b[i];
}

GM_KERNEL gm_mul_f32(float* o, const float* a, const float* b, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) o[i] = a[i] * b[i];
}

// x[r, f] += bias[f] over n·f elements.
GM_KERNEL gm_add_bias_f32(float* x, const float* bias, i64 n, int f) {
	i64 total = n * f;
	for (i64 i = gstart(); i < total; i += gstride()) x[i] += bias[i % f];
}

// db[f] += Σ_r dout[r, f], one thread per column, summed in double in row order.
GM_KERNEL gm_bias_grad_f32(float* db, const float* dout, i64 n, int f) {
	for (i64 c = gstart(); c < f; c += gstride()) {
		double s = 0;
		for (i64 r = 0; r < n; r++) s += (double)dout[r * f + c];
		db[c] += (float)s;
	}
}

// Σ x² in double: each block adds its partial sum into *acc (zeroed by the caller).
GM_KERNEL gm_sumsq_f32(double* acc, const float* x, i64 n) {
	__shared__ double sh[32];
	double s = 0;
	for (i64 i = gstart(); i < n; i += gstride()) s += (double)x[i] * (double)x[i];
	s = block_sum_d(s, sh);
	if (tid_x() == 0) atomic_add_d(acc, s);
}

// out[o0,o1,o2,o3] = x[Σ oi·st_i]: out is [d0,d1,d2,d3] (leading 1s for rank < 4) and st
// the strides of x's dimension perm[i].
GM_KERNEL gm_permute_f32(float* out, const float* x, int d0, int d1, int d2, int d3,
                         i64 s0, i64 s1, i64 s2, i64 s3) {
	i64 n = (i64)d0 * d1 * d2 * d3;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 r = i;
		i64 i3 = r % d3; r /= d3;
		i64 i2 = r % d2; r /= d2;
		i64 i1 = r % d1; r /= d1;
		out[i] = x[r * s0 + i1 * s1 + i2 * s2 + i3 * s3];
	}
}

// Megatron's fused QKV [S, B, G·(R+2)·D] ⇄ q [B, G·R, S, D], k, v [B, G, S, D]: one thread
// per element of qkv; merge = 1 writes qkv from q, k, v.
GM_KERNEL gm_qkv_f32(float* q, float* k, float* v, float* qkv, int S, int B, int G, int R, int D, int merge) {
	i64 n = (i64)S * B * G * (R + 2) * D;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 t = i;
		int d = (int)(t % D); t /= D;
		int j = (int)(t % (R + 2)); t /= (R + 2);
		int g = (int)(t % G); t /= G;
		int b = (int)(t % B); t /= B;
		int s = (int)t;
		float* p;
		if (j < R) p = q + (((i64)b * G * R + (g * R + j)) * S + s) * D + d;
		else if (j == R) p = k + (((i64)b * G + g) * S + s) * D + d;
		else p = v + (((i64)b * G + g) * S + s) * D + d;
		if (merge) qkv[i] = *p; else *p = qkv[i];
	}
}

// Dropout: u = mix64(mix64(seed) + (offset+i+1)·0x9E3779B97F4A7C15), keep iff
// float(u>>40) ≥ p·2²⁴ (kernels/cpu.DropoutBits), out = x·scale where kept.
GM_KERNEL gm_dropout_f32(float* out, u8* mask, const float* x, float p, float scale, u64 seed, u64 offset, i64 n) {
	u64 st = mix64(seed);
	float thr = p * 16777216.0f;
	for (i64 i = gstart(); i < n; i += gstride()) {
		if (p == 0.0f) {
			out[i] = x[i];
			mask[i] = 1;
			continue;
		}
		u64 u = mix64(st + (offset + (u64)i + 1ull) * 0x9E3779B97F4A7C15ull);
		if ((float)(u >> 40) >= thr) {
			mask[i] = 1;
			out[i] = x[i] * scale;
		} else {
			mask[i] = 0;
			out[i] = 0.0f;
		}
	}
}

GM_KERNEL gm_dropout_bwd_f32(float* dx, const float* dout, const u8* mask, float scale, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) dx[i] = mask[i] ? dout[i] * scale : 0.0f;
}
