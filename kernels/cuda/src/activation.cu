// activation.cu: SwiGLU, GeLU and squared ReLU forward and backward (activations F32 or BF16: T is float
// or u16, through ld/st).
#include "common.cuh"

// x [N, 2F] = [gate | up]; out [N, F] = silu(gate)⊙up.
template <typename T> GM_DEV void swiglu(T* out, const T* x, i64 N, int F) {
	i64 n = N * F;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 r = i / F, j = i % F;
		float g = ld(x, 2 * r * F + j), u = ld(x, (2 * r + 1) * F + j);
		st(out, i, g * sigmoid_f(g) * u);
	}
}
GM_KERNEL gm_swiglu_f32(float* out, const float* x, i64 N, int F) { swiglu(out, x, N, F); }
GM_KERNEL gm_swiglu_bf16(u16* out, const u16* x, i64 N, int F) { swiglu(out, x, N, F); }

// dgate = dout⊙up⊙σ(g)(1 + g(1−σ(g))), dup = dout⊙silu(g).
template <typename T> GM_DEV void swiglu_bwd(T* dx, const T* dout, const T* x, i64 N, int F) {
	i64 n = N * F;
	for (i64 i = gstart(); i < n; i += gstride()) {
		i64 r = i / F, j = i % F;
		float z = ld(x, 2 * r * F + j), u = ld(x, (2 * r + 1) * F + j), g = ld(dout, i);
		float s = sigmoid_f(z);
		st(dx, 2 * r * F + j, g * u * s * (1.0f + z * (1.0f - s)));
		st(dx, (2 * r + 1) * F + j, g * z * s);
	}
}
GM_KERNEL gm_swiglu_bwd_f32(float* dx, const float* dout, const float* x, i64 N, int F) { swiglu_bwd(dx, dout, x, N, F); }
GM_KERNEL gm_swiglu_bwd_bf16(u16* dx, const u16* dout, const u16* x, i64 N, int F) { swiglu_bwd(dx, dout, x, N, F); }

#define SQRT2_OVER_PI 0.7978845608028654f

// exact: 0.5x(1+erf(x/√2)); tanh: 0.5x(1+tanh(√(2/π)(x+0.044715x³))).
template <typename T> GM_DEV void gelu(T* out, const T* x, i64 n, int use_tanh) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float z = ld(x, i);
		float t = use_tanh ? tanh_f(SQRT2_OVER_PI * (z + 0.044715f * z * z * z)) : erf_f(z * 0.70710678118654752f);
		st(out, i, 0.5f * z * (1.0f + t));
	}
}
GM_KERNEL gm_gelu_f32(float* out, const float* x, i64 n, int use_tanh) { gelu(out, x, n, use_tanh); }
GM_KERNEL gm_gelu_bf16(u16* out, const u16* x, i64 n, int use_tanh) { gelu(out, x, n, use_tanh); }

template <typename T> GM_DEV void gelu_bwd(T* dx, const T* dout, const T* x, i64 n, int use_tanh) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float z = ld(x, i);
		float d;
		if (use_tanh) {
			float t = tanh_f(SQRT2_OVER_PI * (z + 0.044715f * z * z * z));
			d = 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * SQRT2_OVER_PI * (1.0f + 3.0f * 0.044715f * z * z);
		} else {
			d = 0.5f * (1.0f + erf_f(z * 0.70710678118654752f)) + z * exp_f(-0.5f * z * z) * 0.3989422804014327f;
		}
		st(dx, i, ld(dout, i) * d);
	}
}
GM_KERNEL gm_gelu_bwd_f32(float* dx, const float* dout, const float* x, i64 n, int use_tanh) {
	gelu_bwd(dx, dout, x, n, use_tanh);
}
GM_KERNEL gm_gelu_bwd_bf16(u16* dx, const u16* dout, const u16* x, i64 n, int use_tanh) {
	gelu_bwd(dx, dout, x, n, use_tanh);
}

// Squared ReLU (Megatron's --squared-relu): out = max(x, 0)², dx = dout·2·max(x, 0).
template <typename T> GM_DEV void relu2(T* out, const T* x, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float z = ld(x, i), r = z > 0.0f ? z : 0.0f;
		st(out, i, r * r);
	}
}
GM_KERNEL gm_relu2_f32(float* out, const float* x, i64 n) { relu2(out, x, n); }
GM_KERNEL gm_relu2_bf16(u16* out, const u16* x, i64 n) { relu2(out, x, n); }

template <typename T> GM_DEV void relu2_bwd(T* dx, const T* dout, const T* x, i64 n) {
	for (i64 i = gstart(); i < n; i += gstride()) {
		float z = ld(x, i);
		st(dx, i, ld(dout, i) * (z > 0.0f ? 2.0f * z : 0.0f));
	}
}
GM_KERNEL gm_relu2_bwd_f32(float* dx, const float* dout, const float* x, i64 n) { relu2_bwd(dx, dout, x, n); }
GM_KERNEL gm_relu2_bwd_bf16(u16* dx, const u16* dout, const u16* x, i64 n) { relu2_bwd(dx, dout, x, n); }
