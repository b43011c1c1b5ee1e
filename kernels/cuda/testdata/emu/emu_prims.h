// emu_prims.h: the primitives of src/common.cuh for the host emulator (GM_HOST_EMU): the
// same semantics as the inline PTX, in plain C++ on one OS thread, where every CUDA thread
// is a fiber (emu.cpp) and barriers and shuffles switch fibers.
#include <math.h>
#include <string.h>

unsigned gm_emu_tid();
unsigned gm_emu_ntid();
unsigned gm_emu_ctaid();
unsigned gm_emu_nctaid();
void gm_emu_bar();
unsigned gm_emu_shfl_xor(unsigned v, int m);
void gm_emu_mma_bf16(float* d, const unsigned* a, const unsigned* b);
void gm_emu_ldmatrix_x4(unsigned* r, const unsigned short* p, int trans);

GM_DEV unsigned tid_x() { return gm_emu_tid(); }
GM_DEV unsigned ntid_x() { return gm_emu_ntid(); }
GM_DEV unsigned ctaid_x() { return gm_emu_ctaid(); }
GM_DEV unsigned nctaid_x() { return gm_emu_nctaid(); }
GM_DEV void sync_threads() { gm_emu_bar(); }

GM_DEV unsigned f2u(float x) { unsigned r; memcpy(&r, &x, 4); return r; }
GM_DEV float u2f(unsigned x) { float r; memcpy(&r, &x, 4); return r; }
GM_DEV u64 d2u(double x) { u64 r; memcpy(&r, &x, 8); return r; }
GM_DEV double u2d(u64 x) { double r; memcpy(&r, &x, 8); return r; }

// cvt.rn.bf16.f32: round to nearest even; NaN to the canonical 0x7fff.
GM_DEV u16 f32_to_bf16(float x) {
	unsigned u = f2u(x);
	if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
	return (u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
GM_DEV float f16_to_f32(u16 h) { _Float16 v; memcpy(&v, &h, 2); return (float)v; }
GM_DEV u16 f32_to_f16(float x) { _Float16 v = (_Float16)x; u16 r; memcpy(&r, &v, 2); return r; }

GM_DEV float rint_f(float x) { return rintf(x); }
GM_DEV float ex2_approx(float x) { return exp2f(x); }
GM_DEV float lg2_approx(float x) { return log2f(x); }
GM_DEV float fma_f(float a, float b, float c) { return fmaf(a, b, c); }
GM_DEV float sqrt_f(float x) { return sqrtf(x); }
GM_DEV double sqrt_d(double x) { return sqrt(x); }
GM_DEV float no_fma(float x) { return x; }

GM_DEV unsigned shfl_xor_u(unsigned v, int m) { return gm_emu_shfl_xor(v, m); }
GM_DEV void mma_bf16_16816(float* d, const unsigned* a, const unsigned* b) { gm_emu_mma_bf16(d, a, b); }
GM_DEV void ldmatrix_x4(unsigned* r, const u16* p) { gm_emu_ldmatrix_x4(r, p, 0); }
GM_DEV void ldmatrix_x4_trans(unsigned* r, const u16* p) { gm_emu_ldmatrix_x4(r, p, 1); }
// cp.async completes at once here (one OS thread): the groups have nothing to wait for.
GM_DEV void cp_async16(void* smem, const void* gmem, bool valid) {
	if (valid) memcpy(smem, gmem, 16);
	else memset(smem, 0, 16);
}
GM_DEV void cp_async_commit() {}
template <int N> GM_DEV void cp_async_wait() {}

// One OS thread runs every fiber and a fiber never yields inside these: plain updates are
// atomic here.
GM_DEV void atomic_add_f(float* p, float v) { *p += v; }
GM_DEV void atomic_max_u(unsigned* p, unsigned v) { if (v > *p) *p = v; }
GM_DEV void atomic_add_d(double* p, double v) { *p += v; }
