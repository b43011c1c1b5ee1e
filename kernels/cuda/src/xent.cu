// xent.cu: softmax cross-entropy pieces over a vocab shard logits [N, V] (one block per row
// for the row reductions) and its backward. logits and dlogits are F32 or BF16 (T: float
// or u16, through ld/st); mx, se, tl and dloss F32.
#include "common.cuh"

template <typename T> GM_DEV void rowmax(float* mx, const T* logits, int V) {
	__shared__ float sh[32];
	i64 r = ctaid_x();
	float m = u2f(0xff800000u);
	for (int j = tid_x(); j < V; j += ntid_x()) m = max_nan(m, ld(logits, r * V + j));
	m = block_max(m, sh);
	if (tid_x() == 0) mx[r] = m;
}
GM_KERNEL gm_rowmax_f32(float* mx, const float* logits, int V) { rowmax(mx, logits, V); }
GM_KERNEL gm_rowmax_bf16(float* mx, const u16* logits, int V) { rowmax(mx, logits, V); }

// se[r] = Σ_v exp(logits[r,v] − mx[r]), summed in double.
template <typename T> GM_DEV void sumexp(float* se, const T* logits, const float* mx, int V) {
	__shared__ double sh[32];
	i64 r = ctaid_x();
	float m = mx[r];
	double s = 0;
	for (int j = tid_x(); j < V; j += ntid_x()) s += (double)exp_f(ld(logits, r * V + j) - m);
	s = block_sum_d(s, sh);
	if (tid_x() == 0) se[r] = (float)s;
}
GM_KERNEL gm_sumexp_f32(float* se, const float* logits, const float* mx, int V) { sumexp(se, logits, mx, V); }
GM_KERNEL gm_sumexp_bf16(float* se, const u16* logits, const float* mx, int V) { sumexp(se, logits, mx, V); }

// tl[r] = logits[r, t−start] for an in-shard target t, else 0. targets are I64 (is64) or I32.
template <typename T>
GM_DEV void target_logit(float* tl, const T* logits, const void* targets, int is64, i64 N, int V, i64 start) {
	for (i64 r = gstart(); r < N; r += gstride()) {
		i64 t = is64 ? ((const i64*)targets)[r] : (i64)((const int*)targets)[r];
		i64 c = t - start;
		tl[r] = (c >= 0 && c < V) ? ld(logits, r * V + c) : 0.0f;
	}
}
GM_KERNEL gm_target_logit_f32(float* tl, const float* logits, const void* targets, int is64, i64 N, int V, i64 start) {
	target_logit(tl, logits, targets, is64, N, V, start);
}
GM_KERNEL gm_target_logit_bf16(float* tl, const u16* logits, const void* targets, int is64, i64 N, int V, i64 start) {
	target_logit(tl, logits, targets, is64, N, V, start);
}

// dlogits[r,v] = (exp(logits[r,v] − mx[r])/se[r] − [v = t−start])·dloss[r]; may alias logits.
template <typename T>
GM_DEV void xent_bwd(T* dl, const T* logits, const float* mx, const float* se, const void* targets, int is64,
                     const float* dloss, i64 N, int V, i64 start) {
	i64 n = N * V;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 r = i / V;
		int v = (int)(i % V);
		i64 t = is64 ? ((const i64*)targets)[r] : (i64)((const int*)targets)[r];
		float inv = 1.0f / se[r];
		float e = exp_f(ld(logits, i) - mx[r]);
		st(dl, i, (t - start == v) ? (e * inv - 1.0f) * dloss[r] : e * inv * dloss[r]);
	}
}
GM_KERNEL gm_xent_bwd_f32(float* dl, const float* logits, const float* mx, const float* se, const void* targets,
                          int is64, const float* dloss, i64 N, int V, i64 start) {
	xent_bwd(dl, logits, mx, se, targets, is64, dloss, N, V, start);
}
GM_KERNEL gm_xent_bwd_bf16(u16* dl, const u16* logits, const float* mx, const float* se, const void* targets,
                           int is64, const float* dloss, i64 N, int V, i64 start) {
	xent_bwd(dl, logits, mx, se, targets, is64, dloss, N, V, start);
}
