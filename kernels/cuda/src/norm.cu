// norm.cu: RMSNorm and LayerNorm forward and backward over the last dim H. One block per
// row for the row statistics; weight gradients one thread per column, summed over rows in
// double in row order (as kernels/cpu). out, x, dout and dx are F32 or BF16 (T: float or
// u16, through ld/st); w, b, dw, db, mean and rstd F32.
#include "common.cuh"

// rstd = 1/sqrt(mean(x²) + eps), out = w ⊙ (x·rstd).
template <typename T> GM_DEV void rmsnorm(T* out, float* rstd, const T* x, const float* w, int H, float eps) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const T* xr = x + r * H;
	double ss = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) {
		double v = (double)ld(xr, j);
		ss += v * v;
	}
	ss = block_sum_d(ss, sh);
	float rr = (float)(1.0 / sqrt_d(ss / H + (double)eps));
	if (tid_x() == 0) rstd[r] = rr;
	for (int j = tid_x(); j < H; j += ntid_x()) st(out, r * H + j, w[j] * (ld(xr, j) * rr));
}
GM_KERNEL gm_rmsnorm_f32(float* out, float* rstd, const float* x, const float* w, int H, float eps) {
	rmsnorm(out, rstd, x, w, H, eps);
}
GM_KERNEL gm_rmsnorm_bf16(u16* out, float* rstd, const u16* x, const float* w, int H, float eps) {
	rmsnorm(out, rstd, x, w, H, eps);
}

// dx = rstd·(w⊙dout − x̂·mean(w⊙dout⊙x̂)), x̂ = x·rstd.
template <typename T>
GM_DEV void rmsnorm_bwd_dx(T* dx, const T* dout, const T* x, const float* w, const float* rstd, int H) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const T* xr = x + r * H;
	const T* gr = dout + r * H;
	float rr = rstd[r];
	double dot = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) dot += (double)(w[j] * ld(gr, j)) * (double)(ld(xr, j) * rr);
	dot = block_sum_d(dot, sh);
	float m = (float)(dot / H);
	for (int j = tid_x(); j < H; j += ntid_x()) st(dx, r * H + j, rr * (w[j] * ld(gr, j) - ld(xr, j) * rr * m));
}
GM_KERNEL gm_rmsnorm_bwd_dx_f32(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int H) {
	rmsnorm_bwd_dx(dx, dout, x, w, rstd, H);
}
GM_KERNEL gm_rmsnorm_bwd_dx_bf16(u16* dx, const u16* dout, const u16* x, const float* w, const float* rstd, int H) {
	rmsnorm_bwd_dx(dx, dout, x, w, rstd, H);
}

// Column sums of the weight and bias gradients, dw[c] += Σ_r dout[r,c]·x̂[r,c] and
// db[c] += Σ_r dout[r,c], with x̂ = x·rstd (RMSNorm: mean null) or (x − mean)·rstd
// (LayerNorm); BiasGrad passes no x and takes db alone. Two deterministic passes, so that
// every SM takes part (a thread per column would leave most of the GPU idle at hidden
// sizes of a few thousand): colsum_part sums rows [k·R, k·R + R) of column c in double in
// row order into part[k·H + c] (dw's terms) and part[K·H + k·H + c] (db's); then
// gm_colsum_finish adds each column's K partial sums in order.
template <typename T>
GM_DEV void colsum_part(double* part, const T* dout, const T* x, const float* mean, const float* rstd, i64 N, int H,
                        int R, int K) {
	i64 n = (i64)K * H;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 k = i / H, c = i % H;
		i64 r0 = k * R, r1 = r0 + R < N ? r0 + R : N;
		double sw = 0, sb = 0;
		for (i64 r = r0; r < r1; r++) {
			float g = ld(dout, r * H + c);
			if (x) {
				float xv = ld(x, r * H + c);
				float xh = mean ? (xv - mean[r]) * rstd[r] : xv * rstd[r];
				sw += (double)(g * xh);
			}
			sb += (double)g;
		}
		part[i] = sw;
		part[n + i] = sb;
	}
}
GM_KERNEL gm_colsum_part_f32(double* part, const float* dout, const float* x, const float* mean, const float* rstd,
                             i64 N, int H, int R, int K) {
	colsum_part(part, dout, x, mean, rstd, N, H, R, K);
}
GM_KERNEL gm_colsum_part_bf16(double* part, const u16* dout, const u16* x, const float* mean, const float* rstd,
                              i64 N, int H, int R, int K) {
	colsum_part(part, dout, x, mean, rstd, N, H, R, K);
}

// dw[c] += Σ_k part[k·H + c] and db[c] += Σ_k part[K·H + k·H + c], k in order; either
// output may be null.
GM_KERNEL gm_colsum_finish(float* dw, float* db, const double* part, int K, int H) {
	for (i64 c = gstart(); c < H; c += gstride()) {
		double sw = 0, sb = 0;
		for (int k = 0; k < K; k++) {
			sw += part[(i64)k * H + c];
			sb += part[(i64)(K + k) * H + c];
		}
		if (dw) dw[c] += (float)sw;
		if (db) db[c] += (float)sb;
	}
}

// mean, biased variance (two passes in double), x̂ = (x − mean)·rstd, out = w⊙x̂ + b.
template <typename T>
GM_DEV void layernorm(T* out, float* mean, float* rstd, const T* x, const float* w, const float* b, int H, float eps) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const T* xr = x + r * H;
	double s = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) s += (double)ld(xr, j);
	s = block_sum_d(s, sh);
	double mu = s / H;
	double ss = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) { double d = (double)ld(xr, j) - mu; ss += d * d; }
	ss = block_sum_d(ss, sh);
	float m32 = (float)mu;
	float rr = (float)(1.0 / sqrt_d(ss / H + (double)eps));
	if (tid_x() == 0) { mean[r] = m32; rstd[r] = rr; }
	for (int j = tid_x(); j < H; j += ntid_x()) st(out, r * H + j, w[j] * ((ld(xr, j) - m32) * rr) + b[j]);
}
GM_KERNEL gm_layernorm_f32(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b,
                           int H, float eps) {
	layernorm(out, mean, rstd, x, w, b, H, eps);
}
GM_KERNEL gm_layernorm_bf16(u16* out, float* mean, float* rstd, const u16* x, const float* w, const float* b,
                            int H, float eps) {
	layernorm(out, mean, rstd, x, w, b, H, eps);
}

// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂)), ĝ = w⊙dout.
template <typename T>
GM_DEV void layernorm_bwd_dx(T* dx, const T* dout, const T* x, const float* w, const float* mean, const float* rstd,
                             int H) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const T* xr = x + r * H;
	const T* gr = dout + r * H;
	float mu = mean[r], rr = rstd[r];
	double sg = 0, sgx = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) {
		float g = w[j] * ld(gr, j);
		sg += (double)g;
		sgx += (double)g * (double)((ld(xr, j) - mu) * rr);
	}
	sg = block_sum_d(sg, sh);
	sgx = block_sum_d(sgx, sh);
	float mg = (float)(sg / H), mgx = (float)(sgx / H);
	for (int j = tid_x(); j < H; j += ntid_x()) st(dx, r * H + j, rr * (w[j] * ld(gr, j) - mg - (ld(xr, j) - mu) * rr * mgx));
}
GM_KERNEL gm_layernorm_bwd_dx_f32(float* dx, const float* dout, const float* x, const float* w, const float* mean,
                                  const float* rstd, int H) {
	layernorm_bwd_dx(dx, dout, x, w, mean, rstd, H);
}
GM_KERNEL gm_layernorm_bwd_dx_bf16(u16* dx, const u16* dout, const u16* x, const float* w, const float* mean,
                                   const float* rstd, int H) {
	layernorm_bwd_dx(dx, dout, x, w, mean, rstd, H);
}
