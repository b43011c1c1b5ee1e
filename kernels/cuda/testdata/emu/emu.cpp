// emu.cpp: a fake libcuda.so.1 that RUNS the kernels of kernels/cuda/src on the CPU. It is
// the fake driver of ../fake/cuda.c (host memory as device memory, NVRTC's "CUBIN" is the
// source) with cuLaunchKernel replaced: every CUDA thread of a block becomes a fiber
// (ucontext) on the calling OS thread; sync_threads and warp shuffles switch fibers until
// every thread of the block (or warp) has arrived. Blocks run one after another, so
// __shared__ arrays are plain statics. Built by the Go test with -DGM_HOST_EMU and a
// generated kernels.inc that includes every .cu and lists the kernels (GM_REG lines).
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <ucontext.h>

#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline

extern "C" {
#define cuLaunchKernel fake_host_cuLaunchKernel
#include "../fake/cuda.c"
#undef cuLaunchKernel
}

#include "kernels.inc" // #include "<each>.cu"

namespace {

const int kMaxThreads = 1024;
const size_t kStack = 256 << 10;

// Fibers are created once (makecontext) and then switched with _setjmp/_longjmp, which,
// unlike swapcontext, makes no system call to save the signal mask.
struct Fiber {
	ucontext_t ctx;
	jmp_buf jb;
	char* stack;
	bool done;
	bool waiting;
};

Fiber fibers[kMaxThreads];
ucontext_t sched;
jmp_buf sched_jb;
int cur, nthreads;
unsigned ctaid, nctaid;
void (*entry)(void**);
void** params;

unsigned bar_count, bar_gen;
unsigned warp_count[kMaxThreads / 32], warp_gen[kMaxThreads / 32];
unsigned slots[kMaxThreads];
int deadlock;
unsigned long events; // barrier arrivals and finished threads: progress

void yield_fiber() {
	Fiber& f = fibers[cur];
	f.waiting = true;
	if (!_setjmp(f.jb)) _longjmp(sched_jb, 1);
	f.waiting = false;
}

// run_fiber is a fiber's whole life: park once (back to the creator), then run the kernel
// for each block it is resumed for, parking when done.
void run_fiber(int i) {
	if (!_setjmp(fibers[i].jb)) swapcontext(&fibers[i].ctx, &sched);
	for (;;) {
		entry(params);
		events++;
		fibers[cur].done = true;
		yield_fiber();
	}
}

void resume(int i) {
	cur = i;
	if (!_setjmp(sched_jb)) _longjmp(fibers[i].jb, 1);
}

template <typename... A, size_t... I>
void invoke_i(void (*k)(A...), void** p, std::index_sequence<I...>) {
	k(*static_cast<std::decay_t<A>*>(p[I])...);
}

template <typename... A>
void invoke(void (*k)(A...), void** p) {
	invoke_i(k, p, std::index_sequence_for<A...>{});
}

struct Reg {
	const char* name;
	void (*call)(void**);
};

#define GM_REG(k) {#k, [](void** p) { invoke(k, p); }},
const Reg registry[] = {
#include "registry.inc"
};

} // namespace

unsigned gm_emu_tid() { return (unsigned)cur; }
unsigned gm_emu_ntid() { return (unsigned)nthreads; }
unsigned gm_emu_ctaid() { return ctaid; }
unsigned gm_emu_nctaid() { return nctaid; }

void gm_emu_bar() {
	events++;
	unsigned gen = bar_gen;
	if (++bar_count == (unsigned)nthreads) {
		bar_count = 0;
		bar_gen++;
		return;
	}
	while (bar_gen == gen && !deadlock) yield_fiber();
}

static void warp_wait(unsigned w) {
	events++;
	unsigned gen = warp_gen[w];
	if (++warp_count[w] == 32) {
		warp_count[w] = 0;
		warp_gen[w]++;
		return;
	}
	while (warp_gen[w] == gen && !deadlock) yield_fiber();
}

unsigned gm_emu_shfl_xor(unsigned v, int m) {
	unsigned t = (unsigned)cur;
	slots[t] = v;
	warp_wait(t / 32);
	unsigned r = slots[(t & ~31u) | ((t & 31u) ^ (unsigned)m)];
	warp_wait(t / 32);
	return r;
}

// mma.m16n8k16 (bf16 → f32) as a warp collective: every lane posts its fragments, then
// each computes its four outputs from the whole warp's (the PTX fragment layout; see
// mma_bf16_16816 in common.cuh).
static unsigned mma_a[kMaxThreads][4], mma_b[kMaxThreads][2];

void gm_emu_mma_bf16(float* d, const unsigned* a, const unsigned* b) {
	unsigned t = (unsigned)cur, w = t / 32, base = w * 32, lane = t & 31u;
	memcpy(mma_a[t], a, sizeof mma_a[t]);
	memcpy(mma_b[t], b, sizeof mma_b[t]);
	warp_wait(w);
	auto bf = [](unsigned reg, int hi) { return u2f((hi ? reg >> 16 : reg & 0xffffu) << 16); };
	auto A = [&](int r, int k) { // A[r][k]: lane (r%8)·4 + (k%8)/2, register r/8 + 2·(k/8)
		return bf(mma_a[base + (r % 8) * 4 + (k % 8) / 2][r / 8 + 2 * (k / 8)], k & 1);
	};
	auto B = [&](int k, int n) { return bf(mma_b[base + n * 4 + (k % 8) / 2][k / 8], k & 1); };
	int g = (int)(lane >> 2), tq = (int)(lane & 3u);
	for (int e = 0; e < 4; e++) {
		int r = g + 8 * (e / 2), n = 2 * tq + (e & 1);
		float s = 0;
		for (int k = 0; k < 16; k++) s += A(r, k) * B(k, n);
		d[e] += s;
	}
	warp_wait(w);
}

// ldmatrix.m8n8.x4(.trans) as a warp collective: lanes 8i..8i+7 post the addresses of
// matrix i's rows; lane l gets, from each matrix, row l/4's elements 2(l%4), 2(l%4)+1, or
// with trans column l/4's elements in rows 2(l%4), 2(l%4)+1 (see ldmatrix_x4 in common.cuh).
static const unsigned short* ldm_rows[kMaxThreads];

void gm_emu_ldmatrix_x4(unsigned* r, const unsigned short* p, int trans) {
	unsigned t = (unsigned)cur, w = t / 32, base = w * 32, lane = t & 31u;
	ldm_rows[t] = p;
	warp_wait(w);
	for (int i = 0; i < 4; i++) {
		auto M = [&](int row, int col) { return (unsigned)ldm_rows[base + 8 * i + row][col]; };
		int a = (int)(lane >> 2), b = 2 * (int)(lane & 3u);
		r[i] = trans ? (M(b, a) | (M(b + 1, a) << 16)) : (M(a, b) | (M(a, b + 1) << 16));
	}
	warp_wait(w);
}

extern "C" int emu_launches;
int emu_launches;

extern "C" int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                              unsigned smem, void* stream, void** kparams, void** extra) {
	const char* name = (const char*)f;
	const Reg* r = nullptr;
	for (const Reg& x : registry)
		if (!strcmp(x.name, name)) r = &x;
	if (!r) return 500;
	if (gy != 1 || gz != 1 || by != 1 || bz != 1 || bx == 0 || bx > (unsigned)kMaxThreads || bx % 32 || stream != (void*)0x5678)
		return 1;
	emu_launches++;
	deadlock = 0;
	entry = r->call;
	params = kparams;
	nthreads = (int)bx;
	nctaid = gx;
	for (unsigned b = 0; b < gx; b++) {
		ctaid = b;
		bar_count = 0;
		memset(warp_count, 0, sizeof warp_count);
		for (int i = 0; i < nthreads; i++) {
			Fiber& fb = fibers[i];
			if (!fb.stack) { // first use: create the fiber and let it park
				fb.stack = (char*)malloc(kStack);
				getcontext(&fb.ctx);
				fb.ctx.uc_stack.ss_sp = fb.stack;
				fb.ctx.uc_stack.ss_size = kStack;
				fb.ctx.uc_link = nullptr;
				makecontext(&fb.ctx, (void (*)())run_fiber, 1, i);
				swapcontext(&sched, &fb.ctx);
			}
			fb.done = false;
			fb.waiting = false;
		}
		for (;;) {
			int alive = 0;
			unsigned long ev0 = events;
			for (int i = 0; i < nthreads; i++) {
				if (fibers[i].done) continue;
				alive++;
				resume(i);
			}
			if (!alive) break;
			if (events == ev0) { // everyone left waits at a barrier some exited thread never reaches
				fprintf(stderr, "emu: %s block %u deadlocked at a barrier\n", name, b);
				deadlock = 1;
				for (int i = 0; i < kMaxThreads; i++) fibers[i].stack = nullptr; // abandon them (leaked)
				return 719;
			}
		}
	}
	return 0;
}
