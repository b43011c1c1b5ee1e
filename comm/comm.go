// Package comm defines the collective-communication interface every backend implements
// (comm/tcp on CPUs, comm/nccl on GPUs) and Megatron's parallel state built on top of it:
// the tensor-, context-, data- and pipeline-parallel groups in Megatron's rank order.
//
// Import direction: backends import comm (they implement comm.Comm), so comm cannot import
// them. Initialising from the launcher's environment therefore lives in the backend:
// tcp.InitFromEnv(ctx, opts) joins the rendezvous store named by GOMEGATRON_STORE_ADDR, or
// returns NewSingle() when the process was started without a launcher (world size 1).
package comm

import (
	"errors"
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

// Op is a reduction operator.
type Op uint8

const (
	Sum Op = iota
	Max
	Min
	// Avg is Sum divided by the group size. Floating-point types only: the sum is formed in
	// float32 (or float64 for F64) in rank order and then divided by float(n), so
	// avg = fl(fl(Σ x_r) / n), the same on every rank.
	Avg
)

func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Max:
		return "max"
	case Min:
		return "min"
	case Avg:
		return "avg"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Comm is a group of ranks that run collectives together. Collectives are called by every
// rank of the group in the same order; one Comm is used by one goroutine at a time (different
// Comms, e.g. the TP and DP groups, may be used concurrently). Tensors are host tensors of
// dtype F32, F64, BF16, F16, I32, I64 or U8.
//
// Reductions are deterministic: element i of the result is the left fold
// ((x_0 ⊕ x_1) ⊕ x_2) ⊕ … ⊕ x_{n-1} over the group's ranks in rank order, the same bits on
// every rank whatever algorithm the message size selects. BF16 and F16 are widened to f32,
// folded in f32 and rounded back once (nearest even) at the end; integers wrap on overflow.
//
// Every call returns an error instead of hanging: an operation that does not complete within
// the backend's timeout fails, and when a peer process dies every rank gets an error naming
// the dead peer's rank. After such an error the communicator (and every Comm split from it)
// is unusable, as with an aborted NCCL communicator.
type Comm interface {
	// Rank is this process's rank in the group, 0 ≤ Rank() < Size().
	Rank() int
	// Size is the number of ranks in the group.
	Size() int
	// AllReduce replaces t on every rank with the reduction of t over the group.
	AllReduce(t *tensor.Tensor, op Op) error
	// ReduceScatter reduces in (Size()·out.Numel() elements) over the group and leaves
	// chunk r (elements [r·m, (r+1)·m), m = out.Numel()) in out on rank r. It may run in
	// place, as NCCL's: out may be exactly in's chunk r (same storage, offset r·m elements;
	// in's other chunks are only read, as always). The distributed optimizer reduces each
	// grad bucket this way. Any other overlap of out and in is an error (see InPlace).
	ReduceScatter(out, in *tensor.Tensor, op Op) error
	// AllGather concatenates every rank's in (rank order) into out, which has Size()·in.Numel()
	// elements. It may run in place, as NCCL's: in may be exactly out's chunk r on rank r
	// (same storage, offset r·in.Numel() elements; the distributed optimizer gathers each
	// param bucket this way). Any other overlap of out and in is an error (see InPlace).
	AllGather(out, in *tensor.Tensor) error
	// Broadcast copies root's t into t on every rank.
	Broadcast(t *tensor.Tensor, root int) error
	// Send sends t to peer; it returns once the data is handed to the transport and does not
	// wait for the matching Recv (so a pair of ranks may both Send first).
	Send(t *tensor.Tensor, peer int) error
	// Recv receives into t the next tensor peer Sent on this Comm; sizes must match.
	Recv(t *tensor.Tensor, peer int) error
	// Barrier returns once every rank of the group has entered it.
	Barrier() error
	// Split is MPI_Comm_split: a collective over this Comm that groups the ranks passing the
	// same color, ordered by (key, parent rank). A negative color returns (nil, nil): the
	// rank belongs to no new group. The new Comm shares the parent's transport.
	Split(color, key int) (Comm, error)
	// Close releases the communicator. Closing a world communicator closes its transport
	// and with it every Comm split from it.
	Close() error
}

// ErrTimeout is wrapped by errors of operations that ran past their timeout.
var ErrTimeout = errors.New("comm: operation timed out")

// ErrClosed is wrapped by errors of operations on a closed communicator.
var ErrClosed = errors.New("comm: communicator closed")

// PeerError reports that a peer process died or closed its connection during an operation.
type PeerError struct {
	Rank int   // the peer's rank in the world communicator
	Err  error // the transport error (EOF, connection reset, …)
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("comm: peer rank %d failed: %v", e.Rank, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// SupportedDType reports whether collectives accept tensors of dtype d.
func SupportedDType(d tensor.DType) bool {
	switch d {
	case tensor.F32, tensor.F64, tensor.BF16, tensor.F16, tensor.I32, tensor.I64, tensor.U8:
		return true
	}
	return false
}

// CheckTensor returns an error naming what (e.g. "AllReduce: tensor") when t cannot take part
// in a collective: nil, on a device, or of an unsupported dtype.
func CheckTensor(what string, t *tensor.Tensor) error {
	switch {
	case t == nil:
		return fmt.Errorf("%s is nil", what)
	case t.Device.Type != tensor.CPU:
		return fmt.Errorf("%s %v is not a host tensor", what, t)
	case !SupportedDType(t.DType()):
		return fmt.Errorf("%s: dtype %v is not supported by collectives (f32, f64, bf16, f16, int32, int64, uint8)", what, t.DType())
	case len(t.Data) != t.Bytes():
		return fmt.Errorf("%s %v has %d bytes of storage, want %d", what, t, len(t.Data), t.Bytes())
	}
	return nil
}

// CheckOp returns an error when op cannot reduce dtype d (Avg is float-only).
func CheckOp(op Op, d tensor.DType) error {
	if op > Avg {
		return fmt.Errorf("unknown reduction %v", op)
	}
	if op == Avg && !d.IsFloat() {
		return fmt.Errorf("reduction avg is not defined for %v tensors", d)
	}
	return nil
}
