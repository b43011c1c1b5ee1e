// attention.cu: a simple, correct scaled-dot-product attention (the fast flash-attention
// kernel is a later step). One warp per query row (forward, dq) or per key row (dk, dv);
// each lane holds D/32 channels (D ≤ 256) in registers, and the softmax is online (running
// max and sum), so no score matrix is stored. Layouts: q, out, dq [B, H, S, D]; k, v, dk, dv
// [B, G, T, D]; lse, Dsum [B, H, S]. See kernels.AttnParams for masking and ALiBi.
#include "common.cuh"

#define ATT_MAXC 8 // channels per lane: D ≤ 32·ATT_MAXC

struct AttnGeom {
	int B, H, G, S, T, D;
	float scale;
	int causal, window, qoff, before;
};

// Score from the raw dot product q·k (ALiBi bias slope·j added after or before scaling).
GM_DEV float attn_score(float dot, const AttnGeom& g, float slope, int j) {
	if (slope != 0.0f && g.before) return g.scale * (dot + slope * (float)j);
	float s = g.scale * dot;
	if (slope != 0.0f) s += slope * (float)j;
	return s;
}

GM_DEV void key_range(const AttnGeom& g, int i, int* lo, int* hi) {
	int qpos = g.qoff + i;
	int a = 0, b = g.T;
	if (g.causal && qpos + 1 < b) b = qpos + 1;
	if (g.window > 0 && qpos - g.window + 1 > a) a = qpos - g.window + 1;
	*lo = a;
	*hi = b > a ? b : a;
}

GM_DEV void query_range(const AttnGeom& g, int j, int* lo, int* hi) {
	int a = 0, b = g.S;
	if (g.causal && j - g.qoff > a) a = j - g.qoff;
	if (g.window > 0 && j - g.qoff + g.window < b) b = j - g.qoff + g.window;
	*lo = a;
	*hi = b > a ? b : a;
}

GM_DEV void load_row(float* r, const float* p, int D) {
	unsigned l = lane_id();
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++) r[c] = (l + 32 * c < (unsigned)D) ? p[l + 32 * c] : 0.0f;
}

GM_DEV float dot_row(const float* r, const float* p, int D) {
	unsigned l = lane_id();
	float s = 0;
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++)
		if (l + 32 * c < (unsigned)D) s += r[c] * p[l + 32 * c];
	return warp_sum(s);
}

GM_DEV void store_row(float* p, const float* r, int D, float mul) {
	unsigned l = lane_id();
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++)
		if (l + 32 * c < (unsigned)D) p[l + 32 * c] = r[c] * mul;
}

GM_DEV i64 warp_global() { return (i64)ctaid_x() * (ntid_x() >> 5) + warp_id(); }

GM_KERNEL gm_attn_fwd_f32(float* out, float* lse, const float* q, const float* k, const float* v,
                          const float* slopes, AttnGeom g) {
	i64 w = warp_global();
	if (w >= (i64)g.B * g.H * g.S) return;
	int i = (int)(w % g.S);
	i64 bh = w / g.S;
	int h = (int)(bh % g.H), b = (int)(bh / g.H);
	int grp = h / (g.H / g.G);
	const float* kb = k + ((i64)b * g.G + grp) * g.T * g.D;
	const float* vb = v + ((i64)b * g.G + grp) * g.T * g.D;
	float slope = slopes ? slopes[h] : 0.0f;
	float qr[ATT_MAXC], acc[ATT_MAXC];
	load_row(qr, q + w * g.D, g.D);
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++) acc[c] = 0.0f;
	float m = u2f(0xff800000u), l = 0.0f;
	int jlo, jhi;
	key_range(g, i, &jlo, &jhi);
	for (int j = jlo; j < jhi; j++) {
		float s = attn_score(dot_row(qr, kb + (i64)j * g.D, g.D), g, slope, j);
		float mn = s > m ? s : m;
		float corr = exp_f(m - mn), p = exp_f(s - mn);
		l = l * corr + p;
		const float* vr = vb + (i64)j * g.D;
		unsigned ln = lane_id();
#pragma unroll
		for (int c = 0; c < ATT_MAXC; c++)
			if (ln + 32 * c < (unsigned)g.D) acc[c] = acc[c] * corr + p * vr[ln + 32 * c];
		m = mn;
	}
	if (l == 0.0f) {
		store_row(out + w * g.D, acc, g.D, 0.0f);
		if (lane_id() == 0) lse[w] = u2f(0xff800000u);
		return;
	}
	store_row(out + w * g.D, acc, g.D, 1.0f / l);
	if (lane_id() == 0) lse[w] = m + log_f(l);
}

// Dsum[row] = Σ_d dout·out.
GM_KERNEL gm_attn_bwd_dsum_f32(float* dsum, const float* dout, const float* out, i64 rows, int D) {
	i64 w = warp_global();
	if (w >= rows) return;
	float r[ATT_MAXC];
	load_row(r, dout + w * D, D);
	float s = dot_row(r, out + w * D, D);
	if (lane_id() == 0) dsum[w] = s;
}

// dq_i = Scale·Σ_j dS_ij·k_j with P_ij = exp(s_ij − lse_i), dS_ij = P_ij(dout_i·v_j − Dsum_i).
GM_KERNEL gm_attn_bwd_dq_f32(float* dq, const float* dout, const float* q, const float* k, const float* v,
                             const float* lse, const float* dsum, const float* slopes, AttnGeom g) {
	i64 w = warp_global();
	if (w >= (i64)g.B * g.H * g.S) return;
	int i = (int)(w % g.S);
	i64 bh = w / g.S;
	int h = (int)(bh % g.H), b = (int)(bh / g.H);
	int grp = h / (g.H / g.G);
	const float* kb = k + ((i64)b * g.G + grp) * g.T * g.D;
	const float* vb = v + ((i64)b * g.G + grp) * g.T * g.D;
	float slope = slopes ? slopes[h] : 0.0f;
	float qr[ATT_MAXC], gr[ATT_MAXC], acc[ATT_MAXC];
	load_row(qr, q + w * g.D, g.D);
	load_row(gr, dout + w * g.D, g.D);
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++) acc[c] = 0.0f;
	float li = lse[w], di = dsum[w];
	int jlo, jhi;
	key_range(g, i, &jlo, &jhi);
	if (li == u2f(0xff800000u)) jhi = jlo;
	for (int j = jlo; j < jhi; j++) {
		float s = attn_score(dot_row(qr, kb + (i64)j * g.D, g.D), g, slope, j);
		float p = exp_f(s - li);
		float ds = p * (dot_row(gr, vb + (i64)j * g.D, g.D) - di);
		const float* kr = kb + (i64)j * g.D;
		unsigned ln = lane_id();
#pragma unroll
		for (int c = 0; c < ATT_MAXC; c++)
			if (ln + 32 * c < (unsigned)g.D) acc[c] += ds * kr[ln + 32 * c];
	}
	store_row(dq + w * g.D, acc, g.D, g.scale);
}

// For key row j of group grp: dv_j = Σ_{h∈grp, i} P_ij·dout_i, dk_j = Scale·Σ dS_ij·q_i.
GM_KERNEL gm_attn_bwd_dkv_f32(float* dk, float* dv, const float* dout, const float* q, const float* k,
                              const float* v, const float* lse, const float* dsum, const float* slopes, AttnGeom g) {
	i64 w = warp_global();
	if (w >= (i64)g.B * g.G * g.T) return;
	int j = (int)(w % g.T);
	i64 bg = w / g.T;
	int grp = (int)(bg % g.G), b = (int)(bg / g.G);
	int rep = g.H / g.G;
	float kr[ATT_MAXC], vr[ATT_MAXC], ak[ATT_MAXC], av[ATT_MAXC];
	load_row(kr, k + w * g.D, g.D);
	load_row(vr, v + w * g.D, g.D);
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++) { ak[c] = 0.0f; av[c] = 0.0f; }
	int ilo, ihi;
	query_range(g, j, &ilo, &ihi);
	unsigned ln = lane_id();
	for (int h = grp * rep; h < (grp + 1) * rep; h++) {
		float slope = slopes ? slopes[h] : 0.0f;
		i64 row0 = ((i64)b * g.H + h) * g.S;
		for (int i = ilo; i < ihi; i++) {
			i64 row = row0 + i;
			float li = lse[row];
			if (li == u2f(0xff800000u)) continue;
			const float* qr = q + row * g.D;
			const float* gr = dout + row * g.D;
			float s = attn_score(dot_row(kr, qr, g.D), g, slope, j);
			float p = exp_f(s - li);
			float ds = p * (dot_row(vr, gr, g.D) - dsum[row]);
#pragma unroll
			for (int c = 0; c < ATT_MAXC; c++)
				if (ln + 32 * c < (unsigned)g.D) {
					av[c] += p * gr[ln + 32 * c];
					ak[c] += ds * qr[ln + 32 * c];
				}
		}
	}
	store_row(dk + w * g.D, ak, g.D, g.scale);
	store_row(dv + w * g.D, av, g.D, 1.0f);
}
