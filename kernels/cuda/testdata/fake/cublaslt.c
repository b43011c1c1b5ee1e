// A fake libcublasLt.so.13 that really multiplies F32 matrices on the host (column-major,
// as cuBLAS), from the descriptors the binding builds: it checks the binding's layouts,
// transposes, batches and leading dimensions end to end.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int type; uint64_t rows, cols; int64_t ld; int batch; int64_t stride; } layout;
typedef struct { int compute, scale, ta, tb; } desc;

unsigned long cublasLtGetVersion(void) { return 130100; }
int cublasLtCreate(void** h) { *h = (void*)0x77; return 0; }
int cublasLtDestroy(void* h) { return 0; }
int cublasLtMatmulDescCreate(desc** d, int compute, int scale) { *d = calloc(1, sizeof(desc)); (*d)->compute = compute; (*d)->scale = scale; return 0; }
int cublasLtMatmulDescDestroy(desc* d) { free(d); return 0; }
int cublasLtMatmulDescSetAttribute(desc* d, int attr, const void* v, size_t n) {
	if (attr == 3 && n == 4) d->ta = *(const int*)v;
	else if (attr == 4 && n == 4) d->tb = *(const int*)v;
	else if (attr < 17 || attr > 25) return 7;
	return 0;
}
int cublasLtMatrixLayoutCreate(layout** l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
	if (ld < (int64_t)rows) return 7; // cuBLAS: ld ≥ rows for column-major
	*l = calloc(1, sizeof(layout));
	(*l)->type = type; (*l)->rows = rows; (*l)->cols = cols; (*l)->ld = ld; (*l)->batch = 1;
	return 0;
}
int cublasLtMatrixLayoutDestroy(layout* l) { free(l); return 0; }
int cublasLtMatrixLayoutSetAttribute(layout* l, int attr, const void* v, size_t n) {
	if (attr == 5 && n == 4) l->batch = *(const int*)v;
	else if (attr == 6 && n == 8) l->stride = *(const int64_t*)v;
	else return 7;
	return 0;
}
int cublasLtMatmulPreferenceCreate(void** p) { *p = malloc(8); return 0; }
int cublasLtMatmulPreferenceDestroy(void* p) { free(p); return 0; }
int cublasLtMatmulPreferenceSetAttribute(void* p, int attr, const void* v, size_t n) { return attr == 1 && n == 8 ? 0 : 7; }
int cublasLtMatmulAlgoGetHeuristic(void* h, desc* d, layout* a, layout* b, layout* c, layout* dd, void* pref, int req, unsigned char* res, int* nret) {
	if (req < 1) return 7;
	memset(res, 0, 96);
	res[0] = 42; // the algo, checked in cublasLtMatmul
	*nret = 1;
	return 0;
}
int cublasLtMatmul(void* h, desc* d, const float* alpha, const float* A, layout* la, const float* B, layout* lb,
                   const float* beta, const float* C, layout* lc, float* D, layout* ld, const unsigned char* algo,
                   void* ws, size_t wsSize, void* stream) {
	if (algo[0] != 42 || la->type != 0 || lb->type != 0 || lc->type != 0 || ld->type != 0) return 15;
	uint64_t m = lc->rows, n = lc->cols, k = d->ta ? la->rows : la->cols;
	for (int bi = 0; bi < lc->batch; bi++) {
		const float* a = A + bi * la->stride;
		const float* b = B + bi * lb->stride;
		const float* c = C + bi * lc->stride;
		float* o = D + bi * ld->stride;
		for (uint64_t i = 0; i < m; i++)
			for (uint64_t j = 0; j < n; j++) {
				double s = 0;
				for (uint64_t p = 0; p < k; p++) {
					float av = d->ta ? a[i * la->ld + p] : a[p * la->ld + i];
					float bv = d->tb ? b[p * lb->ld + j] : b[j * lb->ld + p];
					s += (double)av * bv;
				}
				o[j * ld->ld + i] = (float)(*alpha * s + (double)*beta * c[j * lc->ld + i]);
			}
	}
	return 0;
}
