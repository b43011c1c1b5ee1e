// rope.cu: rotary position embedding, rotate-half or interleaved layout, on x [B, H, S, D] viewed as rows
// of D (F32 or BF16: T is float or u16, through ld/st). cos/sin [n, d/2] are tables
// computed on the host exactly as kernels/cpu (float32 angle p·θᵢ, cos/sin in float64), so
// both backends rotate by the same numbers.
#include "common.cuh"

// out[i] = x[i]·c − x[i+h]·s, out[i+h] = x[i+h]·c + x[i]·s with s = sign·sin (pairs 2i and
// 2i+1 instead when inter is 1: --rotary-interleaved); channels ≥ d are copied. Row r is token (b, s) = (r / (H·S), r % S), at position pos0 + s, or
// positions[b·S + s] when positions (I32 [B, S]: --reset-position-ids) is given; a position
// outside the n table rows rotates to NaN rather than reading past the tables. out may
// alias x (each thread reads its pair before writing it).
template <typename T>
GM_DEV void rope(T* out, const T* x, const float* cosT, const float* sinT, i64 rows, int H, int S, int D, int d, int pos0,
                 const int* positions, int n, float sign, int inter) {
	int h = d / 2;
	int step = inter ? 2 : 1, off = inter ? 1 : h; // pair i is (step·i, step·i + off)
	int per = h + (D - d); // work items per row: h pairs, then the pass-through channels
	i64 total = rows * per;
	for (i64 t = gstart(); t < total; t += gstride()) {
		i64 r = t / per;
		int i = (int)(t % per);
		const T* xr = x + r * D;
		T* orow = out + r * D;
		if (i >= h) {
			int c = d + (i - h);
			st(orow, c, ld(xr, c));
			continue;
		}
		int s = (int)(r % S);
		int pos = positions ? positions[(r / ((i64)H * S)) * S + s] : pos0 + s;
		float c = u2f(0x7fc00000u), sn = c;
		if (pos >= 0 && pos < n) {
			c = cosT[(i64)pos * h + i];
			sn = sign * sinT[(i64)pos * h + i];
		}
		int i1 = step * i, i2 = step * i + off;
		float x1 = ld(xr, i1), x2 = ld(xr, i2);
		float a = x1 * c, b = x2 * sn, e = x2 * c, f = x1 * sn;
		a = no_fma(a); b = no_fma(b); e = no_fma(e); f = no_fma(f); // round each product as Go does
		st(orow, i1, a - b);
		st(orow, i2, e + f);
	}
}
GM_KERNEL gm_rope_f32(float* out, const float* x, const float* cosT, const float* sinT, i64 rows, int H, int S, int D,
                      int d, int pos0, const int* positions, int n, float sign, int inter) {
	rope(out, x, cosT, sinT, rows, H, S, D, d, pos0, positions, n, sign, inter);
}
GM_KERNEL gm_rope_bf16(u16* out, const u16* x, const float* cosT, const float* sinT, i64 rows, int H, int S, int D,
                       int d, int pos0, const int* positions, int n, float sign, int inter) {
	rope(out, x, cosT, sinT, rows, H, S, D, d, pos0, positions, n, sign, inter);
}
