// A fake libcuda.so.1 whose "device memory" is host memory, for testing the Go runtime
// (device thread, arena, pinned staging, module loading, kernel argument packing) without a
// GPU. A few kernels are implemented on the host with the exact signatures of
// kernels/cuda/src, reading their arguments through cuLaunchKernel's void** the way the
// driver does; test getters expose what was seen.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

typedef unsigned long long dptr;

static int launches;
static char last_kernel[128];
static unsigned last_grid, last_block;
static unsigned char attn_geom[80]; // the AttnGeom struct of src/attention.cu
static float attn_slopes[4];

int cuInit(unsigned f) { return 0; }
int cuDriverGetVersion(int* v) { *v = 13000; return 0; }
int cuGetErrorName(int c, const char** s) { *s = c == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : c == 500 ? "CUDA_ERROR_NOT_FOUND" : c == 600 ? "CUDA_ERROR_NOT_READY" : "CUDA_ERROR_UNKNOWN"; return 0; }
int cuGetErrorString(int c, const char** s) { *s = c == 2 ? "out of memory" : "fake error"; return 0; }
// GM_FAKE_DEVICES devices (default 1), so several launcher ranks can each own one.
int cuDeviceGetCount(int* n) { const char* e = getenv("GM_FAKE_DEVICES"); *n = e ? atoi(e) : 1; return 0; }
int cuDeviceGet(int* d, int i) { *d = i; return 0; }
int cuDeviceGetName(char* n, int len, int d) { strncpy(n, "Fake GPU", len); return 0; }
int cuDeviceGetAttribute(int* v, int a, int d) { *v = a == 75 ? 9 : a == 76 ? 0 : a == 16 ? 132 : 0; return 0; }
int cuDeviceTotalMem_v2(size_t* b, int d) { *b = 2ull << 30; return 0; }
int cuDevicePrimaryCtxRetain(void** c, int d) { *c = (void*)0x1234; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { return 0; }
int cuCtxSetCurrent(void* c) { return c == (void*)0x1234 ? 0 : 201; }
int cuCtxSynchronize(void) { return 0; }
int cuMemGetInfo_v2(size_t* f, size_t* t) { *f = 1ull << 30; *t = 2ull << 30; return 0; }
int cuMemAlloc_v2(dptr* p, size_t n) {
	if (n > (1ull << 30)) return 2;
	void* m = aligned_alloc(256, (n + 255) / 256 * 256);
	memset(m, 0xAB, n); // garbage, so missing zeroing shows
	*p = (dptr)m;
	return 0;
}
int cuMemFree_v2(dptr p) { free((void*)p); return 0; }
int cuMemAllocHost_v2(void** p, size_t n) { *p = malloc(n); return 0; }
int cuMemFreeHost(void* p) { free(p); return 0; }
int cuMemcpyHtoDAsync_v2(dptr d, const void* s, size_t n, void* st) { memcpy((void*)d, s, n); return 0; }
int cuMemcpyDtoHAsync_v2(void* d, dptr s, size_t n, void* st) { memcpy(d, (void*)s, n); return 0; }
int cuMemcpyDtoDAsync_v2(dptr d, dptr s, size_t n, void* st) { memmove((void*)d, (void*)s, n); return 0; }
int cuMemsetD8Async(dptr d, unsigned char v, size_t n, void* st) { memset((void*)d, v, n); return 0; }
int cuMemsetD32Async(dptr d, unsigned v, size_t n, void* st) { for (size_t i = 0; i < n; i++) ((unsigned*)d)[i] = v; return 0; }
int cuStreamCreate(void** s, unsigned f) { *s = (void*)0x5678; return f == 1 ? 0 : 1; }
int cuStreamDestroy_v2(void* s) { return 0; }
int cuStreamSynchronize(void* s) { return 0; }
int cuStreamWaitEvent(void* s, void* e, unsigned f) { return 0; }
int cuEventCreate(void** e, unsigned f) { *e = malloc(8); return 0; }
int cuEventRecord(void* e, void* s) { return s == (void*)0x5678 ? 0 : 400; }
int cuEventSynchronize(void* e) { return 0; }
static int event_not_ready;
int cuEventQuery(void* e) { return event_not_ready ? 600 : 0; }
void fake_set_event_not_ready(int v) { event_not_ready = v; }
int cuEventElapsedTime(float* ms, void* a, void* b) { *ms = 1.5f; return 0; }
int cuEventDestroy_v2(void* e) { free(e); return 0; }

// Modules: the fake NVRTC's "CUBIN" is "FAKECUBIN:" followed by the source.
int cuModuleLoadData(void** m, const void* image) {
	if (strncmp((const char*)image, "FAKECUBIN:", 10) != 0) return 200;
	*m = strdup((const char*)image);
	return 0;
}
int cuModuleUnload(void* m) { free(m); return 0; }
int cuModuleGetFunction(void** f, void* m, const char* name) {
	char pat[160];
	snprintf(pat, sizeof pat, "GM_KERNEL %s(", name);
	char patb[160]; // GM_KERNEL_B(name, threads, blocks)(...)
	snprintf(patb, sizeof patb, "GM_KERNEL_B(%s,", name);
	if (!strstr((const char*)m, pat) && !strstr((const char*)m, patb)) return 500;
	*f = strdup(name);
	return 0;
}
int cuFuncSetAttribute(void* f, int a, int v) { return 0; }

#define ARG(i, T) (*(T*)params[i])
int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned smem, void* stream, void** params, void** extra) {
	const char* k = (const char*)f;
	launches++;
	strncpy(last_kernel, k, sizeof last_kernel - 1);
	last_grid = gx;
	last_block = bx;
	if (stream != (void*)0x5678 || gy != 1 || gz != 1 || by != 1 || bz != 1) return 1;
	if (!strcmp(k, "gm_fill_f32")) {
		float* x = ARG(0, float*); float v = ARG(1, float); long long n = ARG(2, long long);
		for (long long i = 0; i < n; i++) x[i] = v;
	} else if (!strcmp(k, "gm_axpy_f32")) {
		float* y = ARG(0, float*); float a = ARG(1, float); const float* x = ARG(2, const float*); long long n = ARG(3, long long);
		for (long long i = 0; i < n; i++) y[i] += a * x[i];
	} else if (!strcmp(k, "gm_cast_amax_f32")) {
		float* d = ARG(0, float*); const float* s = ARG(1, const float*); float sc = ARG(2, float);
		int kind = ARG(3, int); unsigned* am = ARG(4, unsigned*); long long n = ARG(5, long long);
		if (kind != 4) return 1;
		for (long long i = 0; i < n; i++) {
			unsigned b; memcpy(&b, &s[i], 4); b &= 0x7fffffffu;
			if (b > *am) *am = b;
			d[i] = s[i] * sc;
		}
	} else if (!strcmp(k, "gm_attn_fwd_f32")) {
		const float* sl = ARG(5, const float*);
		if (sl) memcpy(attn_slopes, sl, sizeof attn_slopes);
		memcpy(attn_geom, params[6], sizeof attn_geom);
	}
	return 0;
}
int cuLaunchKernelEx(void) { return 0; }
int cuTensorMapEncodeTiled(void) { return 0; }
int cuGetProcAddress_v2(void) { return 0; }

int fake_launches(void) { return launches; }
const char* fake_last_kernel(void) { return last_kernel; }
unsigned fake_last_grid(void) { return last_grid; }
unsigned fake_last_block(void) { return last_block; }
void* fake_attn_geom(void) { return attn_geom; }
void* fake_attn_slopes(void) { return attn_slopes; }
