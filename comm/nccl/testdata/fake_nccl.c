// A fake libnccl.so.2 for comm/nccl's tests: one-rank collectives copy send to receive
// buffers in host memory (the fake driver's "device" memory), communicators remember their
// rank, size and unique id, and tests can inject an asynchronous error.
#include <stdlib.h>
#include <string.h>

typedef struct { char internal[128]; } uid;
typedef struct { int rank, size; uid id; int aborted; } comm;

static int async_error, aborts, destroys, group_depth, p2p_calls;
static uid last_id;
static int last_rank, last_size;

int ncclGetVersion(int* v) { *v = 22703; return 0; }
const char* ncclGetErrorString(int c) { return c == 6 ? "remote process exited or there was a network error" : "fake nccl error"; }
const char* ncclGetLastError(comm* c) { return "fake last error"; }
int ncclGetUniqueId(uid* id) { for (int i = 0; i < 128; i++) id->internal[i] = (char)(i * 3 + 1); return 0; }
int ncclCommInitRank(comm** c, int nranks, uid id, int rank) {
	if (rank < 0 || rank >= nranks) return 4;
	comm* x = calloc(1, sizeof *x);
	x->rank = rank; x->size = nranks; x->id = id;
	last_id = id; last_rank = rank; last_size = nranks;
	*c = x;
	return 0;
}
int ncclCommSplit(comm* c, int color, int key, comm** out, void* config) {
	if (config) return 4;
	if (color == -1) { *out = 0; return 0; }
	comm* x = calloc(1, sizeof *x);
	x->rank = c->rank; x->size = c->size; // as if every rank passed this color
	*out = x;
	return 0;
}
int ncclCommDestroy(comm* c) { destroys++; free(c); return 0; }
int ncclCommAbort(comm* c) { aborts++; c->aborted = 1; return 0; }
int ncclCommFinalize(comm* c) { return 0; }
int ncclCommGetAsyncError(comm* c, int* r) { *r = async_error; return 0; }
int ncclCommCount(comm* c, int* n) { *n = c->size; return 0; }
int ncclCommUserRank(comm* c, int* r) { *r = c->rank; return 0; }

static size_t dsize(int dt) {
	switch (dt) {
	case 0: case 1: case 10: case 11: return 1;
	case 6: case 9: return 2;
	case 2: case 3: case 7: return 4;
	default: return 8;
	}
}
static int one(comm* c) { return c->size == 1 && !c->aborted ? 0 : 5; }
int ncclAllReduce(const void* s, void* r, size_t n, int dt, int op, comm* c, void* st) { if (op < 0 || op > 4) return 4; if (s != r) memcpy(r, s, n * dsize(dt)); return one(c); }
static const void* last_send;
static void* last_recv;
int ncclReduceScatter(const void* s, void* r, size_t n, int dt, int op, comm* c, void* st) { last_send = s; last_recv = r; if (s != r) memcpy(r, s, n * dsize(dt)); return one(c); }
int ncclAllGather(const void* s, void* r, size_t n, int dt, comm* c, void* st) { last_send = s; last_recv = r; if (s != r) memcpy(r, s, n * dsize(dt)); return one(c); }
int ncclBroadcast(const void* s, void* r, size_t n, int dt, int root, comm* c, void* st) { if (s != r) memcpy(r, s, n * dsize(dt)); return root == 0 ? one(c) : 4; }
int ncclSend(const void* b, size_t n, int dt, int peer, comm* c, void* st) { p2p_calls++; return peer == c->rank ? 4 : 0; }
int ncclRecv(void* b, size_t n, int dt, int peer, comm* c, void* st) { p2p_calls++; return peer == c->rank ? 4 : 0; }
int ncclGroupStart(void) { group_depth++; return 0; }
int ncclGroupEnd(void) { return group_depth-- > 0 ? 0 : 5; }

void fake_set_async_error(int e) { async_error = e; }
int fake_aborts(void) { return aborts; }
int fake_destroys(void) { return destroys; }
int fake_p2p_calls(void) { return p2p_calls; }
int fake_group_depth(void) { return group_depth; }
int fake_last_rank(void) { return last_rank; }
int fake_last_size(void) { return last_size; }
void* fake_last_id(void) { return &last_id; }
const void* fake_last_send(void) { return last_send; } // sendbuff of the last reduce-scatter / all-gather
void* fake_last_recv(void) { return last_recv; }
