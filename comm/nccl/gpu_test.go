package nccl

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/store"
	"github.com/gomegatron/gomegatron/kernels/cuda"
	"github.com/gomegatron/gomegatron/kernels/cuda/dl"
	"github.com/gomegatron/gomegatron/tensor"
)

// gpuBackend opens the CUDA backend on device index (skipping without CUDA or NCCL).
func gpuBackend(t testing.TB, index int) (*cuda.Backend, *Library) {
	t.Helper()
	ok, reason := cuda.Available()
	if !ok {
		t.Skip("CUDA not available: " + reason)
	}
	lib, err := Load(dl.SearchFromEnv(os.Getenv))
	if err != nil {
		t.Skip("NCCL not available: " + err.Error())
	}
	b, err := cuda.New(cuda.Options{Index: index, ArenaBytes: 1 << 30})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b, lib
}

func randHost(r *rand.Rand, dt tensor.DType, n int) *tensor.Tensor {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return tensor.FromF32Values(dt, v, n)
}

// TestSingleRank: a one-rank world on one GPU; every collective is the identity, Split
// gives one-rank communicators, NOCOLOR gives nil.
func TestSingleRank(t *testing.T) {
	b, lib := gpuBackend(t, 0)
	c, err := New(context.Background(), lib, b.GPU(), 0, 1, nil, Options{Timeout: time.Minute})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	require.Equal(t, 0, c.Rank())
	require.Equal(t, 1, c.Size())
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16, tensor.F64, tensor.I32, tensor.I64, tensor.U8} {
		for _, op := range []comm.Op{comm.Sum, comm.Max, comm.Min, comm.Avg} {
			if op == comm.Avg && !dt.IsFloat() {
				continue
			}
			h := tensor.New(dt, 1000)
			for i := range h.Data {
				h.Data[i] = byte(r.Uint32())
			}
			if dt.IsFloat() {
				h = randHost(r, dt, 1000)
			}
			d := b.Alloc(dt, 1000)
			b.Upload(d, h)
			require.NoError(t, c.AllReduce(d, op), "%v %v", dt, op)
			got := tensor.New(dt, 1000)
			b.Download(got, d)
			require.Equal(t, h.Data, got.Data, "%v %v", dt, op)
			require.NoError(t, b.Free(d))
		}
	}
	in := b.Alloc(tensor.F32, 64)
	out := b.Alloc(tensor.F32, 64)
	b.Fill(in, 3)
	require.NoError(t, c.ReduceScatter(out, in, comm.Sum))
	require.NoError(t, c.AllGather(out, in))
	require.NoError(t, c.Broadcast(out, 0))
	h := tensor.New(tensor.F32, 64)
	b.Download(h, out)
	for _, v := range h.F32() {
		require.Equal(t, float32(3), v)
	}
	require.NoError(t, c.Barrier())
	require.ErrorContains(t, c.AllReduce(tensor.New(tensor.F32, 4), comm.Sum), "not on cuda:0")
	require.ErrorContains(t, c.Send(in, 0), "not another rank")
	require.ErrorContains(t, c.AllGather(b.Alloc(tensor.F32, 63), in), "elements")

	sub, err := c.Split(5, 0)
	require.NoError(t, err)
	require.Equal(t, 1, sub.Size())
	require.NoError(t, sub.AllReduce(in, comm.Sum))
	require.NoError(t, sub.Close())
	none, err := c.Split(-1, 0)
	require.NoError(t, err)
	require.Nil(t, none)
}

// TestMultiGPU runs one process per GPU (up to 4; skipped with fewer than 2) through a real
// rendezvous store: all-reduce, reduce-scatter, all-gather (out of place and in place),
// broadcast, grouped send/recv around a ring, and Split into even and odd ranks, checked
// against host sums.
func TestMultiGPU(t *testing.T) {
	if os.Getenv("GM_NCCL_CHILD") == "1" {
		multiChild(t)
		return
	}
	libs, err := cuda.LoadFromEnv()
	if err != nil {
		t.Skip("CUDA not available: " + err.Error())
	}
	n := min(libs.Devices, 4)
	if n < 2 {
		t.Skipf("needs 2 GPUs, have %d", libs.Devices)
	}
	srv, err := store.Listen("127.0.0.1:0", "tok")
	require.NoError(t, err)
	defer srv.Close()
	var wg sync.WaitGroup
	outs := make([][]byte, n)
	errs := make([]error, n)
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMultiGPU$", "-test.v")
			cmd.Env = append(os.Environ(), "GM_NCCL_CHILD=1", "RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n),
				"GOMEGATRON_STORE_ADDR="+srv.Addr(), "GOMEGATRON_JOB_TOKEN=tok", "GOMEGATRON_COMM_TIMEOUT=120s")
			outs[r], errs[r] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for r := range n {
		require.NoError(t, errs[r], "rank %d:\n%s", r, outs[r])
	}
}

func multiChild(t *testing.T) {
	rank, _ := strconv.Atoi(os.Getenv("RANK"))
	size, _ := strconv.Atoi(os.Getenv("WORLD_SIZE"))
	b, _ := gpuBackend(t, rank)
	c, err := InitFromEnv(context.Background(), b.GPU(), Options{})
	require.NoError(t, err)
	defer c.Close()
	const n = 4096
	hosts := make([]*tensor.Tensor, size)
	for r := range size { // every rank can rebuild every rank's input
		hosts[r] = randHost(rand.New(rand.NewPCG(uint64(r), 7)), tensor.F32, n)
	}
	sum := make([]float64, n)
	for r := range size {
		for i, v := range hosts[r].F32() {
			sum[i] += float64(v)
		}
	}
	d := b.Alloc(tensor.F32, n)
	b.Upload(d, hosts[rank])
	require.NoError(t, c.AllReduce(d, comm.Sum))
	got := tensor.New(tensor.F32, n)
	b.Download(got, d)
	for i, v := range got.F32() {
		require.InDelta(t, sum[i], float64(v), 1e-5*math.Max(1, math.Abs(sum[i])), "all-reduce[%d]", i)
	}
	// Reduce-scatter: chunk rank of the sum.
	b.Upload(d, hosts[rank])
	out := b.Alloc(tensor.F32, n/size)
	require.NoError(t, c.ReduceScatter(out, d.Slice(0, n/size*size), comm.Sum))
	part := tensor.New(tensor.F32, n/size)
	b.Download(part, out)
	for i, v := range part.F32() {
		require.InDelta(t, sum[rank*(n/size)+i], float64(v), 1e-5*math.Max(1, math.Abs(sum[rank*(n/size)+i])))
	}
	// All-gather of each rank's first n/size elements.
	b.Upload(d, hosts[rank])
	all := b.Alloc(tensor.F32, n/size*size)
	require.NoError(t, c.AllGather(all, d.Slice(0, n/size)))
	ga := tensor.New(tensor.F32, n/size*size)
	b.Download(ga, all)
	for r := range size {
		require.Equal(t, hosts[r].F32()[:n/size], ga.F32()[r*(n/size):(r+1)*(n/size)])
	}
	// The same two in place, as the distributed optimizer runs them: the reduce-scatter's
	// output is the input's chunk rank, the all-gather's input the output's chunk rank.
	m := n / size
	b.Upload(d, hosts[rank])
	require.NoError(t, c.ReduceScatter(d.Slice(rank*m, (rank+1)*m), d.Slice(0, m*size), comm.Sum))
	inPlace := tensor.New(tensor.F32, m)
	b.Download(inPlace, d.Slice(rank*m, (rank+1)*m))
	for i, v := range inPlace.F32() {
		require.InDelta(t, sum[rank*m+i], float64(v), 1e-5*math.Max(1, math.Abs(sum[rank*m+i])), "in-place reduce-scatter[%d]", i)
	}
	b.Fill(all, 0)
	b.Upload(all.Slice(rank*m, (rank+1)*m), hosts[rank].Slice(0, m))
	require.NoError(t, c.AllGather(all, all.Slice(rank*m, (rank+1)*m)))
	b.Download(ga, all)
	for r := range size {
		require.Equal(t, hosts[r].F32()[:m], ga.F32()[r*m:(r+1)*m], "in-place all-gather chunk %d", r)
	}
	// Ring exchange in one group, 8 MiB (above NCCL's default buffer).
	big := 2 << 20
	src, dst := b.Alloc(tensor.F32, big), b.Alloc(tensor.F32, big)
	b.Fill(src, float32(rank))
	require.NoError(t, c.SendRecv(P2P{T: src, Peer: (rank + 1) % size, Send: true}, P2P{T: dst, Peer: (rank + size - 1) % size}))
	hb := tensor.New(tensor.F32, big)
	b.Download(hb, dst)
	require.Equal(t, float32((rank+size-1)%size), hb.F32()[big-1])
	// Split into even and odd ranks, ordered by descending key.
	sub, err := c.Split(rank%2, -rank)
	require.NoError(t, err)
	members := (size + 1 - rank%2) / 2
	require.Equal(t, members, sub.Size())
	require.Equal(t, (members-1)-rank/2, sub.Rank(), "key −rank reverses the order")
	one := b.Alloc(tensor.F32, 1)
	b.Fill(one, 1)
	require.NoError(t, sub.AllReduce(one, comm.Sum))
	h1 := tensor.New(tensor.F32, 1)
	b.Download(h1, one)
	require.Equal(t, float32(members), h1.F32()[0])
	require.NoError(t, c.Barrier())
	fmt.Printf("rank %d ok\n", rank)
}
