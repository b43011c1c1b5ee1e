// embedding.cu: the vocab-parallel lookup and its gradient (I64 or I32 ids; out and dout
// F32 or BF16: T is float or u16, through ld/st; an F32 or BF16 table, an F32 dtable).
#include "common.cuh"

GM_DEV i64 load_id(const void* ids, int is64, i64 n) {
	return is64 ? ((const i64*)ids)[n] : (i64)((const int*)ids)[n];
}

// out[n, :] = table[ids[n] − start, :] for an in-shard id, else 0. The table (W) is F32 or
// BF16 (16-bit model weights): the _tbf16 kernels.
template <typename T, typename W>
GM_DEV void embedding(T* out, const W* table, const void* ids, int is64, i64 N, int H, i64 start, i64 V) {
	i64 total = N * H;
	for (i64 i = gstart(); i < total; i += gstride()) {
		i64 n = i / H;
		int c = (int)(i % H);
		i64 r = load_id(ids, is64, n) - start;
		st(out, i, (r >= 0 && r < V) ? ld(table, r * H + c) : 0.0f);
	}
}
GM_KERNEL gm_embedding_f32(float* out, const float* table, const void* ids, int is64, i64 N, int H, i64 start, i64 V) {
	embedding(out, table, ids, is64, N, H, start, V);
}
GM_KERNEL gm_embedding_bf16(u16* out, const float* table, const void* ids, int is64, i64 N, int H, i64 start, i64 V) {
	embedding(out, table, ids, is64, N, H, start, V);
}
GM_KERNEL gm_embedding_f32_tbf16(float* out, const u16* table, const void* ids, int is64, i64 N, int H, i64 start,
                                 i64 V) {
	embedding(out, table, ids, is64, N, H, start, V);
}
GM_KERNEL gm_embedding_bf16_tbf16(u16* out, const u16* table, const void* ids, int is64, i64 N, int H, i64 start,
                                  i64 V) {
	embedding(out, table, ids, is64, N, H, start, V);
}

// dtable[ids[n] − start, :] += dout[n, :] with float atomics (the summation order of
// repeated ids varies, so results match the CPU within rounding, not bitwise).
template <typename T>
GM_DEV void embedding_bwd(float* dtable, const T* dout, const void* ids, int is64, i64 N, int H, i64 start, i64 V) {
	i64 total = N * H;
	for (i64 i = gstart(); i < total; i += gstride()) {
		i64 n = i / H;
		int c = (int)(i % H);
		i64 r = load_id(ids, is64, n) - start;
		if (r >= 0 && r < V) atomic_add_f(dtable + r * H + c, ld(dout, i));
	}
}
GM_KERNEL gm_embedding_bwd_f32(float* dtable, const float* dout, const void* ids, int is64, i64 N, int H, i64 start,
                               i64 V) {
	embedding_bwd(dtable, dout, ids, is64, N, H, start, V);
}
GM_KERNEL gm_embedding_bwd_bf16(float* dtable, const u16* dout, const void* ids, int is64, i64 N, int H, i64 start,
                                i64 V) {
	embedding_bwd(dtable, dout, ids, is64, N, H, start, V);
}
