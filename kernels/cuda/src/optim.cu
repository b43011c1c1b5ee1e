// optim.cu: fused AdamW and casts with amax (AdamW's operands F32; CastWithAmax's src F32
// or BF16).
#include "common.cuh"

// One AdamW step with host-computed constants (as kernels/cpu): decay = 1 − lr·wd,
// negStep = −lr/(1−β1^t), bc2s = sqrt(1−β2^t):
//   p ← p·decay; m ← fma(1−β1, g, β1·m); v ← fma((1−β2)·g, g, β2·v);
//   p ← p + negStep·m/(sqrt(v)/bc2s + eps)
GM_KERNEL gm_adamw_f32(float* p, const float* g, float* m, float* v, float decay, float beta1, float beta2,
                       float omb1, float omb2, float negStep, float bc2s, float eps, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float gi = g[i], pi = p[i];
		if (decay != 1.0f) pi *= decay;
		float mi = fma_f(omb1, gi, beta1 * m[i]);
		float vi = fma_f(omb2 * gi, gi, beta2 * v[i]);
		m[i] = mi;
		v[i] = vi;
		float denom = sqrt_f(vi) / bc2s + eps;
		float step = negStep * mi;
		step = no_fma(step);
		p[i] = pi + step / denom;
	}
}

// dst = round(src·scale) into BF16 (kind 0), F16 (1), E4M3 (2), E5M2 (3) or F32 (4), src
// F32 or BF16 (T: float or u16, widened by ld);
// *amax = max over |src| as float bits with red.max.u32: non-negative floats order like
// their bits, and a NaN's bits (sign cleared) exceed +Inf's, so a NaN in src makes amax NaN.
// *amax must be zeroed first.
template <typename T> GM_DEV void cast_amax(void* dst, const T* src, float scale, int kind, unsigned* amax, i64 n) {
	unsigned am = 0;
	for (i64 i = gstart(); i < n; i += gstride()) {
		float x = ld(src, i);
		unsigned b = f2u(x) & 0x7fffffffu;
		if (b > am) am = b;
		float y = isnan_f(x) ? x : x * scale; // the GPU's multiply would drop a NaN's sign
		switch (kind) {
		case 0: ((u16*)dst)[i] = cast_bf16(y); break;
		case 1: ((u16*)dst)[i] = cast_f16(y); break;
		case 2: ((u8*)dst)[i] = f32_to_e4m3(y); break;
		case 3: ((u8*)dst)[i] = f32_to_e5m2(y); break;
		default: ((float*)dst)[i] = y; break;
		}
	}
	for (int m = 16; m > 0; m >>= 1) {
		unsigned o = shfl_xor_u(am, m);
		if (o > am) am = o;
	}
	if (lane_id() == 0 && am) atomic_max_u(amax, am);
}
GM_KERNEL gm_cast_amax_f32(void* dst, const float* src, float scale, int kind, unsigned* amax, i64 n) {
	cast_amax(dst, src, scale, kind, amax, n);
}
GM_KERNEL gm_cast_amax_bf16(void* dst, const u16* src, float scale, int kind, unsigned* amax, i64 n) {
	cast_amax(dst, src, scale, kind, amax, n);
}

// E4M3 and E5M2 widened exactly: E5M2 is the top byte of an f16; E4M3 (bias 7, no
// infinities, S.1111.111 is NaN) is decoded by hand.
GM_DEV float e5m2_to_f32(u8 b) { return f16_to_f32((u16)((unsigned)b << 8)); }
GM_DEV float e4m3_to_f32(u8 b) {
	unsigned e = (b >> 3) & 15u, m = b & 7u;
	float v = e == 15u && m == 7u ? u2f(0x7fc00000u)
	        : e == 0u ? (float)m * pow2i(-9) : (float)(8u + m) * pow2i((int)e - 10);
	return (b & 0x80u) ? -v : v;
}

// dst = src converted among F32 (kind 0), BF16 (1) and F16 (2): into 16 bits by rounding
// to nearest even, into F32 exactly; E4M3 (3) and E5M2 (4) sources widen into F32.
GM_KERNEL gm_cast(void* dst, const void* src, int skind, int dkind, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float x = skind == 0 ? ((const float*)src)[i]
			: skind == 1 ? bf16_to_f32(((const u16*)src)[i])
			: skind == 2 ? f16_to_f32(((const u16*)src)[i])
			: skind == 3 ? e4m3_to_f32(((const u8*)src)[i]) : e5m2_to_f32(((const u8*)src)[i]);
		switch (dkind) {
		case 0: ((float*)dst)[i] = x; break;
		case 1: ((u16*)dst)[i] = cast_bf16(x); break;
		default: ((u16*)dst)[i] = cast_f16(x); break;
		}
	}
}

// x = float(dt(x)) in place, dt BF16 (kind 1) or F16 (2): weights held at lower precision.
GM_KERNEL gm_round_f32(float* x, int kind, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float v = x[i];
		x[i] = kind == 1 ? bf16_to_f32(cast_bf16(v)) : f16_to_f32(cast_f16(v));
	}
}

// The software FP8 rounding (the sm_80 path) on n values, for checking it against the
// hardware cvt on sm_89+ and against tensor.E4M3FromF32/E5M2FromF32.
GM_KERNEL gm_fp8_sw_f32(u8* dst, const float* src, int e5m2, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride())
		dst[i] = e5m2 ? fp8_sw(src[i], 5, 2, 57344.0f) : fp8_sw(src[i], 4, 3, 448.0f);
}
