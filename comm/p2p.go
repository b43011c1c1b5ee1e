package comm

import "github.com/gomegatron/gomegatron/tensor"

// P2POp is one send or receive of a batch (BatchP2P).
type P2POp struct {
	Comm Comm
	T    *tensor.Tensor
	Peer int  // rank in Comm
	Send bool // false: receive into T
}

// Batcher is implemented by communicators whose point-to-point transfers must be posted
// together to make progress (NCCL: a send waits on the GPU for its receive, so ranks that
// all send before receiving deadlock; an NCCL group may span communicators). BatchP2P runs
// ops as one step; handled is false, with nothing done, when it cannot take them all.
type Batcher interface {
	BatchP2P(ops []P2POp) (handled bool, err error)
}

// BatchP2P posts sends and receives together, as torch.distributed.batch_isend_irecv and
// Megatron's pipeline schedules do: through the first operation's communicator when it is
// a Batcher that takes the batch, else every send and then every receive (right for
// communicators whose Send does not wait for the receiver, as comm/tcp).
func BatchP2P(ops []P2POp) error {
	if len(ops) == 0 {
		return nil
	}
	if b, ok := ops[0].Comm.(Batcher); ok {
		if handled, err := b.BatchP2P(ops); handled || err != nil {
			return err
		}
	}
	for _, o := range ops {
		if o.Send {
			if err := o.Comm.Send(o.T, o.Peer); err != nil {
				return err
			}
		}
	}
	for _, o := range ops {
		if !o.Send {
			if err := o.Comm.Recv(o.T, o.Peer); err != nil {
				return err
			}
		}
	}
	return nil
}
