// attention.cu: a simple, correct scaled-dot-product attention (the fast flash-attention
// kernel is a later step). One warp per query row (forward, dq) or per key row (dk, dv);
// each lane holds D/32 channels (D ≤ 256) in registers, and the softmax is online (running
// max and sum), so no score matrix is stored. Layouts: q, out, dq [B, H, S, D]; k, v, dk, dv
// [B, G, T, D]; lse, Dsum [B, H, S]. See kernels.AttnParams for masking and ALiBi;
// keystart (I32 [B, S], null when unset: --reset-attention-mask) masks keys j < keystart[b, i]
// on top of the causal and window rules (key_range, query_range): a query's loop over keys
// starts there, a key's loop over queries tests it query by query.
// q, k, v, out and their gradients are F32 or BF16 (T: float or u16, through ld/st); lse,
// Dsum and the ALiBi slopes F32.
#include "common.cuh"

#define ATT_MAXC 8 // channels per lane: D ≤ 32·ATT_MAXC

struct AttnGeom {
	int B, H, G, S, T, D;
	float scale;
	int causal, window, qoff, before;
	float dthr, dscale; // dropout: keep iff float(u>>40) ≥ dthr (p·2²⁴), kept × dscale
	int dheads, dhead0; // the dropout counter's head count and this call's first head
	int drows;          // > 0: queries count as rows qoff+i of drows (AttnParams.DropoutRows)
	u64 dseed, doff;
};

// Attention dropout's factor for (batch b, head h, query i, key j): 1 without dropout, else
// dscale or 0 by Dropout's counter-based rule (kernels.AttnParams.DropoutCounter).
GM_DEV float attn_drop(const AttnGeom& g, int b, int h, int i, int j) {
	if (g.dthr <= 0.0f) return 1.0f;
	u64 rows = g.drows > 0 ? (u64)g.drows : (u64)g.S;
	u64 row = g.drows > 0 ? (u64)(g.qoff + i) : (u64)i;
	u64 n = g.doff + (((u64)b * (u64)g.dheads + (u64)(g.dhead0 + h)) * rows + row) * (u64)g.T + (u64)j;
	u64 u = mix64(mix64(g.dseed) + (n + 1) * 0x9E3779B97F4A7C15ull);
	return (float)(u >> 40) >= g.dthr ? g.dscale : 0.0f;
}

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

GM_DEV int max_i(int a, int b) { return a > b ? a : b; }
GM_DEV int min_i(int a, int b) { return a < b ? a : b; }

// The first key query i of batch b may see by its document (0 without keystart).
GM_DEV int key_start(const int* keystart, const AttnGeom& g, int b, int i) {
	return keystart ? keystart[(i64)b * g.S + i] : 0;
}

GM_DEV void query_range(const AttnGeom& g, int j, int* lo, int* hi) {
	int a = 0, b = g.S;
	if (g.causal && j - g.qoff > a) a = j - g.qoff;
	if (g.window > 0 && j - g.qoff + g.window < b) b = j - g.qoff + g.window;
	*lo = a;
	*hi = b > a ? b : a;
}

template <typename T> GM_DEV void load_row(float* r, const T* p, int D) {
	unsigned l = lane_id();
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++) r[c] = (l + 32 * c < (unsigned)D) ? ld(p, l + 32 * c) : 0.0f;
}

template <typename T> GM_DEV float dot_row(const float* r, const T* p, int D) {
	unsigned l = lane_id();
	float s = 0;
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++)
		if (l + 32 * c < (unsigned)D) s += r[c] * ld(p, l + 32 * c);
	return warp_sum(s);
}

template <typename T> GM_DEV void store_row(T* p, const float* r, int D, float mul) {
	unsigned l = lane_id();
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++)
		if (l + 32 * c < (unsigned)D) st(p, l + 32 * c, r[c] * mul);
}

GM_DEV i64 warp_global() { return (i64)ctaid_x() * (ntid_x() >> 5) + warp_id(); }

template <typename T>
GM_DEV void attn_fwd(T* out, float* lse, const T* q, const T* k, const T* v, const float* slopes, AttnGeom g,
                     const int* keystart) {
	i64 w = warp_global();
	if (w >= (i64)g.B * g.H * g.S) return;
	int i = (int)(w % g.S);
	i64 bh = w / g.S;
	int h = (int)(bh % g.H), b = (int)(bh / g.H);
	int grp = h / (g.H / g.G);
	const T* kb = k + ((i64)b * g.G + grp) * g.T * g.D;
	const T* vb = v + ((i64)b * g.G + grp) * g.T * g.D;
	float slope = slopes ? slopes[h] : 0.0f;
	float qr[ATT_MAXC], acc[ATT_MAXC];
	load_row(qr, q + w * g.D, g.D);
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++) acc[c] = 0.0f;
	float m = u2f(0xff800000u), l = 0.0f;
	int jlo, jhi;
	key_range(g, i, &jlo, &jhi);
	jlo = max_i(jlo, key_start(keystart, g, b, i));
	for (int j = jlo; j < jhi; j++) {
		float s = attn_score(dot_row(qr, kb + (i64)j * g.D, g.D), g, slope, j);
		float mn = s > m ? s : m;
		float corr = exp_f(m - mn), p = exp_f(s - mn);
		l = l * corr + p;
		float pd = p * attn_drop(g, b, h, i, j);
		const T* vr = vb + (i64)j * g.D;
		unsigned ln = lane_id();
#pragma unroll
		for (int c = 0; c < ATT_MAXC; c++)
			if (ln + 32 * c < (unsigned)g.D) acc[c] = acc[c] * corr + pd * ld(vr, ln + 32 * c);
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
GM_KERNEL gm_attn_fwd_f32(float* out, float* lse, const float* q, const float* k, const float* v,
                          const float* slopes, AttnGeom g, const int* keystart) {
	attn_fwd(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL gm_attn_fwd_bf16(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const float* slopes,
                           AttnGeom g, const int* keystart) {
	attn_fwd(out, lse, q, k, v, slopes, g, keystart);
}

// Dsum[row] = Σ_d dout·out.
template <typename T> GM_DEV void attn_bwd_dsum(float* dsum, const T* dout, const T* out, i64 rows, int D) {
	i64 w = warp_global();
	if (w >= rows) return;
	float r[ATT_MAXC];
	load_row(r, dout + w * D, D);
	float s = dot_row(r, out + w * D, D);
	if (lane_id() == 0) dsum[w] = s;
}
GM_KERNEL gm_attn_bwd_dsum_f32(float* dsum, const float* dout, const float* out, i64 rows, int D) {
	attn_bwd_dsum(dsum, dout, out, rows, D);
}
GM_KERNEL gm_attn_bwd_dsum_bf16(float* dsum, const u16* dout, const u16* out, i64 rows, int D) {
	attn_bwd_dsum(dsum, dout, out, rows, D);
}

// dq_i = Scale·Σ_j dS_ij·k_j with P_ij = exp(s_ij − lse_i), dS_ij = P_ij(dout_i·v_j − Dsum_i).
template <typename T>
GM_DEV void attn_bwd_dq(T* dq, const T* dout, const T* q, const T* k, const T* v, const float* lse, const float* dsum,
                        const float* slopes, AttnGeom g, const int* keystart) {
	i64 w = warp_global();
	if (w >= (i64)g.B * g.H * g.S) return;
	int i = (int)(w % g.S);
	i64 bh = w / g.S;
	int h = (int)(bh % g.H), b = (int)(bh / g.H);
	int grp = h / (g.H / g.G);
	const T* kb = k + ((i64)b * g.G + grp) * g.T * g.D;
	const T* vb = v + ((i64)b * g.G + grp) * g.T * g.D;
	float slope = slopes ? slopes[h] : 0.0f;
	float qr[ATT_MAXC], gr[ATT_MAXC], acc[ATT_MAXC];
	load_row(qr, q + w * g.D, g.D);
	load_row(gr, dout + w * g.D, g.D);
#pragma unroll
	for (int c = 0; c < ATT_MAXC; c++) acc[c] = 0.0f;
	float li = lse[w], di = dsum[w];
	int jlo, jhi;
	key_range(g, i, &jlo, &jhi);
	jlo = max_i(jlo, key_start(keystart, g, b, i));
	if (li == u2f(0xff800000u)) jhi = jlo;
	for (int j = jlo; j < jhi; j++) {
		float s = attn_score(dot_row(qr, kb + (i64)j * g.D, g.D), g, slope, j);
		float p = exp_f(s - li);
		float ds = p * (attn_drop(g, b, h, i, j) * dot_row(gr, vb + (i64)j * g.D, g.D) - di);
		const T* kr = kb + (i64)j * g.D;
		unsigned ln = lane_id();
#pragma unroll
		for (int c = 0; c < ATT_MAXC; c++)
			if (ln + 32 * c < (unsigned)g.D) acc[c] += ds * ld(kr, ln + 32 * c);
	}
	store_row(dq + w * g.D, acc, g.D, g.scale);
}
GM_KERNEL gm_attn_bwd_dq_f32(float* dq, const float* dout, const float* q, const float* k, const float* v,
                             const float* lse, const float* dsum, const float* slopes, AttnGeom g,
                             const int* keystart) {
	attn_bwd_dq(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL gm_attn_bwd_dq_bf16(u16* dq, const u16* dout, const u16* q, const u16* k, const u16* v, const float* lse,
                              const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	attn_bwd_dq(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}

// For key row j of group grp: dv_j = Σ_{h∈grp, i} P_ij·dout_i, dk_j = Scale·Σ dS_ij·q_i.
template <typename T>
GM_DEV void attn_bwd_dkv(T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const float* lse,
                         const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
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
			if (li == u2f(0xff800000u) || j < key_start(keystart, g, b, i)) continue;
			const T* qr = q + row * g.D;
			const T* gr = dout + row * g.D;
			float s = attn_score(dot_row(kr, qr, g.D), g, slope, j);
			float p = exp_f(s - li), kf = attn_drop(g, b, h, i, j);
			float ds = p * (kf * dot_row(vr, gr, g.D) - dsum[row]);
			float pd = p * kf;
#pragma unroll
			for (int c = 0; c < ATT_MAXC; c++)
				if (ln + 32 * c < (unsigned)g.D) {
					av[c] += pd * ld(gr, ln + 32 * c);
					ak[c] += ds * ld(qr, ln + 32 * c);
				}
		}
	}
	store_row(dk + w * g.D, ak, g.D, g.scale);
	store_row(dv + w * g.D, av, g.D, 1.0f);
}
GM_KERNEL gm_attn_bwd_dkv_f32(float* dk, float* dv, const float* dout, const float* q, const float* k,
                              const float* v, const float* lse, const float* dsum, const float* slopes, AttnGeom g,
                              const int* keystart) {
	attn_bwd_dkv(dk, dv, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL gm_attn_bwd_dkv_bf16(u16* dk, u16* dv, const u16* dout, const u16* q, const u16* k, const u16* v,
                               const float* lse, const float* dsum, const float* slopes, AttnGeom g,
                               const int* keystart) {
	attn_bwd_dkv(dk, dv, dout, q, k, v, lse, dsum, slopes, g, keystart);
}

// ---- flash attention on the tensor cores (bf16 operands, f32 accumulation) ----------------
// FlashAttention-2's tiling with mma.m16n8k16: q, k, v, the probabilities P, dout and dS are
// rounded to bf16 for the products; scores, the online softmax, lse and every sum stay f32.
// BF16 q, k, v and dout are bf16 already and go into the tiles as they are; out, dk and dv
// are stored through st. The softmax runs in base 2 (ex2 of scores pre-multiplied by
// log2 e; lse converted back), and a tile that every row of a thread sees whole (no ALiBi)
// skips the per-element masking.
// Head dim D: a multiple of 16, at most FA_MAXD (the _d64 kernels: at most 64). Same masking, ALiBi and empty-row rules as
// the simple kernels above (attn_score, key_range, query_range, key_start). With keystart, the
// forward skips the key tiles below every row's first visible key and the backward the query
// tiles none of whose queries sees the block's keys.

#define FA_MAXD 128
#define FA_BK 64 // keys per tile
#define FB_BQ 32 // backward: query rows per step
#define FA_PAD 8 // shared-memory row padding (u16): rows 16-byte aligned, fragment reads conflict-free
#define LOG2E 1.44269504088896341f
#define LN2 0.693147180559945309f

GM_DEV unsigned pack_bf16(float lo, float hi) { return (unsigned)f32_to_bf16(lo) | ((unsigned)f32_to_bf16(hi) << 16); }
GM_DEV unsigned pack_u16(u16 lo, u16 hi) { return (unsigned)lo | ((unsigned)hi << 16); }
GM_DEV unsigned ld_pair(const u16* p) { return *(const unsigned*)p; } // p 4-byte aligned
GM_DEV float neg_inf() { return u2f(0xff800000u); }

// Element i of an activation as a bf16 operand: F32 rounded, BF16 as stored.
GM_DEV u16 bf16_at(const float* p, i64 i) { return f32_to_bf16(p[i]); }
GM_DEV u16 bf16_at(const u16* p, i64 i) { return p[i]; }

struct __attribute__((aligned(16))) u32x4 { unsigned x, y, z, w; };
struct __attribute__((aligned(16))) f32x4 { float x, y, z, w; };

// Eight consecutive elements at p (16-byte aligned for BF16, 32 for F32) as four bf16 pairs.
GM_DEV u32x4 ld8_bf16(const u16* p) { return *(const u32x4*)p; }
GM_DEV u32x4 ld8_bf16(const float* p) {
	f32x4 a = ((const f32x4*)p)[0], b = ((const f32x4*)p)[1];
	u32x4 r = {pack_bf16(a.x, a.y), pack_bf16(a.z, a.w), pack_bf16(b.x, b.y), pack_bf16(b.z, b.w)};
	return r;
}
GM_DEV bool aligned32(const void* p) { return ((u64)p & 31u) == 0; }

// The 8-element chunk of row r0 + r, column c of a [rows, D] matrix as four bf16 pairs
// (zeros past rows). vec: the matrix base is 32-byte aligned, so rows of D (a multiple of
// 16) load as 16-byte vectors; else element by element.
template <typename T> GM_DEV u32x4 fa_chunk(const T* src, int r0, int r, int c, int rows, int D, bool vec) {
	u32x4 x = {0u, 0u, 0u, 0u};
	if (r0 + r < rows) {
		const T* p = src + (i64)(r0 + r) * D + c;
		if (vec) x = ld8_bf16(p);
		else x = {pack_u16(bf16_at(p, 0), bf16_at(p, 1)), pack_u16(bf16_at(p, 2), bf16_at(p, 3)),
		          pack_u16(bf16_at(p, 4), bf16_at(p, 5)), pack_u16(bf16_at(p, 6), bf16_at(p, 7))};
	}
	return x;
}

// Loads rows [r0, r0+n) of a [rows, D] matrix as bf16 into a tile with row stride ld (u16),
// consecutive threads taking consecutive chunks of a row (coalesced).
template <typename T> GM_DEV void fa_tile(u16* dst, int ld, const T* src, int r0, int n, int rows, int D, bool vec) {
	int cpr = D >> 3; // 8-element chunks per row
	for (int e = (int)tid_x(); e < n * cpr; e += (int)ntid_x()) {
		int r = e / cpr, c = (e - r * cpr) << 3;
		*(u32x4*)(dst + r * ld + c) = fa_chunk(src, r0, r, c, rows, D, vec);
	}
}

// The same rows transposed: tr[c·ldt + r] = x[r0 + r][c]. Consecutive threads take
// consecutive rows of a chunk column, so a warp's stores fill consecutive words (a
// row-major mapping would put them all in one bank).
template <typename T> GM_DEV void fa_tile_t(u16* tr, int ldt, const T* src, int r0, int n, int rows, int D, bool vec) {
	int cpr = D >> 3;
	for (int e = (int)tid_x(); e < n * cpr; e += (int)ntid_x()) {
		int cc = e / n, r = e - cc * n, c = cc << 3;
		u32x4 x = fa_chunk(src, r0, r, c, rows, D, vec);
		unsigned w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
		for (int k = 0; k < 4; k++) {
			tr[(c + 2 * k) * ldt + r] = (u16)(w[k] & 0xffffu);
			tr[(c + 2 * k + 1) * ldt + r] = (u16)(w[k] >> 16);
		}
	}
}

// Rows r0 and r1 = r0 + 8 of a [rows, D] matrix as mma A fragments, one per 16 columns
// (a[kc]: the layout of mma_bf16_16816; zeros past rows), this lane's t = tq.
template <int MAXD, typename T>
GM_DEV void fa_a_frags(unsigned (*a)[4], const T* src, int r0, int r1, int rows, int D, int tq) {
#pragma unroll
	for (int kc = 0; kc < MAXD / 16; kc++) {
		if (kc >= D / 16) continue;
		int c = kc * 16 + 2 * tq;
		u16 x[8];
#pragma unroll
		for (int e = 0; e < 8; e++) {
			int r = (e & 2) ? r1 : r0, cc = c + (e & 1) + ((e & 4) ? 8 : 0);
			x[e] = r < rows ? bf16_at(src, (i64)r * D + cc) : (u16)0;
		}
#pragma unroll
		for (int e = 0; e < 4; e++) a[kc][e] = pack_u16(x[2 * e], x[2 * e + 1]);
	}
}

GM_DEV int warp_min_i(int v) {
	for (int m = 16; m > 0; m >>= 1) v = min_i(v, (int)shfl_xor_u((unsigned)v, m));
	return v;
}

// Starts the copies of rows [r0, r0 + n) of two BF16 [rows, D] matrices x and y (16-byte
// aligned; K and V, or q and dout) into row tiles xs, ys (row stride ld) with cp.async,
// zeros past rows, and closes them as one group.
GM_DEV void fa_issue_pair(u16* xs, u16* ys, int ld, const u16* x, const u16* y, int r0, int n, int rows, int D) {
	int cpr = D >> 3;
	for (int e = (int)tid_x(); e < n * cpr; e += (int)ntid_x()) {
		int r = e / cpr, c = (e - r * cpr) << 3;
		bool ok = r0 + r < rows;
		i64 off = ok ? (i64)(r0 + r) * D + c : 0;
		cp_async16(xs + r * ld + c, x + off, ok);
		cp_async16(ys + r * ld + c, y + off, ok);
	}
	cp_async_commit();
}

// One step of a two-stage cp.async pipeline over row tiles of x and y, stage st being
// consumed now: starts the copies of the next tile (rows [r0, r0 + n), when r0 < end) into
// the other stage, then waits for this stage's copies (a barrier must follow).
GM_DEV void fa_pipe_step(u16* xs, u16* ys, int stage, int st, int ld, const u16* x, const u16* y, int r0, int n, int end,
                         int rows, int D) {
	if (r0 < end) {
		fa_issue_pair(xs + (st ^ 1) * stage, ys + (st ^ 1) * stage, ld, x, y, r0, n, rows, D);
		cp_async_wait<1>();
	} else
		cp_async_wait<0>();
}

// The key span [*jlo, *jhi) of a block of query rows [first, first + bq) (clipped to S):
// ranges are monotonic in the query, so the first row's lo to the last row's hi; with
// keystart, from the least first key of the rows that see any (KeyStart need not be
// monotonic), which takes every thread of the block (wlo: one int per warp). lo0..hi1 are
// this lane's two rows' ranges.
GM_DEV void fa_key_span(const AttnGeom& g, int first, int bq, const int* keystart, int lo0, int hi0, int lo1, int hi1,
                        int* wlo, int* jlo, int* jhi) {
	int last = first + bq < g.S ? first + bq - 1 : g.S - 1, t0, t1;
	key_range(g, first, jlo, &t0);
	key_range(g, last, &t1, jhi);
	if (keystart) {
		int m = min_i(lo0 < hi0 ? lo0 : 0x7fffffff, lo1 < hi1 ? lo1 : 0x7fffffff);
		m = warp_min_i(m);
		if (lane_id() == 0) wlo[warp_id()] = m;
		sync_threads();
		m = wlo[0];
		for (int w = 1; w < (int)(ntid_x() >> 5); w++) m = min_i(m, wlo[w]);
		*jlo = max_i(*jlo, m);
	}
}

// One block: 16·NW query rows of one (b, h); warp w owns rows 16w..16w+15, lane rows
// r0 = 16w + g and r1 = r0 + 8. Keys stream through shared memory FA_BK at a time: K as
// rows (the B operand of Q·Kᵀ reads pairs along d), V transposed (P·V reads pairs along keys).
template <int MAXD, int NW, bool PIPE, typename T>
GM_DEV void flash_fwd(T* out, float* lse, const T* q, const T* k, const T* v, const float* slopes, AttnGeom g,
                      const int* keystart) {
	const int LDK = MAXD + FA_PAD, LDV = FA_BK + FA_PAD;
	const int KSZ = FA_BK * (MAXD + FA_PAD), VSZ = PIPE ? KSZ : MAXD * (FA_BK + FA_PAD);
	__shared__ __attribute__((aligned(16))) u16 ks[(PIPE ? 2 : 1) * FA_BK * (MAXD + FA_PAD)];
	__shared__ __attribute__((aligned(16))) u16 vt[PIPE ? 2 * FA_BK * (MAXD + FA_PAD) : MAXD * (FA_BK + FA_PAD)];
	__shared__ int wlo[NW];
	const int BQ = NW * 16; // query rows per block
	const int D = g.D, nkc = D / 16, ndt = D / 8;
	int nqb = (g.S + BQ - 1) / BQ;
	int qb = (int)(ctaid_x() % (unsigned)nqb);
	i64 bh = ctaid_x() / (unsigned)nqb;
	int h = (int)(bh % g.H), b = (int)(bh / g.H), grp = h / (g.H / g.G);
	const T* kb = k + ((i64)b * g.G + grp) * g.T * D;
	const T* vb = v + ((i64)b * g.G + grp) * g.T * D;
	const T* qh = q + bh * g.S * D;
	bool vec = aligned32(k) && aligned32(v);
	float slope = slopes ? slopes[h] : 0.0f;
	int lane = (int)lane_id(), gq = lane >> 2, tq = lane & 3;
	int r0 = qb * BQ + (int)warp_id() * 16 + gq, r1 = r0 + 8;
	int lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0;
	if (r0 < g.S) {
		key_range(g, r0, &lo0, &hi0);
		lo0 = max_i(lo0, key_start(keystart, g, b, r0));
	}
	if (r1 < g.S) {
		key_range(g, r1, &lo1, &hi1);
		lo1 = max_i(lo1, key_start(keystart, g, b, r1));
	}
	int jlo, jhi;
	fa_key_span(g, qb * BQ, BQ, keystart, lo0, hi0, lo1, hi1, wlo, &jlo, &jhi);
	// Both of this lane's rows see every key of [flo, fhi): tiles inside skip the masking.
	int flo = max_i(lo0, lo1), fhi = min_i(hi0, hi1);
	float sl2 = g.scale * LOG2E;

	unsigned qa[MAXD / 16][4];
	fa_a_frags<MAXD>(qa, qh, r0, r1, g.S, D, tq);
	float o[MAXD / 8][4];
#pragma unroll
	for (int dt = 0; dt < MAXD / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
	float m0 = neg_inf(), m1 = neg_inf(), l0 = 0.0f, l1 = 0.0f; // m in log2 units

	// PIPE (BF16, 16-byte aligned k and v): K and V rows stream by cp.async into two stages,
	// the next tile's copies in flight during this tile's products, and the fragments load
	// by ldmatrix (V's transposed), so no thread stores a tile element by element.
	int j0s = jlo - jlo % FA_BK, ldr = lane & 7, ldm = lane >> 3; // ldmatrix: row, matrix
	if (PIPE && j0s < jhi) fa_issue_pair(ks, vt, LDK, (const u16*)kb, (const u16*)vb, j0s, FA_BK, g.T, D);
	for (int j0 = j0s, t = 0; j0 < jhi; j0 += FA_BK, t++) {
		sync_threads();
		const u16 *kt_ = ks, *vt_ = vt;
		if (PIPE) {
			int st = t & 1;
			fa_pipe_step(ks, vt, KSZ, st, LDK, (const u16*)kb, (const u16*)vb, j0 + FA_BK, FA_BK, jhi, g.T, D);
			kt_ = ks + st * KSZ, vt_ = vt + st * VSZ;
		} else {
			fa_tile(ks, LDK, kb, j0, FA_BK, g.T, D, vec);
			fa_tile_t(vt, LDV, vb, j0, FA_BK, g.T, D, vec);
		}
		sync_threads();
		float s[FA_BK / 8][4];
#pragma unroll
		for (int nt = 0; nt < FA_BK / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
		if (PIPE) {
#pragma unroll
			for (int np = 0; np < FA_BK / 16; np++)
#pragma unroll
				for (int kc = 0; kc < MAXD / 16; kc++) {
					if (kc >= nkc) continue;
					unsigned r[4];
					ldmatrix_x4(r, kt_ + ((2 * np + (ldm >> 1)) * 8 + ldr) * LDK + kc * 16 + (ldm & 1) * 8);
					unsigned b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
					mma_bf16_16816(s[2 * np], qa[kc], b0);
					mma_bf16_16816(s[2 * np + 1], qa[kc], b1);
				}
		} else {
#pragma unroll
			for (int nt = 0; nt < FA_BK / 8; nt++) {
				const u16* kr = ks + (nt * 8 + gq) * LDK + 2 * tq;
#pragma unroll
				for (int kc = 0; kc < MAXD / 16; kc++) {
					if (kc >= nkc) continue;
					unsigned bb[2] = {ld_pair(kr + kc * 16), ld_pair(kr + kc * 16 + 8)};
					mma_bf16_16816(s[nt], qa[kc], bb);
				}
			}
		}
		float mx0 = neg_inf(), mx1 = neg_inf();
		if (slope == 0.0f && j0 >= flo && j0 + FA_BK <= fhi) {
#pragma unroll
			for (int nt = 0; nt < FA_BK / 8; nt++) {
				for (int e = 0; e < 4; e++) s[nt][e] *= sl2;
				mx0 = max_nan(mx0, max_nan(s[nt][0], s[nt][1]));
				mx1 = max_nan(mx1, max_nan(s[nt][2], s[nt][3]));
			}
		} else {
#pragma unroll
			for (int nt = 0; nt < FA_BK / 8; nt++)
				for (int e = 0; e < 4; e++) {
					int j = j0 + nt * 8 + 2 * tq + (e & 1);
					bool top = e < 2;
					bool ok = top ? (j >= lo0 && j < hi0) : (j >= lo1 && j < hi1);
					float sc = ok ? attn_score(s[nt][e], g, slope, j) * LOG2E : neg_inf();
					s[nt][e] = sc;
					if (top) mx0 = max_nan(mx0, sc);
					else mx1 = max_nan(mx1, sc);
				}
		}
		for (int mk = 1; mk < 4; mk <<= 1) {
			mx0 = max_nan(mx0, shfl_xor_f(mx0, mk));
			mx1 = max_nan(mx1, shfl_xor_f(mx1, mk));
		}
		float mn0 = max_nan(m0, mx0), mn1 = max_nan(m1, mx1);
		// A row that has seen no key yet keeps m = −Inf: nothing to rescale, every p is 0.
		float c0 = mn0 == neg_inf() ? 1.0f : ex2_approx(m0 - mn0), c1 = mn1 == neg_inf() ? 1.0f : ex2_approx(m1 - mn1);
		float base0 = mn0 == neg_inf() ? 0.0f : mn0, base1 = mn1 == neg_inf() ? 0.0f : mn1;
		l0 *= c0;
		l1 *= c1;
#pragma unroll
		for (int nt = 0; nt < FA_BK / 8; nt++) {
			s[nt][0] = ex2_approx(s[nt][0] - base0);
			s[nt][1] = ex2_approx(s[nt][1] - base0);
			s[nt][2] = ex2_approx(s[nt][2] - base1);
			s[nt][3] = ex2_approx(s[nt][3] - base1);
			l0 += s[nt][0] + s[nt][1];
			l1 += s[nt][2] + s[nt][3];
			if (g.dthr > 0.0f) // dropout on P for the V product (the normaliser keeps all)
				for (int e = 0; e < 4; e++)
					s[nt][e] *= attn_drop(g, b, h, e < 2 ? r0 : r1, j0 + nt * 8 + 2 * tq + (e & 1));
		}
#pragma unroll
		for (int dt = 0; dt < MAXD / 8; dt++) {
			o[dt][0] *= c0;
			o[dt][1] *= c0;
			o[dt][2] *= c1;
			o[dt][3] *= c1;
		}
		m0 = mn0;
		m1 = mn1;
#pragma unroll
		for (int kc = 0; kc < FA_BK / 16; kc++) {
			unsigned pa[4] = {pack_bf16(s[2 * kc][0], s[2 * kc][1]), pack_bf16(s[2 * kc][2], s[2 * kc][3]),
			                  pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]), pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])};
			if (PIPE) {
#pragma unroll
				for (int dp = 0; dp < MAXD / 16; dp++) {
					if (dp >= nkc) continue;
					unsigned r[4];
					ldmatrix_x4_trans(r, vt_ + (kc * 16 + (ldm & 1) * 8 + ldr) * LDK + (2 * dp + (ldm >> 1)) * 8);
					unsigned b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
					mma_bf16_16816(o[2 * dp], pa, b0);
					mma_bf16_16816(o[2 * dp + 1], pa, b1);
				}
			} else {
				const u16* vr = vt + gq * LDV + kc * 16 + 2 * tq;
#pragma unroll
				for (int dt = 0; dt < MAXD / 8; dt++) {
					if (dt >= ndt) continue;
					unsigned bb[2] = {ld_pair(vr + dt * 8 * LDV), ld_pair(vr + dt * 8 * LDV + 8)};
					mma_bf16_16816(o[dt], pa, bb);
				}
			}
		}
	}
	for (int mk = 1; mk < 4; mk <<= 1) {
		l0 += shfl_xor_f(l0, mk);
		l1 += shfl_xor_f(l1, mk);
	}
	float inv0 = l0 == 0.0f ? 0.0f : 1.0f / l0, inv1 = l1 == 0.0f ? 0.0f : 1.0f / l1;
	T* oh = out + bh * g.S * D;
#pragma unroll
	for (int dt = 0; dt < MAXD / 8; dt++) {
		if (dt >= ndt) continue;
		int c = dt * 8 + 2 * tq;
		if (r0 < g.S) {
			st(oh, (i64)r0 * D + c, o[dt][0] * inv0);
			st(oh, (i64)r0 * D + c + 1, o[dt][1] * inv0);
		}
		if (r1 < g.S) {
			st(oh, (i64)r1 * D + c, o[dt][2] * inv1);
			st(oh, (i64)r1 * D + c + 1, o[dt][3] * inv1);
		}
	}
	if (tq == 0) {
		if (r0 < g.S) lse[bh * g.S + r0] = l0 == 0.0f ? neg_inf() : (m0 + lg2_approx(l0)) * LN2;
		if (r1 < g.S) lse[bh * g.S + r1] = l1 == 0.0f ? neg_inf() : (m1 + lg2_approx(l1)) * LN2;
	}
}

// The backward in two kernels, each without atomics on its main output (FlashAttention-1's
// split: S and dP are computed in both, 7 products instead of 5, but dq needs no F32
// scratch and no atomic adds, which cost as much as the products on an H200 here).
//
// flash_bwd_kv, one block per FA_BK keys of one (b, h): warp w owns keys 16w..16w+15 (lane
// rows k0 = 16w + g, k1 = k0 + 8) and accumulates their dk and dv over every query that sees
// them, FB_BQ queries at a time, then adds them into the F32 dk32, dv32 [B, G, T, D]
// (zeroed first: the group's heads meet there). dsum[row] = Σ_d dout·out
// (gm_attn_bwd_dsum). V's fragments stay in registers for the whole block. For head dims up
// to 64 (TR) q and dout are also kept transposed, so the B fragments of dv and dk load as
// pairs; larger ones would not fit the 48 KB of static shared memory and read two halves.
template <int MAXD, bool PIPE, typename T>
GM_DEV void flash_bwd_kv(float* dk32, float* dv32, const T* dout, const T* q, const T* k, const T* v,
                      const float* lse, const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	const int LDK = MAXD + FA_PAD, LDT = FB_BQ + FA_PAD, QSZ = FB_BQ * (MAXD + FA_PAD);
	const bool TR = MAXD <= 64 && !PIPE;
	__shared__ __attribute__((aligned(16))) u16 ks[FA_BK * (MAXD + FA_PAD)];
	__shared__ __attribute__((aligned(16))) u16 qt[MAXD <= 64 && !PIPE ? MAXD * (FB_BQ + FA_PAD) : 2];
	__shared__ __attribute__((aligned(16))) u16 dot[MAXD <= 64 && !PIPE ? MAXD * (FB_BQ + FA_PAD) : 2];
	__shared__ __attribute__((aligned(16))) u16 qs[(PIPE ? 2 : 1) * FB_BQ * (MAXD + FA_PAD)];
	__shared__ __attribute__((aligned(16))) u16 dos[(PIPE ? 2 : 1) * FB_BQ * (MAXD + FA_PAD)];
	__shared__ float lsh[FB_BQ], dsh[FB_BQ];
	__shared__ int ksh[FB_BQ];
	__shared__ int live; // the last step with a query that sees a key of this block
	const int D = g.D, nkc = D / 16, ndt = D / 8;
	int nkb = (g.T + FA_BK - 1) / FA_BK;
	int kbi = (int)(ctaid_x() % (unsigned)nkb);
	i64 bh = ctaid_x() / (unsigned)nkb;
	int h = (int)(bh % g.H), b = (int)(bh / g.H), rep = g.H / g.G, grp = h / rep;
	i64 bg = (i64)b * g.G + grp;
	int lane = (int)lane_id(), w = (int)warp_id(), gq = lane >> 2, tq = lane & 3;
	int jb = kbi * FA_BK, kl0 = w * 16 + gq, kl1 = kl0 + 8; // local key rows
	int j0 = jb + kl0, j1 = jb + kl1;
	const T* kb = k + bg * g.T * D;
	const T* vb = v + bg * g.T * D;
	const T* qh = q + bh * g.S * D;
	const T* gh = dout + bh * g.S * D;
	bool vec = aligned32(k) && aligned32(q) && aligned32(dout);
	fa_tile(ks, LDK, kb, jb, FA_BK, g.T, D, vec);
	unsigned va[MAXD / 16][4]; // V's rows kl0, kl1 as the A operand of dPᵀ = V·doutᵀ
	fa_a_frags<MAXD>(va, vb, j0, j1, g.T, D, tq);
	int jlast = jb + FA_BK - 1 < g.T ? jb + FA_BK - 1 : g.T - 1, ilo, ihi, t0, t1;
	query_range(g, jb, &ilo, &t0);
	query_range(g, jlast, &t1, &ihi);
	if (tid_x() == 0) live = -1; // read after the loop's first barrier
	float slope = slopes ? slopes[h] : 0.0f, sl2 = g.scale * LOG2E;
	int step = 0;

	float adk[MAXD / 8][4], adv[MAXD / 8][4];
#pragma unroll
	for (int dt = 0; dt < MAXD / 8; dt++)
		for (int e = 0; e < 4; e++) adk[dt][e] = adv[dt][e] = 0.0f;

	i64 row0 = bh * g.S;
	// PIPE (BF16, 16-byte aligned q and dout): their tiles stream by cp.async into two
	// stages, and every fragment loads by ldmatrix (the transposed ones with .trans).
	int i0s = ilo - ilo % FB_BQ, ldr = lane & 7, ldm = lane >> 3;
	if (PIPE && i0s < ihi) fa_issue_pair(qs, dos, LDK, (const u16*)qh, (const u16*)gh, i0s, FB_BQ, g.S, D);
	for (int i0 = i0s; i0 < ihi; i0 += FB_BQ, step++) {
		sync_threads();
		const u16 *qs_ = qs, *dos_ = dos;
		if (PIPE) {
			int st = step & 1;
			fa_pipe_step(qs, dos, QSZ, st, LDK, (const u16*)qh, (const u16*)gh, i0 + FB_BQ, FB_BQ, ihi, g.S, D);
			qs_ = qs + st * QSZ, dos_ = dos + st * QSZ;
		} else {
			fa_tile(qs, LDK, qh, i0, FB_BQ, g.S, D, vec);
			fa_tile(dos, LDK, gh, i0, FB_BQ, g.S, D, vec);
			if (TR) {
				fa_tile_t(qt, LDT, qh, i0, FB_BQ, g.S, D, vec);
				fa_tile_t(dot, LDT, gh, i0, FB_BQ, g.S, D, vec);
			}
		}
		for (int e = (int)tid_x(); e < FB_BQ; e += (int)ntid_x()) {
			bool in = i0 + e < g.S;
			lsh[e] = in ? lse[row0 + i0 + e] : neg_inf();
			dsh[e] = in ? dsum[row0 + i0 + e] : 0.0f;
			ksh[e] = in ? key_start(keystart, g, b, i0 + e) : 0;
			if (in && lsh[e] != neg_inf() && ksh[e] <= jlast) live = step;
		}
		sync_threads();
		if (live != step) continue; // every P and dS of the tile is 0 (the next barrier orders the writes)
		// Sᵀ = K Qᵀ and dPᵀ = V doutᵀ for this warp's 16 keys × FB_BQ queries.
		float pt[FB_BQ / 8][4], dpt[FB_BQ / 8][4];
#pragma unroll
		for (int nt = 0; nt < FB_BQ / 8; nt++)
#pragma unroll
			for (int e = 0; e < 4; e++) pt[nt][e] = dpt[nt][e] = 0.0f;
		if (PIPE) {
#pragma unroll
			for (int kc = 0; kc < MAXD / 16; kc++) {
				if (kc >= nkc) continue;
				unsigned ka[4]; // K rows 16w.. as the A operand: matrices (rows +0/+8) × (cols +0/+8)
				ldmatrix_x4(ka, ks + (w * 16 + (ldm & 1) * 8 + ldr) * LDK + kc * 16 + (ldm >> 1) * 8);
#pragma unroll
				for (int np = 0; np < FB_BQ / 16; np++) {
					int off = ((2 * np + (ldm >> 1)) * 8 + ldr) * LDK + kc * 16 + (ldm & 1) * 8;
					unsigned rq[4], rg[4];
					ldmatrix_x4(rq, qs_ + off);
					ldmatrix_x4(rg, dos_ + off);
					unsigned q0[2] = {rq[0], rq[1]}, q1[2] = {rq[2], rq[3]}, g0[2] = {rg[0], rg[1]}, g1[2] = {rg[2], rg[3]};
					mma_bf16_16816(pt[2 * np], ka, q0);
					mma_bf16_16816(pt[2 * np + 1], ka, q1);
					mma_bf16_16816(dpt[2 * np], va[kc], g0);
					mma_bf16_16816(dpt[2 * np + 1], va[kc], g1);
				}
			}
		} else {
#pragma unroll
			for (int nt = 0; nt < FB_BQ / 8; nt++) {
				const u16* qr = qs + (nt * 8 + gq) * LDK + 2 * tq;
				const u16* gr = dos + (nt * 8 + gq) * LDK + 2 * tq;
#pragma unroll
				for (int kc = 0; kc < MAXD / 16; kc++) {
					if (kc >= nkc) continue;
					int c = kc * 16 + 2 * tq;
					unsigned ka[4] = {ld_pair(ks + kl0 * LDK + c), ld_pair(ks + kl1 * LDK + c), ld_pair(ks + kl0 * LDK + c + 8),
					                  ld_pair(ks + kl1 * LDK + c + 8)};
					unsigned qb2[2] = {ld_pair(qr + kc * 16), ld_pair(qr + kc * 16 + 8)};
					unsigned gb2[2] = {ld_pair(gr + kc * 16), ld_pair(gr + kc * 16 + 8)};
					mma_bf16_16816(pt[nt], ka, qb2);
					mma_bf16_16816(dpt[nt], va[kc], gb2);
				}
			}
		}
		// Every query of the tile sees every key of the block (no ALiBi, documents or empty
		// rows): P = 2^(s·scale·log2 e − lse·log2 e) without the per-element masking.
		int ilast = i0 + FB_BQ - 1, flo = 0, fhi = 0, u0, u1;
		bool full = slope == 0.0f && !keystart && ilast < g.S;
		if (full) {
			key_range(g, ilast, &flo, &u0);
			key_range(g, i0, &u1, &fhi);
			full = jb >= flo && jb + FA_BK <= fhi;
		}
		// Pᵀ and dSᵀ = Pᵀ ⊙ (dPᵀ − dsum); element e: key (e < 2 ? j0 : j1), query i0 + 8nt + 2t + e%2.
#pragma unroll
		for (int nt = 0; nt < FB_BQ / 8; nt++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int il = nt * 8 + 2 * tq + (e & 1), i = i0 + il, j = e < 2 ? j0 : j1;
				float p = 0.0f;
				if (full) p = ex2_approx(pt[nt][e] * sl2 - lsh[il] * LOG2E);
				else if (i < g.S && j < g.T && lsh[il] != neg_inf()) {
					int lo, hi;
					key_range(g, i, &lo, &hi);
					if (j >= max_i(lo, ksh[il]) && j < hi)
						p = ex2_approx((attn_score(pt[nt][e], g, slope, j) - lsh[il]) * LOG2E);
				}
				float kf = p == 0.0f ? 0.0f : attn_drop(g, b, h, i, j);
				pt[nt][e] = p * kf; // P̃ for dv
				dpt[nt][e] = p * (kf * dpt[nt][e] - dsh[il]);
			}
		// dv += Pᵀ dout, dk += dSᵀ q (scaled at the end): A from the C fragments above, 16
		// queries per k-chunk; B pairs along queries, read as two halves.
#pragma unroll
		for (int qc = 0; qc < FB_BQ / 16; qc++) {
			unsigned pa[4] = {pack_bf16(pt[2 * qc][0], pt[2 * qc][1]), pack_bf16(pt[2 * qc][2], pt[2 * qc][3]),
			                  pack_bf16(pt[2 * qc + 1][0], pt[2 * qc + 1][1]), pack_bf16(pt[2 * qc + 1][2], pt[2 * qc + 1][3])};
			unsigned da[4] = {pack_bf16(dpt[2 * qc][0], dpt[2 * qc][1]), pack_bf16(dpt[2 * qc][2], dpt[2 * qc][3]),
			                  pack_bf16(dpt[2 * qc + 1][0], dpt[2 * qc + 1][1]), pack_bf16(dpt[2 * qc + 1][2], dpt[2 * qc + 1][3])};
			if (PIPE) { // B pairs along queries: .trans of the row tiles
#pragma unroll
				for (int dp = 0; dp < MAXD / 16; dp++) {
					if (dp >= nkc) continue;
					int off = (qc * 16 + (ldm & 1) * 8 + ldr) * LDK + (2 * dp + (ldm >> 1)) * 8;
					unsigned rg[4], rq[4];
					ldmatrix_x4_trans(rg, dos_ + off);
					ldmatrix_x4_trans(rq, qs_ + off);
					unsigned g0[2] = {rg[0], rg[1]}, g1[2] = {rg[2], rg[3]}, q0[2] = {rq[0], rq[1]}, q1[2] = {rq[2], rq[3]};
					mma_bf16_16816(adv[2 * dp], pa, g0);
					mma_bf16_16816(adv[2 * dp + 1], pa, g1);
					mma_bf16_16816(adk[2 * dp], da, q0);
					mma_bf16_16816(adk[2 * dp + 1], da, q1);
				}
				continue;
			}
#pragma unroll
			for (int dt = 0; dt < MAXD / 8; dt++) {
				if (dt >= ndt) continue;
				unsigned gb2[2], qb2[2];
				if (TR) {
					const u16* gr = dot + (dt * 8 + gq) * LDT + qc * 16 + 2 * tq;
					const u16* qr = qt + (dt * 8 + gq) * LDT + qc * 16 + 2 * tq;
					gb2[0] = ld_pair(gr), gb2[1] = ld_pair(gr + 8), qb2[0] = ld_pair(qr), qb2[1] = ld_pair(qr + 8);
				} else {
					const u16* gr = dos + (qc * 16 + 2 * tq) * LDK + dt * 8 + gq;
					const u16* qr = qs + (qc * 16 + 2 * tq) * LDK + dt * 8 + gq;
					gb2[0] = pack_u16(gr[0], gr[LDK]), gb2[1] = pack_u16(gr[8 * LDK], gr[9 * LDK]);
					qb2[0] = pack_u16(qr[0], qr[LDK]), qb2[1] = pack_u16(qr[8 * LDK], qr[9 * LDK]);
				}
				mma_bf16_16816(adv[dt], pa, gb2);
				mma_bf16_16816(adk[dt], da, qb2);
			}
		}
	}
	float* dkb = dk32 + bg * g.T * D;
	float* dvb = dv32 + bg * g.T * D;
#pragma unroll
	for (int dt = 0; dt < MAXD / 8; dt++) {
		if (dt >= ndt) continue;
		int c = dt * 8 + 2 * tq;
		if (j0 < g.T) {
			atomic_add_f(dkb + (i64)j0 * D + c, g.scale * adk[dt][0]);
			atomic_add_f(dkb + (i64)j0 * D + c + 1, g.scale * adk[dt][1]);
			atomic_add_f(dvb + (i64)j0 * D + c, adv[dt][0]);
			atomic_add_f(dvb + (i64)j0 * D + c + 1, adv[dt][1]);
		}
		if (j1 < g.T) {
			atomic_add_f(dkb + (i64)j1 * D + c, g.scale * adk[dt][2]);
			atomic_add_f(dkb + (i64)j1 * D + c + 1, g.scale * adk[dt][3]);
			atomic_add_f(dvb + (i64)j1 * D + c, adv[dt][2]);
			atomic_add_f(dvb + (i64)j1 * D + c + 1, adv[dt][3]);
		}
	}
}

// flash_bwd_dq, one block per 16·NW queries of one (b, h) (the forward's layout): for each
// key tile, S = Q·Kᵀ and dP = dout·Vᵀ again, P = 2^(S·scale·log2 e − lse·log2 e),
// dS = P ⊙ (dP − dsum), and dq += Scale·dS·K, written once at the end. K and V stream
// through shared memory as rows (the B operands of Q·Kᵀ and dout·Vᵀ read pairs along d);
// for head dims up to 64 K also transposed (dS·K reads pairs along keys), else two halves.
template <int MAXD, int NW, bool PIPE, typename T>
GM_DEV void flash_bwd_dq(T* dq, const T* dout, const T* q, const T* k, const T* v, const float* lse, const float* dsum,
                         const float* slopes, AttnGeom g, const int* keystart) {
	const int LDK = MAXD + FA_PAD, LDS = FA_BK + FA_PAD, KSZ = FA_BK * (MAXD + FA_PAD);
	const bool TR = MAXD <= 64 && !PIPE;
	__shared__ __attribute__((aligned(16))) u16 ks[(PIPE ? 2 : 1) * FA_BK * (MAXD + FA_PAD)];
	__shared__ __attribute__((aligned(16))) u16 vs[(PIPE ? 2 : 1) * FA_BK * (MAXD + FA_PAD)];
	__shared__ __attribute__((aligned(16))) u16 kt[MAXD <= 64 && !PIPE ? MAXD * (FA_BK + FA_PAD) : 2];
	__shared__ int wlo[NW];
	const int BQ = NW * 16; // query rows per block
	const int D = g.D, nkc = D / 16, ndt = D / 8;
	int nqb = (g.S + BQ - 1) / BQ;
	int qb = (int)(ctaid_x() % (unsigned)nqb);
	i64 bh = ctaid_x() / (unsigned)nqb;
	int h = (int)(bh % g.H), b = (int)(bh / g.H), grp = h / (g.H / g.G);
	const T* kb = k + ((i64)b * g.G + grp) * g.T * D;
	const T* vb = v + ((i64)b * g.G + grp) * g.T * D;
	const T* qh = q + bh * g.S * D;
	const T* gh = dout + bh * g.S * D;
	bool vec = aligned32(k) && aligned32(v);
	float slope = slopes ? slopes[h] : 0.0f;
	int lane = (int)lane_id(), gq = lane >> 2, tq = lane & 3;
	int r0 = qb * BQ + (int)warp_id() * 16 + gq, r1 = r0 + 8;
	// Rows that see no key (lse −Inf, or masked to nothing) keep lo = hi = 0: P = 0.
	int lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0;
	float l20 = 0.0f, l21 = 0.0f, d0 = 0.0f, d1 = 0.0f; // lse·log2 e and dsum of r0, r1
	if (r0 < g.S && lse[bh * g.S + r0] != neg_inf()) {
		key_range(g, r0, &lo0, &hi0);
		lo0 = max_i(lo0, key_start(keystart, g, b, r0));
		l20 = lse[bh * g.S + r0] * LOG2E, d0 = dsum[bh * g.S + r0];
	}
	if (r1 < g.S && lse[bh * g.S + r1] != neg_inf()) {
		key_range(g, r1, &lo1, &hi1);
		lo1 = max_i(lo1, key_start(keystart, g, b, r1));
		l21 = lse[bh * g.S + r1] * LOG2E, d1 = dsum[bh * g.S + r1];
	}
	int jlo, jhi;
	fa_key_span(g, qb * BQ, BQ, keystart, lo0, hi0, lo1, hi1, wlo, &jlo, &jhi);
	int flo = max_i(lo0, lo1), fhi = min_i(hi0, hi1);
	float sl2 = g.scale * LOG2E;

	unsigned qa[MAXD / 16][4], ga[MAXD / 16][4]; // q and dout rows r0, r1 as A operands
	fa_a_frags<MAXD>(qa, qh, r0, r1, g.S, D, tq);
	fa_a_frags<MAXD>(ga, gh, r0, r1, g.S, D, tq);
	float acc[MAXD / 8][4];
#pragma unroll
	for (int dt = 0; dt < MAXD / 8; dt++) acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;

	// PIPE: as in flash_fwd, K and V rows in two cp.async stages and ldmatrix fragments (K's
	// transposed for dS·K), so no transposed tile is stored.
	int j0s = jlo - jlo % FA_BK, ldr = lane & 7, ldm = lane >> 3;
	if (PIPE && j0s < jhi) fa_issue_pair(ks, vs, LDK, (const u16*)kb, (const u16*)vb, j0s, FA_BK, g.T, D);
	for (int j0 = j0s, t = 0; j0 < jhi; j0 += FA_BK, t++) {
		sync_threads();
		const u16 *ks_ = ks, *vs_ = vs;
		if (PIPE) {
			int st = t & 1;
			fa_pipe_step(ks, vs, KSZ, st, LDK, (const u16*)kb, (const u16*)vb, j0 + FA_BK, FA_BK, jhi, g.T, D);
			ks_ = ks + st * KSZ, vs_ = vs + st * KSZ;
		} else {
			fa_tile(ks, LDK, kb, j0, FA_BK, g.T, D, vec);
			fa_tile(vs, LDK, vb, j0, FA_BK, g.T, D, vec);
			if (TR) fa_tile_t(kt, LDS, kb, j0, FA_BK, g.T, D, vec);
		}
		sync_threads();
		float s[FA_BK / 8][4], dp[FA_BK / 8][4];
#pragma unroll
		for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
			for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.0f;
		if (PIPE) {
#pragma unroll
			for (int np = 0; np < FA_BK / 16; np++)
#pragma unroll
				for (int kc = 0; kc < MAXD / 16; kc++) {
					if (kc >= nkc) continue;
					int off = ((2 * np + (ldm >> 1)) * 8 + ldr) * LDK + kc * 16 + (ldm & 1) * 8;
					unsigned rk[4], rv[4];
					ldmatrix_x4(rk, ks_ + off);
					ldmatrix_x4(rv, vs_ + off);
					unsigned k0[2] = {rk[0], rk[1]}, k1[2] = {rk[2], rk[3]}, v0[2] = {rv[0], rv[1]}, v1[2] = {rv[2], rv[3]};
					mma_bf16_16816(s[2 * np], qa[kc], k0);
					mma_bf16_16816(s[2 * np + 1], qa[kc], k1);
					mma_bf16_16816(dp[2 * np], ga[kc], v0);
					mma_bf16_16816(dp[2 * np + 1], ga[kc], v1);
				}
		} else {
#pragma unroll
			for (int nt = 0; nt < FA_BK / 8; nt++) {
				const u16* kr = ks + (nt * 8 + gq) * LDK + 2 * tq;
				const u16* vr = vs + (nt * 8 + gq) * LDK + 2 * tq;
#pragma unroll
				for (int kc = 0; kc < MAXD / 16; kc++) {
					if (kc >= nkc) continue;
					unsigned kb2[2] = {ld_pair(kr + kc * 16), ld_pair(kr + kc * 16 + 8)};
					unsigned vb2[2] = {ld_pair(vr + kc * 16), ld_pair(vr + kc * 16 + 8)};
					mma_bf16_16816(s[nt], qa[kc], kb2);
					mma_bf16_16816(dp[nt], ga[kc], vb2);
				}
			}
		}
		bool full = slope == 0.0f && j0 >= flo && j0 + FA_BK <= fhi;
#pragma unroll
		for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int j = j0 + nt * 8 + 2 * tq + (e & 1);
				bool top = e < 2;
				float l2 = top ? l20 : l21, p = 0.0f;
				if (full) p = ex2_approx(s[nt][e] * sl2 - l2);
				else if (top ? (j >= lo0 && j < hi0) : (j >= lo1 && j < hi1))
					p = ex2_approx(attn_score(s[nt][e], g, slope, j) * LOG2E - l2);
				float kf = p == 0.0f ? 0.0f : attn_drop(g, b, h, top ? r0 : r1, j);
				s[nt][e] = p * (kf * dp[nt][e] - (top ? d0 : d1)); // dS
			}
#pragma unroll
		for (int kc = 0; kc < FA_BK / 16; kc++) {
			unsigned sa[4] = {pack_bf16(s[2 * kc][0], s[2 * kc][1]), pack_bf16(s[2 * kc][2], s[2 * kc][3]),
			                  pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]), pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])};
			if (PIPE) {
#pragma unroll
				for (int dp2 = 0; dp2 < MAXD / 16; dp2++) {
					if (dp2 >= nkc) continue;
					unsigned r[4];
					ldmatrix_x4_trans(r, ks_ + (kc * 16 + (ldm & 1) * 8 + ldr) * LDK + (2 * dp2 + (ldm >> 1)) * 8);
					unsigned b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
					mma_bf16_16816(acc[2 * dp2], sa, b0);
					mma_bf16_16816(acc[2 * dp2 + 1], sa, b1);
				}
				continue;
			}
#pragma unroll
			for (int dt = 0; dt < MAXD / 8; dt++) {
				if (dt >= ndt) continue;
				unsigned kb2[2];
				if (TR) {
					const u16* kr = kt + (dt * 8 + gq) * LDS + kc * 16 + 2 * tq;
					kb2[0] = ld_pair(kr), kb2[1] = ld_pair(kr + 8);
				} else {
					const u16* kr = ks + (kc * 16 + 2 * tq) * LDK + dt * 8 + gq;
					kb2[0] = pack_u16(kr[0], kr[LDK]), kb2[1] = pack_u16(kr[8 * LDK], kr[9 * LDK]);
				}
				mma_bf16_16816(acc[dt], sa, kb2);
			}
		}
	}
	T* dh = dq + bh * g.S * D;
#pragma unroll
	for (int dt = 0; dt < MAXD / 8; dt++) {
		if (dt >= ndt) continue;
		int c = dt * 8 + 2 * tq;
		if (r0 < g.S) {
			st(dh, (i64)r0 * D + c, g.scale * acc[dt][0]);
			st(dh, (i64)r0 * D + c + 1, g.scale * acc[dt][1]);
		}
		if (r1 < g.S) {
			st(dh, (i64)r1 * D + c, g.scale * acc[dt][2]);
			st(dh, (i64)r1 * D + c + 1, g.scale * acc[dt][3]);
		}
	}
}

// The kernels, per largest head dim and activation dtype (KernelIndex finds kernels by their
// written names, so no macro): the generic ones take head dims up to FA_MAXD; the _d64 ones,
// up to 64, size their accumulators for that and carry launch bounds that cap registers
// (a few spill) for more resident blocks, 4 per multiprocessor forward and 3 backward
// (13% faster forward, 26% backward on an H200, 2026-11-27); the _d64w ones take 128 query
// rows per block (8 warps) for the comparison in BenchmarkOps (Backend.flashWide). The
// backward is _dq (writes dq, T) and _kv (adds dk and dv into F32, see flash_bwd_kv).
GM_KERNEL gm_flash_fwd_f32(float* out, float* lse, const float* q, const float* k, const float* v, const float* slopes, AttnGeom g,
	const int* keystart) {
	flash_fwd<FA_MAXD, 4, false>(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL gm_flash_bwd_dq_f32(float* dq, const float* dout, const float* q, const float* k, const float* v, const float* lse,
	const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_dq<FA_MAXD, 4, false>(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL gm_flash_bwd_kv_f32(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
	const float* lse, const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_kv<FA_MAXD, false>(dk, dv, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL gm_flash_fwd_bf16(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const float* slopes, AttnGeom g,
	const int* keystart) {
	flash_fwd<FA_MAXD, 4, false>(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL gm_flash_bwd_dq_bf16(u16* dq, const u16* dout, const u16* q, const u16* k, const u16* v, const float* lse,
	const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_dq<FA_MAXD, 4, false>(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL gm_flash_bwd_kv_bf16(float* dk, float* dv, const u16* dout, const u16* q, const u16* k, const u16* v,
	const float* lse, const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_kv<FA_MAXD, false>(dk, dv, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_fwd_d64_f32, 128, 4)(float* out, float* lse, const float* q, const float* k, const float* v, const float* slopes, AttnGeom g,
	const int* keystart) {
	flash_fwd<64, 4, false>(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_dq_d64_f32, 128, 3)(float* dq, const float* dout, const float* q, const float* k, const float* v, const float* lse,
	const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_dq<64, 4, false>(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_kv_d64_f32, 128, 3)(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
	const float* lse, const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_kv<64, false>(dk, dv, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_fwd_d64_bf16, 128, 4)(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const float* slopes, AttnGeom g,
	const int* keystart) {
	flash_fwd<64, 4, false>(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_dq_d64_bf16, 128, 3)(u16* dq, const u16* dout, const u16* q, const u16* k, const u16* v, const float* lse,
	const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_dq<64, 4, false>(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_kv_d64_bf16, 128, 3)(float* dk, float* dv, const u16* dout, const u16* q, const u16* k, const u16* v,
	const float* lse, const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_kv<64, false>(dk, dv, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_fwd_d64w_f32, 256, 2)(float* out, float* lse, const float* q, const float* k, const float* v, const float* slopes, AttnGeom g,
	const int* keystart) {
	flash_fwd<64, 8, false>(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_dq_d64w_f32, 256, 1)(float* dq, const float* dout, const float* q, const float* k, const float* v, const float* lse,
	const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_dq<64, 8, false>(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_fwd_d64w_bf16, 256, 2)(u16* out, float* lse, const u16* q, const u16* k, const u16* v, const float* slopes, AttnGeom g,
	const int* keystart) {
	flash_fwd<64, 8, false>(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_dq_d64w_bf16, 256, 1)(u16* dq, const u16* dout, const u16* q, const u16* k, const u16* v, const float* lse,
	const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_dq<64, 8, false>(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
// The _d64p kernels (BF16 only, 16-byte aligned operands): cp.async double buffering and
// ldmatrix fragments (PIPE), for the comparison in BenchmarkOps (Backend.flashPipe).
GM_KERNEL_B(gm_flash_fwd_d64p_bf16, 128, 4)(u16* out, float* lse, const u16* q, const u16* k, const u16* v,
	const float* slopes, AttnGeom g, const int* keystart) {
	flash_fwd<64, 4, true>(out, lse, q, k, v, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_dq_d64p_bf16, 128, 3)(u16* dq, const u16* dout, const u16* q, const u16* k, const u16* v,
	const float* lse, const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_dq<64, 4, true>(dq, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
GM_KERNEL_B(gm_flash_bwd_kv_d64p_bf16, 128, 3)(float* dk, float* dv, const u16* dout, const u16* q, const u16* k,
	const u16* v, const float* lse, const float* dsum, const float* slopes, AttnGeom g, const int* keystart) {
	flash_bwd_kv<64, true>(dk, dv, dout, q, k, v, lse, dsum, slopes, g, keystart);
}
