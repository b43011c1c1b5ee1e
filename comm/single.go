package comm

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// single is the communicator of a one-rank world: every collective is a local copy.
type single struct{ closed bool }

// NewSingle returns a Comm of size 1, used when a process runs without a launcher. Every
// reduction over one rank is its input unchanged (bf16/f16 widen and round back exactly).
func NewSingle() Comm { return &single{} }

func (s *single) Rank() int { return 0 }
func (s *single) Size() int { return 1 }

func (s *single) check(what string, ts ...*tensor.Tensor) error {
	if s.closed {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	for _, t := range ts {
		if err := CheckTensor(what+": tensor", t); err != nil {
			return err
		}
	}
	return nil
}

func (s *single) AllReduce(t *tensor.Tensor, op Op) error {
	if err := s.check("AllReduce", t); err != nil {
		return err
	}
	return CheckOp(op, t.DType())
}

func (s *single) ReduceScatter(out, in *tensor.Tensor, op Op) error {
	if err := s.check("ReduceScatter", out, in); err != nil {
		return err
	}
	if err := sameKind("ReduceScatter", out, in, 1); err != nil {
		return err
	}
	if err := CheckOp(op, in.DType()); err != nil {
		return err
	}
	return s.copy("ReduceScatter", out, in, out, in)
}

func (s *single) AllGather(out, in *tensor.Tensor) error {
	if err := s.check("AllGather", out, in); err != nil {
		return err
	}
	if err := sameKind("AllGather", in, out, 1); err != nil {
		return err
	}
	return s.copy("AllGather", out, in, in, out)
}

// copy is a one-rank reduce-scatter or all-gather: out = in, nothing to do in place
// (chunk is out resp. in, whole the other).
func (s *single) copy(what string, out, in, chunk, whole *tensor.Tensor) error {
	inPlace, err := InPlace(what, chunk, whole, 0)
	if err != nil || inPlace {
		return err
	}
	copy(out.Data, in.Data)
	return nil
}

func (s *single) Broadcast(t *tensor.Tensor, root int) error {
	if err := s.check("Broadcast", t); err != nil {
		return err
	}
	if root != 0 {
		return fmt.Errorf("Broadcast: root %d out of range for a group of 1", root)
	}
	return nil
}

func (s *single) Send(t *tensor.Tensor, peer int) error {
	return fmt.Errorf("Send: peer %d: a group of 1 has no peers", peer)
}

func (s *single) Recv(t *tensor.Tensor, peer int) error {
	return fmt.Errorf("Recv: peer %d: a group of 1 has no peers", peer)
}

func (s *single) Barrier() error { return s.check("Barrier") }

func (s *single) Split(color, key int) (Comm, error) {
	if err := s.check("Split"); err != nil {
		return nil, err
	}
	if color < 0 {
		return nil, nil
	}
	return &single{}, nil
}

func (s *single) Close() error { s.closed = true; return nil }

// sameKind checks that big has n times small's elements and the same dtype.
func sameKind(what string, small, big *tensor.Tensor, n int) error {
	if small.DType() != big.DType() {
		return fmt.Errorf("%s: dtypes differ (%v and %v)", what, small.DType(), big.DType())
	}
	if big.Numel() != n*small.Numel() {
		return fmt.Errorf("%s: %v must have %d×%d = %d elements, has %d", what, big, n, small.Numel(), n*small.Numel(), big.Numel())
	}
	return nil
}

// CheckSizes is sameKind for backends: big must have n·small.Numel() elements of small's dtype.
func CheckSizes(what string, small, big *tensor.Tensor, n int) error {
	return sameKind(what, small, big, n)
}
