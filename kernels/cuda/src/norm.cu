// norm.cu: RMSNorm and LayerNorm forward and backward over the last dim H. One block per
// row for the row statistics; weight gradients one thread per column, summed over rows in
// double in row order (as kernels/cpu).
#include "common.cuh"

// rstd = 1/sqrt(mean(x²) + eps), out = w ⊙ (x·rstd).
GM_KERNEL gm_rmsnorm_f32(float* out, float* rstd, const float* x, const float* w, int H, float eps) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const float* xr = x + r * H;
	double ss = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) ss += (double)xr[j] * (double)xr[j];
	ss = block_sum_d(ss, sh);
	float rr = (float)(1.0 / sqrt_d(ss / H + (double)eps));
	if (tid_x() == 0) rstd[r] = rr;
	for (int j = tid_x(); j < H; j += ntid_x()) out[r * H + j] = w[j] * (xr[j] * rr);
}

// dx = rstd·(w⊙dout − x̂·mean(w⊙dout⊙x̂)), x̂ = x·rstd.
GM_KERNEL gm_rmsnorm_bwd_dx_f32(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int H) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const float* xr = x + r * H;
	const float* gr = dout + r * H;
	float rr = rstd[r];
	double dot = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) dot += (double)(w[j] * gr[j]) * (double)(xr[j] * rr);
	dot = block_sum_d(dot, sh);
	float m = (float)(dot / H);
	for (int j = tid_x(); j < H; j += ntid_x()) dx[r * H + j] = rr * (w[j] * gr[j] - xr[j] * rr * m);
}

// dw[c] += Σ_r dout[r,c]·(x[r,c]·rstd[r]) (mean = 0 for RMSNorm) or ·(x − mean)·rstd for
// LayerNorm (mean non-null); db[c] += Σ_r dout[r,c] when db is non-null.
GM_KERNEL gm_norm_bwd_dw_f32(float* dw, float* db, const float* dout, const float* x, const float* mean,
                             const float* rstd, i64 N, int H) {
	for (i64 c = gstart(); c < H; c += gstride()) {
		double sw = 0, sb = 0;
		for (i64 r = 0; r < N; r++) {
			float g = dout[r * H + c];
			float xv = x[r * H + c];
			float xh = mean ? (xv - mean[r]) * rstd[r] : xv * rstd[r];
			sw += (double)(g * xh);
			sb += (double)g;
		}
		dw[c] += (float)sw;
		if (db) db[c] += (float)sb;
	}
}

// mean, biased variance (two passes in double), x̂ = (x − mean)·rstd, out = w⊙x̂ + b.
GM_KERNEL gm_layernorm_f32(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b,
                           int H, float eps) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const float* xr = x + r * H;
	double s = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) s += (double)xr[j];
	s = block_sum_d(s, sh);
	double mu = s / H;
	double ss = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) { double d = (double)xr[j] - mu; ss += d * d; }
	ss = block_sum_d(ss, sh);
	float m32 = (float)mu;
	float rr = (float)(1.0 / sqrt_d(ss / H + (double)eps));
	if (tid_x() == 0) { mean[r] = m32; rstd[r] = rr; }
	for (int j = tid_x(); j < H; j += ntid_x()) out[r * H + j] = w[j] * ((xr[j] - m32) * rr) + b[j];
}

// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂)), ĝ = w⊙dout.
GM_KERNEL gm_layernorm_bwd_dx_f32(float* dx, const float* dout, const float* x, const float* w, const float* mean,
                                  const float* rstd, int H) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	const float* xr = x + r * H;
	const float* gr = dout + r * H;
	float mu = mean[r], rr = rstd[r];
	double sg = 0, sgx = 0;
	for (int j = tid_x(); j < H; j += ntid_x()) {
		float g = w[j] * gr[j];
		sg += (double)g;
		sgx += (double)g * (double)((xr[j] - mu) * rr);
	}
	sg = block_sum_d(sg, sh);
	sgx = block_sum_d(sgx, sh);
	float mg = (float)(sg / H), mgx = (float)(sgx / H);
	for (int j = tid_x(); j < H; j += ntid_x()) dx[r * H + j] = rr * (w[j] * gr[j] - mg - (xr[j] - mu) * rr * mgx);
}
