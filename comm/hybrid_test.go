package comm_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// counting wraps a Comm and counts the collectives it runs (its splits count into the same).
type counting struct {
	comm.Comm
	n *atomic.Int64
}

func (c counting) AllReduce(t *tensor.Tensor, op comm.Op) error {
	c.n.Add(1)
	return c.Comm.AllReduce(t, op)
}

func (c counting) AllGather(out, in *tensor.Tensor) error {
	c.n.Add(1)
	return c.Comm.AllGather(out, in)
}

func (c counting) Split(color, key int) (comm.Comm, error) {
	s, err := c.Comm.Split(color, key)
	if s == nil || err != nil {
		return nil, err
	}
	return counting{s, c.n}, nil
}

// TestHybridRoutesByDevice: host tensors go to the host communicator and device tensors to
// the device one (here comm/tcp staged through a fake GPU, standing in for NCCL), in the
// world and in its splits; mixes are refused; Carries tells train what needs staging.
func TestHybridRoutesByDevice(t *testing.T) {
	onRanks(t, 2, 2, func(r int, w []comm.Comm, d *fakeDevice) error {
		hostW := w[0]
		var hn, dn atomic.Int64
		h, err := comm.Hybrid(counting{hostW, &hn}, counting{comm.Staged(w[1], d), &dn}, gpu0)
		if err != nil {
			return err
		}
		if !comm.Carries(h, gpu0) || comm.Carries(hostW, gpu0) {
			return fmt.Errorf("Carries: hybrid should carry cuda:0, plain tcp should not")
		}
		x := d.tensor(float32(r + 1))
		if err := h.AllReduce(x, comm.Sum); err != nil {
			return err
		}
		y := tensor.FromF32([]float32{float32(r + 1)}, 1)
		if err := h.AllReduce(y, comm.Sum); err != nil {
			return err
		}
		if values(x)[0] != 3 || y.F32()[0] != 3 {
			return fmt.Errorf("sums %v %v", values(x), y.F32())
		}
		if hn.Load() != 1 || dn.Load() != 1 {
			return fmt.Errorf("routing: host ran %d, device %d collectives; want 1 and 1", hn.Load(), dn.Load())
		}
		sub, err := h.Split(0, -r) // reversed order
		if err != nil {
			return err
		}
		out := d.tensor(0, 0)
		if err := sub.AllGather(out, d.tensor(float32(r))); err != nil {
			return err
		}
		if fmt.Sprint(values(out)) != "[1 0]" || dn.Load() != 2 {
			return fmt.Errorf("split all-gather %v (device collectives %d)", values(out), dn.Load())
		}
		if err := h.AllGather(tensor.New(tensor.F32, 2), d.tensor(1)); err == nil {
			return fmt.Errorf("a host/device mix was accepted")
		}
		if err := h.Barrier(); err != nil {
			return err
		}
		if r == 0 {
			if _, err := comm.Hybrid(comm.NewSingle(), hostW, gpu0); err == nil {
				return fmt.Errorf("communicators of different sizes were accepted")
			}
		}
		return nil
	})
}
