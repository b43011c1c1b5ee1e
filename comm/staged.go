package comm

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// Mover moves tensors between the host and one device; kernels.Backend satisfies it.
type Mover interface {
	Device() tensor.Device
	Upload(dst, src *tensor.Tensor)
	Download(dst, src *tensor.Tensor)
	Copy(dst, src *tensor.Tensor)
}

// Staged wraps a host communicator so that it also takes tensors on mv's device: a device
// tensor is copied to the host, the collective runs there, and the result is copied back
// (what gloo does with CUDA tensors). Host tensors pass straight through, and one-rank
// groups move nothing, so a single-GPU run pays no transfers. It lets a GPU model train
// over comm/tcp on any layout; comm/nccl is the fast path.
func Staged(c Comm, mv Mover) Comm {
	if c == nil {
		return nil
	}
	return &staged{c: c, mv: mv}
}

type staged struct {
	c  Comm
	mv Mover
}

func (s *staged) Rank() int { return s.c.Rank() }
func (s *staged) Size() int { return s.c.Size() }

// onDevice reports whether every tensor is on the mover's device (false when all are on
// the host) and fails for a mix or another device.
func (s *staged) onDevice(what string, ts ...*tensor.Tensor) (bool, error) {
	dev := 0
	for _, t := range ts {
		if t == nil {
			return false, fmt.Errorf("%s: tensor is nil", what)
		}
		switch t.Device {
		case s.mv.Device():
			dev++
		case tensor.Device{}:
		default:
			return false, fmt.Errorf("%s: %v is on neither the host nor %v", what, t, s.mv.Device())
		}
	}
	if dev != 0 && dev != len(ts) {
		return false, fmt.Errorf("%s: tensors mix the host and %v", what, s.mv.Device())
	}
	return dev > 0, nil
}

// toHost returns a host copy of device tensor t (with its values when load is set).
func (s *staged) toHost(t *tensor.Tensor, load bool) *tensor.Tensor {
	h := tensor.New(t.DType(), t.Shape()...)
	if load {
		s.mv.Download(h, t)
	}
	return h
}

func (s *staged) AllReduce(t *tensor.Tensor, op Op) error {
	dev, err := s.onDevice("AllReduce", t)
	if err != nil || !dev {
		if err != nil {
			return err
		}
		return s.c.AllReduce(t, op)
	}
	if s.c.Size() == 1 {
		return CheckOp(op, t.DType())
	}
	h := s.toHost(t, true)
	if err := s.c.AllReduce(h, op); err != nil {
		return err
	}
	s.mv.Upload(t, h)
	return nil
}

// ReduceScatter stages device tensors through host copies; in place (out is in's chunk
// on the device), it runs in place on one host copy of in, which saves the host out.
func (s *staged) ReduceScatter(out, in *tensor.Tensor, op Op) error {
	const what = "ReduceScatter"
	dev, err := s.onDevice(what, out, in)
	switch {
	case err != nil:
		return err
	case !dev:
		return s.c.ReduceScatter(out, in, op)
	}
	if err := sameKind(what, out, in, s.c.Size()); err != nil {
		return err
	}
	inPlace, err := InPlace(what, out, in, s.c.Rank())
	if err != nil {
		return err
	}
	if s.c.Size() == 1 {
		if !inPlace {
			s.mv.Copy(out, in.View(out.Shape()...))
		}
		return CheckOp(op, in.DType())
	}
	hi := s.toHost(in, true)
	ho := s.toHost(out, false)
	if inPlace {
		ho = chunkOf(hi, s.c.Rank(), out.Shape())
	}
	if err := s.c.ReduceScatter(ho, hi, op); err != nil {
		return err
	}
	s.mv.Upload(out, ho)
	return nil
}

// AllGather stages device tensors through host copies; in place (in is out's chunk on the
// device), it runs in place on one host copy of out, which saves the host in.
func (s *staged) AllGather(out, in *tensor.Tensor) error {
	const what = "AllGather"
	dev, err := s.onDevice(what, out, in)
	switch {
	case err != nil:
		return err
	case !dev:
		return s.c.AllGather(out, in)
	}
	if err := sameKind(what, in, out, s.c.Size()); err != nil {
		return err
	}
	inPlace, err := InPlace(what, in, out, s.c.Rank())
	if err != nil {
		return err
	}
	if s.c.Size() == 1 {
		if !inPlace {
			s.mv.Copy(out, in.View(out.Shape()...))
		}
		return nil
	}
	ho := s.toHost(out, false)
	var hi *tensor.Tensor
	if inPlace {
		hi = chunkOf(ho, s.c.Rank(), in.Shape())
		s.mv.Download(hi, in)
	} else {
		hi = s.toHost(in, true)
	}
	if err := s.c.AllGather(ho, hi); err != nil {
		return err
	}
	s.mv.Upload(out, ho)
	return nil
}

func (s *staged) Broadcast(t *tensor.Tensor, root int) error {
	dev, err := s.onDevice("Broadcast", t)
	if err != nil || !dev || s.c.Size() == 1 {
		if err != nil {
			return err
		}
		return s.c.Broadcast(t, root)
	}
	h := s.toHost(t, s.c.Rank() == root)
	if err := s.c.Broadcast(h, root); err != nil {
		return err
	}
	s.mv.Upload(t, h)
	return nil
}

func (s *staged) Send(t *tensor.Tensor, peer int) error {
	dev, err := s.onDevice("Send", t)
	if err != nil {
		return err
	}
	if dev {
		t = s.toHost(t, true)
	}
	return s.c.Send(t, peer)
}

func (s *staged) Recv(t *tensor.Tensor, peer int) error {
	dev, err := s.onDevice("Recv", t)
	if err != nil || !dev {
		if err != nil {
			return err
		}
		return s.c.Recv(t, peer)
	}
	h := s.toHost(t, false)
	if err := s.c.Recv(h, peer); err != nil {
		return err
	}
	s.mv.Upload(t, h)
	return nil
}

func (s *staged) Barrier() error { return s.c.Barrier() }
func (s *staged) Close() error   { return s.c.Close() }

func (s *staged) Split(color, key int) (Comm, error) {
	c, err := s.c.Split(color, key)
	if err != nil || c == nil {
		return nil, err
	}
	return Staged(c, s.mv), nil
}

// BatchP2P stages a batch whose operations are all on staged communicators: device
// tensors go through host copies, and the inner communicators run the batch.
func (s *staged) BatchP2P(ops []P2POp) (bool, error) {
	inner := make([]P2POp, len(ops))
	dev := make([]bool, len(ops))
	for i, o := range ops {
		x, ok := o.Comm.(*staged)
		if !ok {
			return false, nil
		}
		d, err := x.onDevice("BatchP2P", o.T)
		if err != nil {
			return true, err
		}
		inner[i], dev[i] = o, d
		inner[i].Comm = x.c
		if d {
			inner[i].T = x.toHost(o.T, o.Send)
		}
	}
	if err := BatchP2P(inner); err != nil {
		return true, err
	}
	for i, o := range ops {
		if dev[i] && !o.Send {
			o.Comm.(*staged).mv.Upload(o.T, inner[i].T)
		}
	}
	return true, nil
}
