package nccl

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels/cuda"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl/dltest"
	"github.com/gomegatron/gomegatron/tensor"
)

// memStore is an in-memory Store; Get waits for the key until ctx ends.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) Set(k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = append([]byte(nil), v...)
	return nil
}

func (s *memStore) Get(ctx context.Context, k string) ([]byte, error) {
	for {
		s.mu.Lock()
		v, ok := s.m[k]
		s.mu.Unlock()
		if ok {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// fakeEnv is the fake CUDA driver (kernels/cuda/testdata/fake: host memory as device
// memory) with a backend on it, and the fake NCCL of testdata/fake_nccl.c.
type fakeEnv struct {
	b       *cuda.Backend
	lib     *Library
	drv, nc *dl.Lib
}

func newFakeEnv(t *testing.T) *fakeEnv {
	dir := t.TempDir()
	read := func(p string) string {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return string(b)
	}
	fake := "../../kernels/cuda/testdata/fake"
	for _, src := range []string{filepath.Join(fake, "cuda.c"), "testdata/fake_nccl.c"} {
		if _, err := os.Stat(src); err != nil {
			t.Skipf("fake CUDA/NCCL sources not found (test binary run outside comm/nccl): %v", err)
		}
	}
	drv := dltest.Build(t, filepath.Join(dir, "drv"), "libcuda.so.1", read(filepath.Join(fake, "cuda.c")))
	wheel := filepath.Join(dir, "wheel")
	dltest.Build(t, wheel, "libnvrtc.so.13", read(filepath.Join(fake, "nvrtc.c")))
	dltest.Build(t, wheel, "libcublasLt.so.13", read(filepath.Join(fake, "cublaslt.c")))
	dltest.Build(t, wheel, "libnccl.so.2", read("testdata/fake_nccl.c"))
	libs, err := cuda.Load(dl.Search{Driver: drv, Dirs: []string{wheel}})
	require.NoError(t, err)
	b, err := cuda.NewOn(libs, cuda.Options{ArenaBytes: 16 << 20, WorkspaceBytes: 1 << 20, CacheDir: filepath.Join(dir, "cubin")})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	lib, err := Load(dl.Search{Dirs: []string{wheel}})
	require.NoError(t, err)
	e := &fakeEnv{b: b, lib: lib}
	e.drv, err = dl.Open(drv, false)
	require.NoError(t, err)
	e.nc, err = dl.Open(filepath.Join(wheel, "libnccl.so.2"), false)
	require.NoError(t, err)
	return e
}

func (e *fakeEnv) fake(t *testing.T, l *dl.Lib, name string, args ...uintptr) uintptr {
	f, err := l.Sym(name)
	require.NoError(t, err)
	return f.Call(args...)
}

func (e *fakeEnv) dev(t *testing.T, vals ...float32) *tensor.Tensor {
	d := e.b.Alloc(tensor.F32, len(vals))
	e.b.Upload(d, tensor.FromF32(vals, len(vals)))
	return d
}

func (e *fakeEnv) host(d *tensor.Tensor) []float32 {
	h := tensor.New(tensor.F32, d.Numel())
	e.b.Download(h, d)
	return h.F32()
}

// TestFakeSingleRank runs the whole Comm on the fake driver and NCCL: set-up, every
// collective, Split, NOCOLOR, Close destroying every communicator.
func TestFakeSingleRank(t *testing.T) {
	e := newFakeEnv(t)
	c, err := New(context.Background(), e.lib, e.b.GPU(), 0, 1, nil, Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	x := e.dev(t, 1, 2, 3, 4)
	require.NoError(t, c.AllReduce(x, comm.Avg))
	require.Equal(t, []float32{1, 2, 3, 4}, e.host(x))
	out := e.b.Alloc(tensor.F32, 4)
	require.NoError(t, c.ReduceScatter(out, x, comm.Sum))
	require.Equal(t, []float32{1, 2, 3, 4}, e.host(out))
	out2 := e.b.Alloc(tensor.F32, 4)
	require.NoError(t, c.AllGather(out2, x))
	require.Equal(t, []float32{1, 2, 3, 4}, e.host(out2))
	require.NoError(t, c.Broadcast(x, 0))
	require.ErrorContains(t, c.Broadcast(x, 1), "root 1 out of range")
	require.NoError(t, c.Barrier())
	require.ErrorContains(t, c.AllReduce(tensor.New(tensor.F32, 4), comm.Sum), "AllReduce: tensor float32[4]@cpu is not on cuda:0")
	require.ErrorContains(t, c.AllReduce(e.b.Alloc(tensor.I32, 4), comm.Avg), "avg is not defined")
	require.ErrorContains(t, c.ReduceScatter(e.b.Alloc(tensor.F32, 3), x, comm.Sum), "must have 1×3 = 3 elements")

	sub, err := c.Split(3, 0)
	require.NoError(t, err)
	require.Equal(t, [2]int{0, 1}, [2]int{sub.Rank(), sub.Size()})
	require.NoError(t, sub.AllReduce(x, comm.Max))
	none, err := c.Split(-1, 0)
	require.NoError(t, err)
	require.Nil(t, none)

	require.NoError(t, c.Close())
	require.Equal(t, uintptr(2), e.fake(t, e.nc, "fake_destroys"), "world and split destroyed")
	require.ErrorIs(t, c.AllReduce(x, comm.Sum), comm.ErrClosed)
	require.NoError(t, c.Close(), "closing twice is harmless")
}

// TestFakeUniqueID: rank 0 publishes ncclGetUniqueId's 128 bytes in the store; rank 1
// passes exactly those bytes by value to ncclCommInitRank; a missing id times out.
func TestFakeUniqueID(t *testing.T) {
	e := newFakeEnv(t)
	st := &memStore{m: map[string][]byte{}}
	c0, err := New(context.Background(), e.lib, e.b.GPU(), 0, 2, st, Options{Prefix: "job7", Timeout: 5 * time.Second})
	require.NoError(t, err)
	want := make([]byte, 128)
	for i := range want {
		want[i] = byte(i*3 + 1)
	}
	require.Equal(t, want, st.m["job7/id"])

	st.m["job8/id"] = bytes.Repeat([]byte{9}, 128)
	c1, err := New(context.Background(), e.lib, e.b.GPU(), 1, 2, st, Options{Prefix: "job8", Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.Equal(t, [2]uintptr{1, 2}, [2]uintptr{e.fake(t, e.nc, "fake_last_rank"), e.fake(t, e.nc, "fake_last_size")})
	require.Equal(t, st.m["job8/id"], dl.Bytes(e.fake(t, e.nc, "fake_last_id"), 128))

	// Grouped send/recv (the fake's collectives need size 1, its p2p does not).
	a, b := e.dev(t, 1, 2), e.dev(t, 0, 0)
	require.NoError(t, c1.SendRecv(P2P{T: a, Peer: 0, Send: true}, P2P{T: b, Peer: 0}))
	require.Equal(t, uintptr(2), e.fake(t, e.nc, "fake_p2p_calls"))
	require.Equal(t, uintptr(0), e.fake(t, e.nc, "fake_group_depth"), "every ncclGroupStart is ended")
	require.ErrorContains(t, c1.SendRecv(P2P{T: a, Peer: 1, Send: true}), "peer 1 is not another rank")
	// comm.BatchP2P over two communicators of this world: one group of both.
	c2, err := c1.Split(0, 1)
	require.NoError(t, err)
	require.NoError(t, comm.BatchP2P([]comm.P2POp{{Comm: c1, T: a, Peer: 0, Send: true}, {Comm: c2, T: b, Peer: 0}}))
	require.Equal(t, uintptr(4), e.fake(t, e.nc, "fake_p2p_calls"))
	require.Equal(t, uintptr(0), e.fake(t, e.nc, "fake_group_depth"))
	handled, err := c1.BatchP2P([]comm.P2POp{{Comm: comm.NewSingle(), T: a, Peer: 0, Send: true}})
	require.NoError(t, err)
	require.False(t, handled, "a batch with another kind of communicator is declined")
	require.NoError(t, c1.Send(a, 0))

	_, err = New(context.Background(), e.lib, e.b.GPU(), 1, 2, st, Options{Prefix: "absent", Timeout: 50 * time.Millisecond})
	require.ErrorContains(t, err, "rank 1 waiting for the unique id at absent/id")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, c0.Close())
	require.NoError(t, c1.Close())
}

// TestFakeFailures: an asynchronous NCCL error and a stream that never completes both fail
// the call with the cause, abort the communicator, and fail every later call.
func TestFakeFailures(t *testing.T) {
	e := newFakeEnv(t)
	x := e.dev(t, 1, 2, 3)

	c, err := New(context.Background(), e.lib, e.b.GPU(), 0, 1, nil, Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	sub, err := c.Split(0, 0)
	require.NoError(t, err)
	e.fake(t, e.nc, "fake_set_async_error", 6)
	err = c.AllReduce(x, comm.Sum)
	require.ErrorContains(t, err, "ncclAllReduce (asynchronous error): ncclRemoteError (6): remote process exited or there was a network error: fake last error")
	require.Equal(t, uintptr(2), e.fake(t, e.nc, "fake_aborts"), "the world and its split are aborted")
	e.fake(t, e.nc, "fake_set_async_error", 0)
	require.ErrorContains(t, sub.AllReduce(x, comm.Sum), "ncclRemoteError", "later calls on every Comm of the world fail with the first error")
	require.NoError(t, c.Close())

	c2, err := New(context.Background(), e.lib, e.b.GPU(), 0, 1, nil, Options{Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	e.fake(t, e.drv, "fake_set_event_not_ready", 1)
	t0 := time.Now()
	err = c2.AllReduce(x, comm.Sum)
	e.fake(t, e.drv, "fake_set_event_not_ready", 0)
	require.ErrorIs(t, err, comm.ErrTimeout)
	require.ErrorContains(t, err, "ncclAllReduce did not complete within 200ms")
	require.Less(t, time.Since(t0), 3*time.Second)
	require.True(t, errors.Is(c2.Barrier(), comm.ErrTimeout))
	require.NoError(t, c2.Close())
}

// TestFakeInPlace: NCCL's in-place reduce-scatter and all-gather (recvbuff = sendbuff +
// rank·recvcount, sendbuff = recvbuff + rank·sendcount) pass validation and reach NCCL with
// the pointers as they are; any other overlap is refused before NCCL is called.
func TestFakeInPlace(t *testing.T) {
	e := newFakeEnv(t)
	last := func() [2]uintptr {
		return [2]uintptr{e.fake(t, e.nc, "fake_last_send"), e.fake(t, e.nc, "fake_last_recv")}
	}
	c, err := New(context.Background(), e.lib, e.b.GPU(), 0, 1, nil, Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	x := e.dev(t, 1, 2, 3, 4)
	require.NoError(t, c.ReduceScatter(x, x, comm.Sum))
	require.Equal(t, [2]uintptr{x.Ptr, x.Ptr}, last())
	require.NoError(t, c.AllGather(x, x.View(2, 2)))
	require.Equal(t, [2]uintptr{x.Ptr, x.Ptr}, last())
	require.Equal(t, []float32{1, 2, 3, 4}, e.host(x))
	buf := e.dev(t, 1, 2, 3, 4, 5, 6)
	require.ErrorContains(t, c.ReduceScatter(buf.Slice(2, 6), buf.Slice(0, 4), comm.Sum),
		"ReduceScatter: float32[4]@cuda:0 overlaps float32[4]@cuda:0 without being its chunk 0 (it starts 8 bytes into it")
	require.ErrorContains(t, c.AllGather(buf.Slice(0, 4), buf.Slice(1, 5)), "AllGather: float32[4]@cuda:0 overlaps")
	require.Equal(t, [2]uintptr{x.Ptr, x.Ptr}, last(), "refused calls do not reach NCCL")
	require.NoError(t, c.AllGather(x, x), "still healthy after argument errors")
	require.NoError(t, c.Close())

	// Rank 1 of 2: chunk 1 is in place, chunk 0 is refused. (The fake's collectives fail on
	// more than one rank, after NCCL got the pointers, and abort the world: one world each.)
	st := &memStore{m: map[string][]byte{"rs/id": make([]byte, 128), "ag/id": make([]byte, 128)}}
	rs, err := New(context.Background(), e.lib, e.b.GPU(), 1, 2, st, Options{Prefix: "rs", Timeout: 5 * time.Second})
	require.NoError(t, err)
	ag, err := New(context.Background(), e.lib, e.b.GPU(), 1, 2, st, Options{Prefix: "ag", Timeout: 5 * time.Second})
	require.NoError(t, err)
	in := e.dev(t, 1, 2, 3, 4, 5, 6, 7, 8)
	require.ErrorContains(t, rs.ReduceScatter(in.Slice(0, 4), in, comm.Sum), "without being its chunk 1 (it starts 0 bytes into it, chunk 1 starts at 16)")
	require.ErrorContains(t, ag.AllGather(in, in.Slice(0, 4)), "without being its chunk 1")
	err = rs.ReduceScatter(in.Slice(4, 8), in, comm.Sum)
	require.Error(t, err, "the fake NCCL runs one rank only")
	require.NotContains(t, err.Error(), "overlaps")
	require.Equal(t, [2]uintptr{in.Ptr, in.Ptr + 16}, last())
	err = ag.AllGather(in, in.Slice(4, 8))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "overlaps")
	require.Equal(t, [2]uintptr{in.Ptr + 16, in.Ptr}, last())
	rs.Close()
	ag.Close()
}
