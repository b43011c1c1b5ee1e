package comm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/tensor"
)

// impl is one comm.Comm implementation under the in-place conformance checks: world
// returns an n-rank world's communicators (closed by the test) and whether collectives are
// given tensors on the fake GPU. comm/nccl runs the same contract in its own package
// (TestFakeInPlace on the fake NCCL, TestMultiGPU on GPUs).
type impl struct {
	name  string
	sizes []int
	world func(t *testing.T, n int) (cs []comm.Comm, dev bool)
}

// tcpWorld is a fresh in-process comm/tcp world closed at the end of the test.
func tcpWorld(t *testing.T, n int, o tcp.Options) []comm.Comm {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o.Timeout = time.Minute
	w, err := tcp.LocalWorld(ctx, n, o)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, c := range w {
			c.Close()
		}
	})
	return w
}

func implementations() []impl {
	tcpWith := func(o tcp.Options) func(t *testing.T, n int) ([]comm.Comm, bool) {
		return func(t *testing.T, n int) ([]comm.Comm, bool) { return tcpWorld(t, n, o), false }
	}
	hybrid := func(dev bool) func(t *testing.T, n int) ([]comm.Comm, bool) {
		return func(t *testing.T, n int) ([]comm.Comm, bool) {
			host, inner := tcpWorld(t, n, tcp.Options{}), tcpWorld(t, n, tcp.Options{})
			cs := make([]comm.Comm, n)
			for r := range cs {
				var err error
				cs[r], err = comm.Hybrid(host[r], comm.Staged(inner[r], &fakeDevice{}), gpu0)
				require.NoError(t, err)
			}
			return cs, dev
		}
	}
	return []impl{
		{"tcp/default", []int{1, 2, 3, 4, 5}, tcpWith(tcp.Options{})},
		// The segmented path with tiny segments and a 2-segment credit window.
		{"tcp/segmented", []int{2, 3}, tcpWith(tcp.Options{SmallBytes: 1, SegmentBytes: 24, WindowBytes: 48})},
		{"single", []int{1}, func(*testing.T, int) ([]comm.Comm, bool) { return []comm.Comm{comm.NewSingle()}, false }},
		{"staged", []int{1, 2, 3}, func(t *testing.T, n int) ([]comm.Comm, bool) {
			w := tcpWorld(t, n, tcp.Options{})
			cs := make([]comm.Comm, n)
			for r := range cs {
				cs[r] = comm.Staged(w[r], &fakeDevice{})
			}
			return cs, true
		}},
		{"hybrid/host", []int{2}, hybrid(false)},
		{"hybrid/device", []int{3}, hybrid(true)},
	}
}

// eachRank runs body on every rank of cs concurrently and joins their errors.
func eachRank(cs []comm.Comm, body func(c comm.Comm) error) error {
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for r, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := body(c); err != nil {
				errs[r] = fmt.Errorf("rank %d: %w", r, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// randTensor is rank r's deterministic input: floats with a spread of magnitudes (so the
// fold order shows in the rounding), full-range integers (so sums wrap).
func randTensor(dt tensor.DType, n, r int, seed uint64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, uint64(r)*7919+uint64(dt)))
	t := tensor.New(dt, n)
	switch dt {
	case tensor.F32, tensor.BF16, tensor.F16:
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * float64(int(1)<<rng.IntN(12)))
		}
		tensor.ConvertFromF32(t, v)
	case tensor.F64:
		for i := range t.F64() {
			t.F64()[i] = rng.NormFloat64() * float64(int(1)<<rng.IntN(12))
		}
	default:
		for i := range t.Data {
			t.Data[i] = byte(rng.Uint32())
		}
	}
	return t
}

// place returns a copy of host tensor h where the implementation wants it (host or the
// fake GPU, whose tensors keep their bytes in Data).
func place(h *tensor.Tensor, dev bool) *tensor.Tensor {
	c := h.Clone()
	if dev {
		c.Device = gpu0
	}
	return c
}

// TestInPlaceCollectives is the in-place conformance check of every comm.Comm
// implementation here: ReduceScatter with out = in's chunk rank and AllGather with in =
// out's chunk rank (NCCL's convention) give the same bits as out of place and as the serial
// reference, for several world sizes, element counts and dtypes (bf16 and f16 included);
// the reduce-scatter leaves in's other chunks as they were.
func TestInPlaceCollectives(t *testing.T) {
	dtypes := []tensor.DType{tensor.F32, tensor.BF16, tensor.F16, tensor.F64, tensor.I32, tensor.I64, tensor.U8}
	for _, im := range implementations() {
		for _, n := range im.sizes {
			t.Run(fmt.Sprintf("%s/n%d", im.name, n), func(t *testing.T) {
				cs, dev := im.world(t, n)
				for _, m := range []int{0, 1, 7, 1003, 70001} {
					for _, dt := range dtypes {
						if m > 1003 && (dt != tensor.F32 && dt != tensor.BF16 || strings.HasSuffix(im.name, "segmented")) {
							continue // large: the training dtypes, and not in 24-byte segments
						}
						ops := []comm.Op{comm.Sum, comm.Max}
						if dt.IsFloat() && m <= 1003 {
							ops = append(ops, comm.Avg)
						}
						require.NoError(t, checkInPlace(cs, dev, n, m, dt, ops), "%v m=%d", dt, m)
					}
				}
			})
		}
	}
}

func checkInPlace(cs []comm.Comm, dev bool, n, m int, dt tensor.DType, ops []comm.Op) error {
	es := dt.Size()
	full := make([]*tensor.Tensor, n) // each rank's reduce-scatter input
	part := make([]*tensor.Tensor, n) // each rank's all-gather input
	var gathered []byte
	for r := range n {
		full[r] = randTensor(dt, n*m, r, 1)
		part[r] = randTensor(dt, m, r, 2)
		gathered = append(gathered, part[r].Data...)
	}
	want := map[comm.Op]*tensor.Tensor{}
	for _, op := range ops {
		var err error
		if want[op], err = comm.ReduceSerial(full, op); err != nil {
			return err
		}
	}
	return eachRank(cs, func(c comm.Comm) error {
		me := c.Rank()
		chunk := func(b []byte, r int) []byte { return b[r*m*es : (r+1)*m*es] }
		for _, op := range ops {
			in := place(full[me], dev)
			out := place(tensor.New(dt, m), dev)
			if err := c.ReduceScatter(out, in, op); err != nil {
				return err
			}
			buf := place(full[me], dev)
			mine := buf.Slice(me*m, (me+1)*m)
			if err := c.ReduceScatter(mine, buf, op); err != nil {
				return fmt.Errorf("in-place ReduceScatter %v: %w", op, err)
			}
			if !bytes.Equal(mine.Data, out.Data) {
				return fmt.Errorf("in-place ReduceScatter %v differs from out of place", op)
			}
			if !bytes.Equal(out.Data, chunk(want[op].Data, me)) {
				return fmt.Errorf("ReduceScatter %v differs from the serial reference", op)
			}
			for r := range n {
				if r != me && !bytes.Equal(chunk(buf.Data, r), chunk(full[me].Data, r)) {
					return fmt.Errorf("in-place ReduceScatter %v changed chunk %d of its input", op, r)
				}
			}
		}
		out := place(tensor.New(dt, n*m), dev)
		if err := c.AllGather(out, place(part[me], dev)); err != nil {
			return err
		}
		buf := place(tensor.New(dt, n*m), dev)
		for i := range buf.Data {
			buf.Data[i] = 0xa5 // whatever was there is overwritten
		}
		mine := buf.Slice(me*m, (me+1)*m)
		copy(mine.Data, part[me].Data)
		if err := c.AllGather(buf, mine); err != nil {
			return fmt.Errorf("in-place AllGather: %w", err)
		}
		if !bytes.Equal(buf.Data, out.Data) || !bytes.Equal(out.Data, gathered) {
			return fmt.Errorf("in-place AllGather differs from out of place or from the inputs")
		}
		return nil
	})
}

// TestOverlapRejected: any aliasing of a reduce-scatter's or all-gather's tensors other than
// NCCL's in-place form (another rank's chunk, a chunk shifted by an element, a shifted
// window of a larger buffer) is refused by every implementation with an error saying so,
// before anything is sent, and the communicator stays usable.
func TestOverlapRejected(t *testing.T) {
	for _, im := range implementations() {
		for _, n := range im.sizes {
			t.Run(fmt.Sprintf("%s/n%d", im.name, n), func(t *testing.T) {
				cs, dev := im.world(t, n)
				const m = 5
				err := eachRank(cs, func(c comm.Comm) error {
					me, other := c.Rank(), (c.Rank()+1)%n
					buf := place(tensor.New(tensor.F32, (n+1)*m), dev)
					in := buf.Slice(0, n*m)
					cases := []struct {
						name string
						call func() error
					}{
						{"ReduceScatter, shifted chunk", func() error {
							return c.ReduceScatter(buf.Slice(me*m+1, (me+1)*m+1), in, comm.Sum)
						}},
						{"AllGather, shifted chunk", func() error { return c.AllGather(in, buf.Slice(me*m+1, (me+1)*m+1)) }},
						{"ReduceScatter, shifted input", func() error {
							return c.ReduceScatter(buf.Slice(me*m, (me+1)*m), buf.Slice(1, n*m+1), comm.Sum)
						}},
					}
					if n > 1 {
						cases = append(cases, []struct {
							name string
							call func() error
						}{
							{"ReduceScatter, another rank's chunk", func() error {
								return c.ReduceScatter(in.Slice(other*m, (other+1)*m), in, comm.Sum)
							}},
							{"AllGather, another rank's chunk", func() error { return c.AllGather(in, in.Slice(other*m, (other+1)*m)) }},
						}...)
					}
					for _, k := range cases {
						err := k.call()
						if err == nil {
							return fmt.Errorf("%s was accepted", k.name)
						}
						if s := err.Error(); !strings.Contains(s, "overlaps") || !strings.Contains(s, fmt.Sprintf("without being its chunk %d", me)) ||
							!strings.Contains(s, "NCCL's in-place form") {
							return fmt.Errorf("%s: unclear error %q", k.name, s)
						}
					}
					x := place(tensor.FromF32([]float32{1}, 1), dev)
					if err := c.AllReduce(x, comm.Sum); err != nil {
						return fmt.Errorf("unusable after argument errors: %w", err)
					}
					if got := values(x)[0]; got != float32(n) {
						return fmt.Errorf("all-reduce after argument errors: %v, want %d", got, n)
					}
					return nil
				})
				require.NoError(t, err)
			})
		}
	}
}

// TestInPlaceHelper: comm.InPlace on host tensors, device headers (Ptr) and fake-GPU
// tensors (bytes in Data): exact chunk, disjoint, other overlaps, empty and other devices.
func TestInPlaceHelper(t *testing.T) {
	host := tensor.New(tensor.BF16, 12)
	dev := func(ptr uintptr, n int, d int) *tensor.Tensor {
		x := tensor.New(tensor.BF16, n)
		x.Data, x.Ptr, x.Device = nil, ptr, tensor.Device{Type: tensor.CUDA, Index: d}
		return x
	}
	fake := place(host, true)
	cases := []struct {
		name         string
		chunk, whole *tensor.Tensor
		rank         int
		in           bool
		err          string
	}{
		{"host chunk 2", host.Slice(8, 12), host, 2, true, ""},
		{"host chunk 0 of a reshaped view", host.Slice(0, 4).View(2, 2), host.View(3, 4), 0, true, ""},
		{"host disjoint", tensor.New(tensor.BF16, 4), host, 1, false, ""},
		{"host wrong chunk", host.Slice(0, 4), host, 1, false, "X: bfloat16[4]@cpu overlaps bfloat16[12]@cpu without being its chunk 1 (it starts 0 bytes into it, chunk 1 starts at 8)"},
		{"host shifted", host.Slice(5, 9), host, 1, false, "it starts 10 bytes into it"},
		{"host same size, shifted", host.Slice(1, 5), host.Slice(0, 4), 0, false, "without being its chunk 0"},
		{"host empty", host.Slice(3, 3), host.Slice(0, 0), 0, false, ""},
		{"device chunk 1", dev(0x1008, 4, 0), dev(0x1000, 12, 0), 1, true, ""},
		{"device adjacent", dev(0x1018, 4, 0), dev(0x1000, 12, 0), 1, false, ""},
		{"device overlap", dev(0x1002, 4, 0), dev(0x1000, 12, 0), 1, false, "without being its chunk 1"},
		{"other device", dev(0x1008, 4, 1), dev(0x1000, 12, 0), 1, false, ""},
		{"fake GPU chunk 1", fake.Slice(4, 8), fake, 1, true, ""},
		{"fake GPU vs host bytes", fake.Slice(4, 8), host, 1, false, ""},
	}
	for _, k := range cases {
		t.Run(k.name, func(t *testing.T) {
			in, err := comm.InPlace("X", k.chunk, k.whole, k.rank)
			if k.err != "" {
				require.ErrorContains(t, err, k.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, k.in, in)
		})
	}
}
