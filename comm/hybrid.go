package comm

import (
	"errors"
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// Carrier is implemented by communicators that take tensors on a device directly.
type Carrier interface {
	// Carries reports whether collectives accept tensors on d without staging.
	Carries(d tensor.Device) bool
}

// Carries reports whether c takes tensors on d directly (host tensors always).
func Carries(c Comm, d tensor.Device) bool {
	if d.Type == tensor.CPU {
		return true
	}
	cc, ok := c.(Carrier)
	return ok && cc.Carries(d)
}

func (s *staged) Carries(d tensor.Device) bool { return d == s.mv.Device() || Carries(s.c, d) }

// Hybrid routes each operation by where its tensors live: host tensors to host (comm/tcp),
// tensors on device to dev (comm/nccl), as PyTorch jobs keep a gloo group beside their NCCL
// one. Both communicators must span the same ranks in the same order. Split splits both;
// Barrier runs on the host communicator; Close closes both.
func Hybrid(host, dev Comm, device tensor.Device) (Comm, error) {
	if host.Size() != dev.Size() || host.Rank() != dev.Rank() {
		return nil, fmt.Errorf("comm.Hybrid: host communicator is rank %d of %d, device one rank %d of %d",
			host.Rank(), host.Size(), dev.Rank(), dev.Size())
	}
	return &hybrid{host: host, dev: dev, device: device}, nil
}

type hybrid struct {
	host, dev Comm
	device    tensor.Device
}

func (h *hybrid) Rank() int                    { return h.host.Rank() }
func (h *hybrid) Size() int                    { return h.host.Size() }
func (h *hybrid) Carries(d tensor.Device) bool { return d == h.device || Carries(h.host, d) }
func (h *hybrid) Barrier() error               { return h.host.Barrier() }
func (h *hybrid) Close() error                 { return errors.Join(h.dev.Close(), h.host.Close()) }

// route picks the communicator for tensors that must all live in one place.
func (h *hybrid) route(what string, ts ...*tensor.Tensor) (Comm, error) {
	onDev := 0
	for _, t := range ts {
		if t == nil {
			return nil, fmt.Errorf("%s: tensor is nil", what)
		}
		if t.Device == h.device {
			onDev++
		} else if t.Device.Type != tensor.CPU {
			return nil, fmt.Errorf("%s: %v is on neither the host nor %v", what, t, h.device)
		}
	}
	switch onDev {
	case 0:
		return h.host, nil
	case len(ts):
		return h.dev, nil
	}
	return nil, fmt.Errorf("%s: tensors mix the host and %v", what, h.device)
}

func (h *hybrid) AllReduce(t *tensor.Tensor, op Op) error {
	c, err := h.route("AllReduce", t)
	if err != nil {
		return err
	}
	return c.AllReduce(t, op)
}

func (h *hybrid) ReduceScatter(out, in *tensor.Tensor, op Op) error {
	c, err := h.route("ReduceScatter", out, in)
	if err != nil {
		return err
	}
	return c.ReduceScatter(out, in, op)
}

func (h *hybrid) AllGather(out, in *tensor.Tensor) error {
	c, err := h.route("AllGather", out, in)
	if err != nil {
		return err
	}
	return c.AllGather(out, in)
}

func (h *hybrid) Broadcast(t *tensor.Tensor, root int) error {
	c, err := h.route("Broadcast", t)
	if err != nil {
		return err
	}
	return c.Broadcast(t, root)
}

func (h *hybrid) Send(t *tensor.Tensor, peer int) error {
	c, err := h.route("Send", t)
	if err != nil {
		return err
	}
	return c.Send(t, peer)
}

func (h *hybrid) Recv(t *tensor.Tensor, peer int) error {
	c, err := h.route("Recv", t)
	if err != nil {
		return err
	}
	return c.Recv(t, peer)
}

func (h *hybrid) Split(color, key int) (Comm, error) {
	hc, err := h.host.Split(color, key)
	if err != nil {
		return nil, err
	}
	dc, err := h.dev.Split(color, key)
	if err != nil || hc == nil || dc == nil {
		if hc != nil {
			hc.Close()
		}
		if dc != nil {
			dc.Close()
		}
		return nil, err
	}
	return Hybrid(hc, dc, h.device)
}

// BatchP2P routes a batch whose operations are all on hybrid communicators to the device
// or the host ones, by where its tensors live.
func (h *hybrid) BatchP2P(ops []P2POp) (bool, error) {
	routed := make([]P2POp, len(ops))
	onDev := 0
	for i, o := range ops {
		x, ok := o.Comm.(*hybrid)
		if !ok {
			return false, nil
		}
		c, err := x.route("BatchP2P", o.T)
		if err != nil {
			return true, err
		}
		if c == x.dev {
			onDev++
		}
		routed[i] = o
		routed[i].Comm = c
	}
	if onDev != 0 && onDev != len(ops) {
		return false, nil // host and device transfers: nothing to group
	}
	return true, BatchP2P(routed)
}
