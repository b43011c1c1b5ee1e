// common.cuh: the prelude every kernel source includes. Header-free: no CUDA header is
// available at run time (NVRTC gets this file as an in-memory header) or in CI (clang-19
// with -nocudainc), so thread indices, barriers, shuffles, atomics, math and the bf16/f16/
// fp8 conversions are written as inline PTX, identical under NVRTC and clang.
#pragma once

#if defined(__clang__) && !defined(__CUDACC_RTC__)
// clang without the CUDA headers knows the attributes but not the SDK's macro names.
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ inline __attribute__((always_inline))
#endif

#define GM_DEV static __device__ __forceinline__
#define GM_KERNEL extern "C" __global__ void
// GM_KERNEL_B(name, threads, blocks): a kernel with launch bounds (at most threads per
// block, at least blocks resident per multiprocessor), which caps its registers.
#if defined(GM_HOST_EMU)
#define GM_KERNEL_B(name, t, b) extern "C" void name
#elif defined(__CUDACC_RTC__)
#define GM_KERNEL_B(name, t, b) extern "C" __global__ void __launch_bounds__(t, b) name
#else
#define GM_KERNEL_B(name, t, b) extern "C" __global__ void __attribute__((launch_bounds(t, b))) name
#endif

typedef unsigned short u16;
typedef unsigned char u8;
typedef long long i64;
typedef unsigned long long u64;

// ---- primitives: inline PTX on the device; plain C++ in the host emulator ----------------
// (kernels/cuda/testdata/emu runs every kernel on the CPU with GM_HOST_EMU defined, one
// fiber per thread, to check the kernels' logic against kernels/cpu without a GPU.)
#ifndef GM_HOST_EMU
GM_DEV unsigned tid_x() { unsigned r; asm("mov.u32 %0, %%tid.x;" : "=r"(r)); return r; }
GM_DEV unsigned ntid_x() { unsigned r; asm("mov.u32 %0, %%ntid.x;" : "=r"(r)); return r; }
GM_DEV unsigned ctaid_x() { unsigned r; asm("mov.u32 %0, %%ctaid.x;" : "=r"(r)); return r; }
GM_DEV unsigned nctaid_x() { unsigned r; asm("mov.u32 %0, %%nctaid.x;" : "=r"(r)); return r; }
GM_DEV void sync_threads() { asm volatile("bar.sync 0;" ::: "memory"); }

GM_DEV unsigned f2u(float x) { unsigned r; asm("mov.b32 %0, %1;" : "=r"(r) : "f"(x)); return r; }
GM_DEV float u2f(unsigned x) { float r; asm("mov.b32 %0, %1;" : "=f"(r) : "r"(x)); return r; }
GM_DEV u64 d2u(double x) { u64 r; asm("mov.b64 %0, %1;" : "=l"(r) : "d"(x)); return r; }
GM_DEV double u2d(u64 x) { double r; asm("mov.b64 %0, %1;" : "=d"(r) : "l"(x)); return r; }

// bf16 and f16 are stored as u16; conversions round to nearest even (cvt.rn).
GM_DEV u16 f32_to_bf16(float x) { u16 r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x)); return r; }
GM_DEV float f16_to_f32(u16 h) { float r; asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(h)); return r; }
GM_DEV u16 f32_to_f16(float x) { u16 r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x)); return r; }

GM_DEV float rint_f(float x) { float r; asm("cvt.rni.f32.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
GM_DEV float ex2_approx(float x) { float r; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
GM_DEV float lg2_approx(float x) { float r; asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
GM_DEV float fma_f(float a, float b, float c) { float r; asm("fma.rn.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(a), "f"(b), "f"(c)); return r; }
GM_DEV float sqrt_f(float x) { float r; asm("sqrt.rn.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
GM_DEV double sqrt_d(double x) { double r; asm("sqrt.rn.f64 %0, %1;" : "=d"(r) : "d"(x)); return r; }
// no_fma passes x through an empty asm so the compiler cannot contract the product that
// produced it into a following add (the Go reference rounds each operation).
GM_DEV float no_fma(float x) { asm("" : "+f"(x)); return x; }


GM_DEV unsigned shfl_xor_u(unsigned v, int m) {
	unsigned r;
	asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(v), "r"(m));
	return r;
}

GM_DEV void atomic_add_f(float* p, float v) { asm volatile("red.global.add.f32 [%0], %1;" :: "l"(p), "f"(v) : "memory"); }
GM_DEV void atomic_max_u(unsigned* p, unsigned v) { asm volatile("red.global.max.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory"); }
GM_DEV void atomic_add_d(double* p, double v) { asm volatile("red.global.add.f64 [%0], %1;" :: "l"(p), "d"(v) : "memory"); }

// d += a·b on the tensor cores for one 16×8 tile (mma.m16n8k16, bf16 in, f32 out; sm_80+),
// every lane of the warp together. With g = lane/4 and t = lane%4 each lane holds, as pairs
// of bf16 (low half first): a[0] = A[g][2t,2t+1], a[1] = A[g+8][2t,2t+1],
// a[2] = A[g][2t+8,2t+9], a[3] = A[g+8][2t+8,2t+9] (A 16×16); b[0] = B[2t,2t+1][g],
// b[1] = B[2t+8,2t+9][g] (B 16×8); d[0..1] = D[g][2t,2t+1], d[2..3] = D[g+8][2t,2t+1].
GM_DEV void mma_bf16_16816(float* d, const unsigned* a, const unsigned* b) {
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The shared-space address of a generic pointer into shared memory (for ldmatrix, cp.async).
GM_DEV unsigned smem_addr(const void* p) {
	u64 a;
	asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
	return (unsigned)a;
}
// Four 8×8 bf16 matrices from shared memory (sm_75+): lanes 8i..8i+7 give the addresses of
// matrix i's rows (16 bytes each); lane l gets, from each matrix, row l/4's elements 2(l%4),
// 2(l%4)+1 in r[i] (the layout of an mma fragment), or with _trans column l/4's elements
// in rows 2(l%4), 2(l%4)+1.
GM_DEV void ldmatrix_x4(unsigned* r, const u16* p) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(smem_addr(p)));
}
GM_DEV void ldmatrix_x4_trans(unsigned* r, const u16* p) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(smem_addr(p)));
}
// 16 bytes global → shared without registers (sm_80+), zeros when !valid; the copies of a
// thread complete in the groups cp_async_commit closes, cp_async_wait<N> waits until at
// most N groups are pending (then a barrier makes them visible to the block).
GM_DEV void cp_async16(void* smem, const void* gmem, bool valid) {
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem)), "l"(gmem), "r"(valid ? 16 : 0)
	             : "memory");
}
GM_DEV void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> GM_DEV void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
#else
#include "emu_prims.h"
#endif

// SplitMix64 finaliser: the same mix64 as kernels/cpu/dropout.go (dropout masks).
GM_DEV u64 mix64(u64 z) {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

GM_DEV unsigned lane_id() { return tid_x() & 31u; }
GM_DEV unsigned warp_id() { return tid_x() >> 5; }
// First element and stride of a 1-D grid-stride loop.
GM_DEV i64 gstart() { return (i64)ctaid_x() * ntid_x() + tid_x(); }
GM_DEV i64 gstride() { return (i64)nctaid_x() * ntid_x(); }

GM_DEV float bf16_to_f32(u16 h) { return u2f(((unsigned)h) << 16); }
GM_DEV float abs_f(float x) { return u2f(f2u(x) & 0x7fffffffu); }
GM_DEV bool isnan_f(float x) { return (f2u(x) & 0x7fffffffu) > 0x7f800000u; }
GM_DEV float pow2i(int k) { return u2f((unsigned)(k + 127) << 23); } // 2^k, −126 ≤ k ≤ 127
// The casts of CastWithAmax: round to nearest even, NaN encoded as the tensor package does
// (bf16 0x7fc0; f16 0x7e00 with the sign), not as the hardware's canonical NaN.
GM_DEV u16 cast_bf16(float x) { return isnan_f(x) ? (u16)0x7fc0 : f32_to_bf16(x); }
GM_DEV u16 cast_f16(float x) { return isnan_f(x) ? (u16)(((f2u(x) >> 16) & 0x8000u) | 0x7e00u) : f32_to_f16(x); }

// Activations (kernels' "BF16 activations") are F32 or BF16 (u16 storage). A kernel body is
// written once as a template over the activation type T and reads and writes them through
// ld and st: BF16 widens exactly on load and rounds once, to nearest even, on store
// (cast_bf16), so the math in between is the F32 kernel's, unchanged. The extern "C"
// kernels are thin wrappers named _f32 and _bf16.
GM_DEV float ld(const float* p, i64 i) { return p[i]; }
GM_DEV float ld(const u16* p, i64 i) { return bf16_to_f32(p[i]); }
GM_DEV void st(float* p, i64 i, float v) { p[i] = v; }
GM_DEV void st(u16* p, i64 i, float v) { p[i] = cast_bf16(v); }

// fp8_sw rounds x to an OCP FP8 format with E exponent and M mantissa bits (nearest even,
// saturating to ±maxv, NaN → sign|0x7f, or sign|0x7e for E5M2) in software: the sm_80 path and the reference the
// hardware cvt on sm_89+ must agree with.
GM_DEV u8 fp8_sw(float x, int E, int M, float maxv) {
	unsigned sign = (f2u(x) >> 24) & 0x80u;
	float a = abs_f(x);
	if (isnan_f(x)) return (u8)(sign | (E == 5 ? 0x7eu : 0x7fu));
	if (a > maxv) a = maxv;
	int bias = (1 << (E - 1)) - 1;
	int e = (int)(f2u(a) >> 23) - 127;
	if (e < 1 - bias) e = 1 - bias;              // FP8 subnormals share the smallest quantum
	float r = rint_f(a * pow2i(M - e)) * pow2i(e - M); // exact scaling by powers of two
	if (r > maxv) r = maxv;
	if (r == 0.0f) return (u8)sign;
	int re = (int)(f2u(r) >> 23) - 127;
	unsigned code;
	if (re < 1 - bias) {
		code = (unsigned)rint_f(r * pow2i(bias - 1 + M)); // subnormal: mantissa only
	} else {
		code = ((unsigned)(re + bias) << M) | ((f2u(r) >> (23 - M)) & ((1u << M) - 1u));
	}
	return (u8)(sign | code);
}

// NaN encodes as sign|0x7f (E4M3) and sign|0x7e (E5M2) on both paths, as tensor's
// E4M3FromF32/E5M2FromF32 do; the hardware's NaN pattern is not relied upon.
GM_DEV u8 f32_to_e4m3(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
	if (isnan_f(x)) return (u8)(((f2u(x) >> 24) & 0x80u) | 0x7fu);
	u16 r;
	asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.0f), "f"(x));
	return (u8)(r & 0xffu);
#else
	return fp8_sw(x, 4, 3, 448.0f);
#endif
}

GM_DEV u8 f32_to_e5m2(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
	if (isnan_f(x)) return (u8)(((f2u(x) >> 24) & 0x80u) | 0x7eu);
	u16 r;
	asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.0f), "f"(x));
	return (u8)(r & 0xffu);
#else
	return fp8_sw(x, 5, 2, 57344.0f);
#endif
}

// ---- math ------------------------------------------------------------------------------
// exp_f: e^x with the argument reduced exactly (x = n·ln2 + r, Cody–Waite split of ln2) so
// that ex2.approx (relative error ≤ 2⁻²²) sees |r·log2e| ≤ 0.5; overall error a few ulp.
GM_DEV float exp_f(float x) {
	if (x < -104.0f) return 0.0f;
	if (x > 88.8f) return u2f(0x7f800000u);
	float n = rint_f(x * 1.44269504088896341f);
	float r = fma_f(n, -0.693145751953125f, x);
	r = fma_f(n, -1.428606765330187045e-06f, r);
	float p = ex2_approx(r * 1.44269504088896341f);
	int k = (int)n;
	// 2^k in two steps so k down to −150 stays representable.
	return p * pow2i(k / 2) * pow2i(k - k / 2);
}
// log_f: natural log for x > 0 (lg2.approx, absolute error ~2⁻²²); callers use it where
// an absolute error of that size is harmless (log-sum-exp).
GM_DEV float log_f(float x) { return lg2_approx(x) * 0.693147180559945309f; }
GM_DEV float sigmoid_f(float z) { return 1.0f / (1.0f + exp_f(-z)); }
// tanh_f = sign(x)·(1 − 2/(e^{2|x|} + 1)); for |x| < 0.0625 the series x − x³/3 + 2x⁵/15.
GM_DEV float tanh_f(float x) {
	float a = abs_f(x);
	float t;
	if (a < 0.0625f) {
		float x2 = x * x;
		return x * (1.0f + x2 * (-0.333333333f + x2 * 0.133333333f));
	}
	t = 1.0f - 2.0f / (exp_f(2.0f * a) + 1.0f);
	return x < 0.0f ? -t : t;
}
// erf_f: the Taylor series for |x| < 0.5, else 1 − erfc(|x|) with Numerical Recipes'
// Chebyshev fit of erfc (fractional error < 1.2e-7), so |erf error| ≲ 1e-7.
GM_DEV float erf_f(float x) {
	float a = abs_f(x);
	if (a < 0.5f) {
		float x2 = x * x;
		// 2/√π · (x − x³/3 + x⁵/10 − x⁷/42 + x⁹/216 − x¹¹/1320)
		float s = 1.0f + x2 * (-1.0f / 3.0f + x2 * (1.0f / 10.0f + x2 * (-1.0f / 42.0f + x2 * (1.0f / 216.0f + x2 * (-1.0f / 1320.0f)))));
		return 1.1283791670955126f * x * s;
	}
	// Numerical Recipes erfcc (fractional error < 1.2e-7).
	float t = 1.0f / (1.0f + 0.5f * a);
	float y = t * exp_f(-a * a - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
	          t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
	          t * (-0.82215223f + t * 0.17087277f)))))))));
	float r = 1.0f - y;
	return x < 0.0f ? -r : r;
}

// ---- warp and block reductions --------------------------------------------------------
GM_DEV float shfl_xor_f(float v, int m) { return u2f(shfl_xor_u(f2u(v), m)); }
GM_DEV double shfl_xor_d(double v, int m) {
	u64 u = d2u(v);
	unsigned lo = shfl_xor_u((unsigned)u, m), hi = shfl_xor_u((unsigned)(u >> 32), m);
	return u2d(((u64)hi << 32) | lo);
}
GM_DEV float warp_sum(float v) { for (int m = 16; m > 0; m >>= 1) v += shfl_xor_f(v, m); return v; }
GM_DEV double warp_sum_d(double v) { for (int m = 16; m > 0; m >>= 1) v += shfl_xor_d(v, m); return v; }
GM_DEV float max_nan(float a, float b) { return (isnan_f(a) || a > b) ? a : b; } // Go's max: NaN wins
GM_DEV float warp_max(float v) { for (int m = 16; m > 0; m >>= 1) v = max_nan(v, shfl_xor_f(v, m)); return v; }

// Block-wide reductions for blocks of a multiple of 32 threads (≤ 1024); sh holds 32 floats.
// Every thread gets the result.
GM_DEV float block_sum(float v, float* sh) {
	v = warp_sum(v);
	sync_threads();
	if (lane_id() == 0) sh[warp_id()] = v;
	sync_threads();
	unsigned nw = ntid_x() >> 5;
	v = lane_id() < nw ? sh[lane_id()] : 0.0f;
	return warp_sum(v);
}
GM_DEV double block_sum_d(double v, double* sh) {
	v = warp_sum_d(v);
	sync_threads();
	if (lane_id() == 0) sh[warp_id()] = v;
	sync_threads();
	unsigned nw = ntid_x() >> 5;
	v = lane_id() < nw ? sh[lane_id()] : 0.0;
	return warp_sum_d(v);
}
GM_DEV float block_max(float v, float* sh) {
	v = warp_max(v);
	sync_threads();
	if (lane_id() == 0) sh[warp_id()] = v;
	sync_threads();
	unsigned nw = ntid_x() >> 5;
	v = lane_id() < nw ? sh[lane_id()] : u2f(0xff800000u);
	return warp_max(v);
}
