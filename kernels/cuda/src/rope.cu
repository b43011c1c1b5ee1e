// rope.cu: rotary position embedding, rotate-half layout, on x [B, H, S, D] viewed as rows
// of D (F32 or BF16: T is float or u16, through ld/st). cos/sin [positions, d/2] are tables
// computed on the host exactly as kernels/cpu (float32 angle p·θᵢ, cos/sin in float64), so
// both backends rotate by the same numbers.
#include "common.cuh"

// out[i] = x[i]·c − x[i+h]·s, out[i+h] = x[i+h]·c + x[i]·s with s = sign·sin; channels ≥ d
// are copied. out may alias x (each thread reads its pair before writing it).
template <typename T>
GM_DEV void rope(T* out, const T* x, const float* cosT, const float* sinT, i64 rows, int S, int D, int d, int pos0,
                 float sign) {
	int h = d / 2;
	int per = h + (D - d); // work items per row: h pairs, then the pass-through channels
	i64 n = rows * per;
	for (i64 t = gstart(); t < n; t += gstride()) {
		i64 r = t / per;
		int i = (int)(t % per);
		const T* xr = x + r * D;
		T* orow = out + r * D;
		if (i >= h) {
			int c = d + (i - h);
			st(orow, c, ld(xr, c));
			continue;
		}
		int pos = pos0 + (int)(r % S);
		float c = cosT[(i64)pos * h + i], s = sign * sinT[(i64)pos * h + i];
		float x1 = ld(xr, i), x2 = ld(xr, i + h);
		float a = x1 * c, b = x2 * s, e = x2 * c, f = x1 * s;
		a = no_fma(a); b = no_fma(b); e = no_fma(e); f = no_fma(f); // round each product as Go does
		st(orow, i, a - b);
		st(orow, i + h, e + f);
	}
}
GM_KERNEL gm_rope_f32(float* out, const float* x, const float* cosT, const float* sinT, i64 rows, int S, int D, int d,
                      int pos0, float sign) {
	rope(out, x, cosT, sinT, rows, S, D, d, pos0, sign);
}
GM_KERNEL gm_rope_bf16(u16* out, const u16* x, const float* cosT, const float* sinT, i64 rows, int S, int D, int d,
                       int pos0, float sign) {
	rope(out, x, cosT, sinT, rows, S, D, d, pos0, sign);
}
