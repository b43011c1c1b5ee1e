package tcp

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

var allDTypes = []tensor.DType{tensor.F32, tensor.BF16, tensor.F16, tensor.F64, tensor.I32, tensor.I64, tensor.U8}

func opsFor(dt tensor.DType) []comm.Op {
	if dt.IsFloat() {
		return []comm.Op{comm.Sum, comm.Max, comm.Min, comm.Avg}
	}
	return []comm.Op{comm.Sum, comm.Max, comm.Min}
}

// pathOptions exercise both algorithms: everything on the one-round path, everything on the
// reduce-scatter/all-gather path with tiny segments and a tiny credit window, and the defaults.
var pathOptions = map[string]Options{
	"small":     {SmallBytes: 1 << 30},
	"segmented": {SmallBytes: 1, SegmentBytes: 24, WindowBytes: 48}, // credit window of 2 segments
	"default":   {},
}

// checkAllReduce all-reduces rank-specific inputs and requires every rank's result to equal
// the serial reference bit for bit.
func checkAllReduce(t *testing.T, n, numel int, dt tensor.DType, ops []comm.Op, o Options) {
	in := make([]*tensor.Tensor, n)
	for r := range in {
		in[r] = input(dt, numel, r, 1)
	}
	want := map[comm.Op]*tensor.Tensor{}
	for _, op := range ops {
		want[op], _ = comm.ReduceSerial(in, op)
	}
	errs := world(t, n, o, func(c comm.Comm) error {
		for _, op := range ops {
			x := in[c.Rank()].Clone()
			if err := c.AllReduce(x, op); err != nil {
				return err
			}
			if !bytes.Equal(x.Data, want[op].Data) {
				return fmt.Errorf("%v %v: result differs from the serial reference", dt, op)
			}
		}
		return nil
	})
	noErrors(t, errs)
}

func TestAllReduceSmallSizes(t *testing.T) {
	for n := 1; n <= 8; n++ {
		for _, numel := range []int{0, 1, 7, 1000} {
			for name, o := range pathOptions {
				t.Run(fmt.Sprintf("n%d/numel%d/%s", n, numel, name), func(t *testing.T) {
					for _, dt := range allDTypes {
						checkAllReduce(t, n, numel, dt, opsFor(dt), o)
					}
				})
			}
		}
	}
}

func TestAllReduceLarge(t *testing.T) {
	const numel = 1000003
	cases := []struct {
		n   int
		dts []tensor.DType
	}{
		{1, []tensor.DType{tensor.F32}}, {2, []tensor.DType{tensor.F32, tensor.BF16}},
		{3, allDTypes}, {4, []tensor.DType{tensor.F32, tensor.F16}}, {5, []tensor.DType{tensor.BF16}},
		{6, []tensor.DType{tensor.F32}}, {7, []tensor.DType{tensor.I64}}, {8, []tensor.DType{tensor.F32, tensor.BF16}},
	}
	for _, c := range cases {
		for _, dt := range c.dts {
			t.Run(fmt.Sprintf("n%d/%v", c.n, dt), func(t *testing.T) {
				ops := []comm.Op{comm.Sum}
				if c.n == 3 && dt.IsFloat() {
					ops = append(ops, comm.Max, comm.Avg)
				}
				checkAllReduce(t, c.n, numel, dt, ops, Options{})
			})
		}
	}
	// Many segments through a 2-segment credit window.
	for _, n := range []int{2, 5} {
		t.Run(fmt.Sprintf("n%d/credits", n), func(t *testing.T) {
			checkAllReduce(t, n, numel, tensor.BF16, []comm.Op{comm.Sum, comm.Max}, Options{SegmentBytes: 16 << 10, WindowBytes: 32 << 10})
		})
	}
}

// TestAllReducePathsAgree checks the claim that the result does not depend on the algorithm:
// the same inputs through the one-round path and the segmented path give the same bits
// (checkAllReduce compares both with one reference; this compares them directly too).
func TestAllReducePathsAgree(t *testing.T) {
	const n, numel = 5, 4099
	results := map[string][][]byte{}
	for name, o := range pathOptions {
		res := make([][]byte, n)
		noErrors(t, world(t, n, o, func(c comm.Comm) error {
			x := input(tensor.BF16, numel, c.Rank(), 9)
			err := c.AllReduce(x, comm.Sum)
			res[c.Rank()] = x.Data
			return err
		}))
		results[name] = res
	}
	for r := range n {
		assert.Equal(t, results["small"][r], results["segmented"][r], "rank %d", r)
		assert.Equal(t, results["small"][r], results["default"][r], "rank %d", r)
		assert.Equal(t, results["small"][0], results["small"][r], "rank %d differs from rank 0", r)
	}
}

func TestAllReduceNaN(t *testing.T) {
	noErrors(t, world(t, 3, Options{}, func(c comm.Comm) error {
		v := []float32{1, 2, 3}
		v[c.Rank()] = float32(nanF())
		for _, op := range []comm.Op{comm.Max, comm.Min, comm.Sum} {
			x := tensor.FromF32(append([]float32(nil), v...), 3)
			if err := c.AllReduce(x, op); err != nil {
				return err
			}
			for i, y := range x.F32() {
				if y == y {
					return fmt.Errorf("%v: element %d = %v, want NaN", op, i, y)
				}
			}
		}
		return nil
	}))
}

func TestReduceScatter(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 8} {
		for _, m := range []int{0, 1, 7, 1003, 100003} {
			for name, o := range pathOptions {
				if m > 1003 && name == "segmented" {
					continue // 24-byte segments of megabytes: too many frames for a unit test
				}
				t.Run(fmt.Sprintf("n%d/m%d/%s", n, m, name), func(t *testing.T) {
					for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.I64, tensor.U8} {
						in := make([]*tensor.Tensor, n)
						for r := range in {
							in[r] = input(dt, n*m, r, 2)
						}
						for _, op := range opsFor(dt)[:2] {
							want, _ := comm.ReduceSerial(in, op)
							noErrors(t, world(t, n, o, func(c comm.Comm) error {
								out := tensor.New(dt, m)
								if err := c.ReduceScatter(out, in[c.Rank()], op); err != nil {
									return err
								}
								w := want.Data[c.Rank()*m*dt.Size() : (c.Rank()+1)*m*dt.Size()]
								if !bytes.Equal(out.Data, w) {
									return fmt.Errorf("%v %v: chunk %d differs from the reference", dt, op, c.Rank())
								}
								return nil
							}))
						}
					}
				})
			}
		}
	}
}

func TestAllGatherAndBroadcast(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 8} {
		for _, m := range []int{0, 1, 7, 1000003} {
			for name, o := range pathOptions {
				if m == 1000003 && (name == "segmented" || n > 4) {
					continue // 24-byte segments of megabytes: too many frames for a unit test
				}
				t.Run(fmt.Sprintf("n%d/m%d/%s", n, m, name), func(t *testing.T) {
					dt := tensor.BF16
					in := make([]*tensor.Tensor, n)
					var all []byte
					for r := range in {
						in[r] = input(dt, m, r, 3)
						all = append(all, in[r].Data...)
					}
					noErrors(t, world(t, n, o, func(c comm.Comm) error {
						out := tensor.New(dt, n*m)
						if err := c.AllGather(out, in[c.Rank()]); err != nil {
							return err
						}
						if !bytes.Equal(out.Data, all) {
							return fmt.Errorf("all-gather result differs")
						}
						for _, root := range []int{0, n - 1, n / 2} {
							x := in[c.Rank()].Clone()
							if err := c.Broadcast(x, root); err != nil {
								return err
							}
							if !bytes.Equal(x.Data, in[root].Data) {
								return fmt.Errorf("broadcast from %d differs", root)
							}
						}
						return nil
					}))
				})
			}
		}
	}
}

// TestAllGatherInPlace: the distributed optimizer gathers into a buffer whose own chunk is
// the input.
func TestAllGatherInPlace(t *testing.T) {
	const n, m = 4, 50001
	noErrors(t, world(t, n, Options{}, func(c comm.Comm) error {
		buf := tensor.New(tensor.F32, n*m)
		mine := buf.Slice(c.Rank()*m, (c.Rank()+1)*m)
		copy(mine.Data, input(tensor.F32, m, c.Rank(), 4).Data)
		if err := c.AllGather(buf, mine); err != nil {
			return err
		}
		for r := range n {
			if !bytes.Equal(buf.Data[r*m*4:(r+1)*m*4], input(tensor.F32, m, r, 4).Data) {
				return fmt.Errorf("chunk %d wrong", r)
			}
		}
		return nil
	}))
}

// TestSendRecv passes tensors around a ring in both directions, each rank sending before it
// receives (a deadlock if Send waited for its Recv), and checks order within one pair.
func TestSendRecv(t *testing.T) {
	for _, n := range []int{2, 3, 6} {
		noErrors(t, world(t, n, Options{}, func(c comm.Comm) error {
			r := c.Rank()
			next, prev := (r+1)%n, (r+n-1)%n
			for i, m := range []int{0, 5, 300001} {
				x := input(tensor.F32, m, r*10+i, 5)
				if err := c.Send(x, next); err != nil {
					return err
				}
				if n > 2 {
					if err := c.Send(x, prev); err != nil {
						return err
					}
				}
			}
			for i, m := range []int{0, 5, 300001} {
				got := tensor.New(tensor.F32, m)
				if err := c.Recv(got, prev); err != nil {
					return err
				}
				if !bytes.Equal(got.Data, input(tensor.F32, m, prev*10+i, 5).Data) {
					return fmt.Errorf("message %d from %d differs", i, prev)
				}
				if n > 2 {
					if err := c.Recv(got, next); err != nil {
						return err
					}
					if !bytes.Equal(got.Data, input(tensor.F32, m, next*10+i, 5).Data) {
						return fmt.Errorf("message %d from %d differs", i, next)
					}
				}
			}
			return c.Barrier()
		}))
	}
}

func TestArgumentErrors(t *testing.T) {
	errs := world(t, 2, Options{}, func(c comm.Comm) error {
		var msgs []string
		add := func(err error) {
			if err == nil {
				msgs = append(msgs, "<nil>")
			} else {
				msgs = append(msgs, err.Error())
			}
		}
		add(c.AllReduce(tensor.New(tensor.I32, 4), comm.Avg))
		add(c.AllReduce(tensor.New(tensor.F8E4M3, 4), comm.Sum))
		add(c.AllGather(tensor.New(tensor.F32, 7), tensor.New(tensor.F32, 4)))
		add(c.ReduceScatter(tensor.New(tensor.F32, 4), tensor.New(tensor.BF16, 8), comm.Sum))
		add(c.Broadcast(tensor.New(tensor.F32, 4), 2))
		add(c.Send(tensor.New(tensor.F32, 4), c.Rank()))
		add(c.Barrier()) // still healthy after argument errors
		return fmt.Errorf("%q", msgs)
	})
	for _, err := range errs {
		s := err.Error()
		for _, want := range []string{"avg is not defined for int32", "dtype float8_e4m3fn is not supported",
			"must have 2×4 = 8 elements, has 7", "dtypes differ", "root 2 out of range", "is not another rank", `"<nil>"]`} {
			assert.Contains(t, s, want)
		}
	}
}

func nanF() float64 { var z float64; return z / z }

func TestSingleMatchesOneRankWorld(t *testing.T) {
	s := comm.NewSingle()
	x := input(tensor.BF16, 9, 0, 6)
	y := x.Clone()
	require.NoError(t, s.AllReduce(y, comm.Avg))
	assert.Equal(t, x.Data, y.Data)
	sub, err := s.Split(-1, 0)
	require.NoError(t, err)
	assert.Nil(t, sub)
}

// TestConcurrentGroups runs all-reduces on two orthogonal sub-communicators (like TP and DP)
// from two goroutines per rank at once, over the shared connections.
func TestConcurrentGroups(t *testing.T) {
	const n, iters = 4, 30
	noErrors(t, world(t, n, Options{SegmentBytes: 4096}, func(c comm.Comm) error {
		r := c.Rank()
		a, err := c.Split(r/2, r) // {0,1} {2,3}
		if err != nil {
			return err
		}
		b, err := c.Split(r%2, r) // {0,2} {1,3}
		if err != nil {
			return err
		}
		errs := make(chan error, 2)
		for _, g := range []struct {
			c       comm.Comm
			members []int
		}{{a, []int{r / 2 * 2, r/2*2 + 1}}, {b, []int{r % 2, r%2 + 2}}} {
			go func() {
				for i := range iters {
					m := 1 + i*997
					x := tensor.New(tensor.I64, m)
					for j := range x.I64() {
						x.I64()[j] = int64(r*1000 + j)
					}
					if err := g.c.AllReduce(x, comm.Sum); err != nil {
						errs <- err
						return
					}
					for j, v := range x.I64() {
						if want := int64((g.members[0]+g.members[1])*1000 + 2*j); v != want {
							errs <- fmt.Errorf("group %v iteration %d: element %d = %d, want %d", g.members, i, j, v, want)
							return
						}
					}
				}
				errs <- nil
			}()
		}
		return errors.Join(<-errs, <-errs)
	}))
}
