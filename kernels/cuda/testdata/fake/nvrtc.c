// A fake libnvrtc.so.13: "compiles" a source into "FAKECUBIN:" + source after checking that
// the common header was passed, counts compilations and keeps the last options.
#include <stdlib.h>
#include <string.h>

typedef struct { char* src; int has_header; char* out; } prog;
static int compiles;
static char last_opts[512];

int nvrtcVersion(int* a, int* b) { *a = 13; *b = 0; return 0; }
const char* nvrtcGetErrorString(int c) { return c == 6 ? "NVRTC_ERROR_COMPILATION" : "NVRTC_ERROR_OTHER"; }
int nvrtcCreateProgram(prog** p, const char* src, const char* name, int nh, const char** hs, const char** names) {
	prog* q = calloc(1, sizeof *q);
	q->src = strdup(src);
	for (int i = 0; i < nh; i++)
		if (!strcmp(names[i], "common.cuh") && strstr(hs[i], "GM_KERNEL")) q->has_header = 1;
	*p = q;
	return 0;
}
int nvrtcCompileProgram(prog* p, int n, const char** opts) {
	last_opts[0] = 0;
	for (int i = 0; i < n; i++) { strncat(last_opts, opts[i], sizeof last_opts - strlen(last_opts) - 2); strcat(last_opts, " "); }
	if (!p->has_header || strstr(p->src, "#error")) return 6;
	compiles++;
	p->out = malloc(strlen(p->src) + 11);
	strcpy(p->out, "FAKECUBIN:");
	strcat(p->out, p->src);
	return 0;
}
int nvrtcGetProgramLogSize(prog* p, size_t* n) { *n = p->out ? 1 : 20; return 0; }
int nvrtcGetProgramLog(prog* p, char* log) { strcpy(log, p->out ? "" : "error: no header"); return 0; }
int nvrtcGetCUBINSize(prog* p, size_t* n) { *n = strlen(p->out) + 1; return 0; }
int nvrtcGetCUBIN(prog* p, char* out) { strcpy(out, p->out); return 0; }
int nvrtcDestroyProgram(prog** p) { free((*p)->src); free((*p)->out); free(*p); *p = 0; return 0; }
int fake_compiles(void) { return compiles; }
const char* fake_opts(void) { return last_opts; }
