package nccl

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/kernels/cuda"
	"github.com/gomegatron/gomegatron/tensor"
)

// Store is what the unique-id exchange needs from the rendezvous store (comm/store.Client).
type Store interface {
	Set(key string, val []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
}

// Options configure a world communicator.
type Options struct {
	// Timeout bounds every operation, set-up included (default 30 min, as NCCL and
	// torch.distributed).
	Timeout time.Duration
	// Prefix namespaces the store key of the unique id (default "comm/nccl").
	Prefix string
	// Poll is the completion polling interval (default 20 µs).
	Poll time.Duration
}

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = 30 * time.Minute

// world is what a world communicator and every Comm split from it share.
type world struct {
	lib     *Library
	dev     *cuda.Device
	w       *cuda.Worker
	timeout time.Duration
	poll    time.Duration
	scratch uintptr // 256 bytes of device memory for Barrier

	mu     sync.Mutex
	err    error // sticky: set at the first failure, every later call returns it
	comms  []*Comm
	closed bool
}

// Comm is an NCCL communicator implementing comm.Comm on device tensors.
type Comm struct {
	wd         *world
	comm       uintptr // ncclComm_t
	rank, size int
	ev         cuda.StreamEvent
	isWorld    bool
}

var _ comm.Comm = (*Comm)(nil)

// New joins a world of size ranks as rank on GPU dev: rank 0 creates the NCCL unique id
// (128 bytes) and publishes it in st under <prefix>/id, the others read it, and all call
// ncclCommInitRank. ctx and the timeout bound the set-up; nothing hangs past them.
func New(ctx context.Context, lib *Library, dev *cuda.Device, rank, size int, st Store, o Options) (*Comm, error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("comm/nccl: rank %d out of range for world size %d", rank, size)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Prefix == "" {
		o.Prefix = "comm/nccl"
	}
	if o.Poll <= 0 {
		o.Poll = 20 * time.Microsecond
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var id [128]byte
	key := o.Prefix + "/id"
	switch {
	case rank == 0:
		if err := lib.check("ncclGetUniqueId", lib.ncclGetUniqueId.Status(addrOf(&id)), ""); err != nil {
			return nil, fmt.Errorf("comm/nccl: %w", err)
		}
		if size > 1 {
			if st == nil {
				return nil, fmt.Errorf("comm/nccl: rank 0 of %d: no store to publish the unique id", size)
			}
			if err := st.Set(key, id[:]); err != nil {
				return nil, fmt.Errorf("comm/nccl: publishing the unique id at %s: %w", key, err)
			}
		}
	default:
		if st == nil {
			return nil, fmt.Errorf("comm/nccl: rank %d of %d: no store to read the unique id", rank, size)
		}
		b, err := st.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("comm/nccl: rank %d waiting for the unique id at %s: %w", rank, key, err)
		}
		if len(b) != len(id) {
			return nil, fmt.Errorf("comm/nccl: unique id at %s has %d bytes, want 128", key, len(b))
		}
		copy(id[:], b)
	}
	w, err := dev.NewWorker()
	if err != nil {
		return nil, err
	}
	wd := &world{lib: lib, dev: dev, w: w, timeout: o.Timeout, poll: o.Poll}
	c := &Comm{wd: wd, rank: rank, size: size, isWorld: true}
	// ncclCommInitRank blocks until every rank has joined; it runs on the worker while this
	// goroutine waits with the deadline (a rank that never comes leaves the worker stuck,
	// but the caller gets its error).
	done := w.Async(func() error {
		code := lib.ncclCommInitRank.CallUniqueID(addrOf(&c.comm), uintptr(size), &id, uintptr(rank))
		runtime.KeepAlive(&id)
		return lib.check("ncclCommInitRank", code, fmt.Sprintf("rank %d of %d", rank, size))
	})
	select {
	case err := <-done:
		if err != nil {
			w.Close(true)
			return nil, fmt.Errorf("comm/nccl: %w", err)
		}
	case <-ctx.Done():
		w.Close(false)
		return nil, fmt.Errorf("comm/nccl: rank %d of %d: ncclCommInitRank did not complete: %w (%w)", rank, size, comm.ErrTimeout, ctx.Err())
	}
	err = w.Do(func() error {
		var err error
		if c.ev, err = dev.NewStreamEvent(); err != nil {
			return err
		}
		return nil
	})
	if err == nil {
		wd.scratch, err = dev.Alloc(256)
	}
	if err != nil {
		c.abort()
		w.Close(true)
		return nil, err
	}
	wd.comms = append(wd.comms, c)
	return c, nil
}

func (c *Comm) Rank() int { return c.rank }
func (c *Comm) Size() int { return c.size }

// fail records the first error of the world and aborts every communicator of it.
func (wd *world) fail(err error) error {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.err == nil {
		wd.err = err
		for _, c := range wd.comms {
			c.abort()
		}
	}
	return wd.err
}

func (wd *world) failed() error {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.closed {
		return comm.ErrClosed
	}
	return wd.err
}

// abort calls ncclCommAbort (safe from any thread, and while other calls are stuck).
func (c *Comm) abort() {
	if c.comm != 0 {
		c.wd.lib.ncclCommAbort.Status(c.comm)
		c.comm = 0
	}
}

// run enqueues an operation on the worker thread and, when wait is set, polls until the
// stream reaches it, failing (and aborting the world) on an NCCL asynchronous error or
// past the timeout.
func (c *Comm) run(what string, wait bool, enqueue func() error) error {
	wd := c.wd
	if err := wd.failed(); err != nil {
		return fmt.Errorf("comm/nccl %s: %w", what, err)
	}
	done := wd.w.Async(func() error {
		if err := enqueue(); err != nil {
			return err
		}
		if !wait {
			return c.asyncError(what)
		}
		if err := wd.dev.RecordStreamEvent(c.ev); err != nil {
			return err
		}
		deadline := time.Now().Add(wd.timeout)
		for {
			done, err := wd.dev.QueryStreamEvent(c.ev)
			if err != nil {
				return err
			}
			if err := c.asyncError(what); err != nil { // also after completion: it may be a peer's failure
				return err
			}
			if done {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not complete within %v: %w", what, wd.timeout, comm.ErrTimeout)
			}
			time.Sleep(wd.poll)
		}
	})
	// A call stuck inside NCCL (a collective whose peers never come) cannot poll: the
	// watchdog aborts the world, which makes NCCL return.
	timer := time.NewTimer(wd.timeout + time.Second)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		err = fmt.Errorf("%s blocked for %v: %w", what, wd.timeout, comm.ErrTimeout)
	}
	if err != nil {
		return fmt.Errorf("comm/nccl rank %d: %w", c.rank, wd.fail(err))
	}
	return nil
}

// asyncError checks ncclCommGetAsyncError.
func (c *Comm) asyncError(what string) error {
	var res int32
	if err := c.wd.lib.check("ncclCommGetAsyncError", c.wd.lib.ncclCommGetAsyncError.Status(c.comm, addrOf(&res)), what); err != nil {
		return err
	}
	if res != ncclSuccess && res != ncclInProgress {
		err := c.wd.lib.check(what, int(res), "asynchronous error")
		if msg := c.wd.lib.lastError(c.comm); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}

func (c *Comm) check(what string, ts ...*tensor.Tensor) error {
	for _, t := range ts {
		if err := CheckTensor(what, t, c.wd.dev.Index); err != nil {
			return err
		}
	}
	return nil
}

func (c *Comm) AllReduce(t *tensor.Tensor, op comm.Op) error {
	if err := c.check("AllReduce: tensor", t); err != nil {
		return err
	}
	if err := comm.CheckOp(op, t.DType()); err != nil {
		return fmt.Errorf("AllReduce: %w", err)
	}
	dt, _ := ncclType(t.DType())
	return c.run("ncclAllReduce", true, func() error {
		return c.wd.lib.check("ncclAllReduce", c.wd.lib.ncclAllReduce.Status(t.Ptr, t.Ptr, uintptr(t.Numel()), uintptr(dt), uintptr(ncclOp(op)), c.comm, c.wd.dev.Stream()), t.String())
	})
}

func (c *Comm) ReduceScatter(out, in *tensor.Tensor, op comm.Op) error {
	if err := c.check("ReduceScatter", out, in); err != nil {
		return err
	}
	if err := comm.CheckSizes("ReduceScatter", out, in, c.size); err != nil {
		return err
	}
	if err := comm.CheckOp(op, out.DType()); err != nil {
		return fmt.Errorf("ReduceScatter: %w", err)
	}
	// NCCL runs in place when recvbuff = sendbuff + rank·recvcount, which is comm.Comm's
	// in-place form: the pointers go as they are. Other overlaps are undefined in NCCL.
	if _, err := comm.InPlace("ReduceScatter", out, in, c.rank); err != nil {
		return err
	}
	dt, _ := ncclType(out.DType())
	return c.run("ncclReduceScatter", true, func() error {
		return c.wd.lib.check("ncclReduceScatter", c.wd.lib.ncclReduceScatter.Status(in.Ptr, out.Ptr, uintptr(out.Numel()), uintptr(dt), uintptr(ncclOp(op)), c.comm, c.wd.dev.Stream()), out.String())
	})
}

func (c *Comm) AllGather(out, in *tensor.Tensor) error {
	if err := c.check("AllGather", out, in); err != nil {
		return err
	}
	if err := comm.CheckSizes("AllGather", in, out, c.size); err != nil {
		return err
	}
	// In place (sendbuff = recvbuff + rank·sendcount) as in ReduceScatter.
	if _, err := comm.InPlace("AllGather", in, out, c.rank); err != nil {
		return err
	}
	dt, _ := ncclType(in.DType())
	return c.run("ncclAllGather", true, func() error {
		return c.wd.lib.check("ncclAllGather", c.wd.lib.ncclAllGather.Status(in.Ptr, out.Ptr, uintptr(in.Numel()), uintptr(dt), c.comm, c.wd.dev.Stream()), in.String())
	})
}

func (c *Comm) Broadcast(t *tensor.Tensor, root int) error {
	if err := c.check("Broadcast: tensor", t); err != nil {
		return err
	}
	if root < 0 || root >= c.size {
		return fmt.Errorf("Broadcast: root %d out of range for group size %d", root, c.size)
	}
	dt, _ := ncclType(t.DType())
	return c.run("ncclBroadcast", true, func() error {
		return c.wd.lib.check("ncclBroadcast", c.wd.lib.ncclBroadcast.Status(t.Ptr, t.Ptr, uintptr(t.Numel()), uintptr(dt), uintptr(root), c.comm, c.wd.dev.Stream()), t.String())
	})
}

func (c *Comm) peer(what string, p int) error {
	if p < 0 || p >= c.size || p == c.rank {
		return fmt.Errorf("%s: peer %d is not another rank of this group of %d (rank %d)", what, p, c.size, c.rank)
	}
	return nil
}

// Send enqueues t for peer and returns without waiting for the matching Recv.
func (c *Comm) Send(t *tensor.Tensor, peer int) error {
	if err := c.check("Send: tensor", t); err != nil {
		return err
	}
	if err := c.peer("Send", peer); err != nil {
		return err
	}
	dt, _ := ncclType(t.DType())
	return c.run("ncclSend", false, func() error {
		return c.wd.lib.check("ncclSend", c.wd.lib.ncclSend.Status(t.Ptr, uintptr(t.Numel()), uintptr(dt), uintptr(peer), c.comm, c.wd.dev.Stream()), t.String())
	})
}

// Recv receives into t and waits for it.
func (c *Comm) Recv(t *tensor.Tensor, peer int) error {
	if err := c.check("Recv: tensor", t); err != nil {
		return err
	}
	if err := c.peer("Recv", peer); err != nil {
		return err
	}
	dt, _ := ncclType(t.DType())
	return c.run("ncclRecv", true, func() error {
		return c.wd.lib.check("ncclRecv", c.wd.lib.ncclRecv.Status(t.Ptr, uintptr(t.Numel()), uintptr(dt), uintptr(peer), c.comm, c.wd.dev.Stream()), t.String())
	})
}

// P2P is one transfer of a SendRecv batch.
type P2P struct {
	T    *tensor.Tensor
	Peer int
	Send bool // false: receive into T
}

// SendRecv runs a batch of sends and receives as one NCCL group (ncclGroupStart/End), like
// torch.distributed.batch_isend_irecv, so pairs of ranks may exchange in any order and
// size; it waits for all of them.
func (c *Comm) SendRecv(ops ...P2P) error {
	on := make([]*Comm, len(ops))
	for i := range on {
		on[i] = c
	}
	return c.group(on, ops)
}

// BatchP2P runs a batch whose operations are all on communicators of this world as one
// NCCL group (comm.Batcher); groups may span communicators.
func (c *Comm) BatchP2P(ops []comm.P2POp) (bool, error) {
	on := make([]*Comm, len(ops))
	ps := make([]P2P, len(ops))
	for i, o := range ops {
		x, ok := o.Comm.(*Comm)
		if !ok || x.wd != c.wd {
			return false, nil
		}
		on[i], ps[i] = x, P2P{T: o.T, Peer: o.Peer, Send: o.Send}
	}
	return true, c.group(on, ps)
}

// group runs ops[i] on communicator on[i] (all of c's world: one device, one stream) as
// one NCCL group and waits for it.
func (c *Comm) group(on []*Comm, ops []P2P) error {
	for i, o := range ops {
		what := fmt.Sprintf("SendRecv[%d]", i)
		if err := on[i].check(what, o.T); err != nil {
			return err
		}
		if err := on[i].peer(what, o.Peer); err != nil {
			return err
		}
	}
	lib := c.wd.lib
	return c.run("ncclSend/ncclRecv group", true, func() error {
		if err := lib.check("ncclGroupStart", lib.ncclGroupStart.Status(), ""); err != nil {
			return err
		}
		var first error
		for i, o := range ops {
			dt, _ := ncclType(o.T.DType())
			f, name := lib.ncclRecv, "ncclRecv"
			if o.Send {
				f, name = lib.ncclSend, "ncclSend"
			}
			if err := lib.check(name, f.Status(o.T.Ptr, uintptr(o.T.Numel()), uintptr(dt), uintptr(o.Peer), on[i].comm, c.wd.dev.Stream()), o.T.String()); err != nil && first == nil {
				first = err
			}
		}
		return errors.Join(first, lib.check("ncclGroupEnd", lib.ncclGroupEnd.Status(), ""))
	})
}

// Barrier all-reduces one int32 of device scratch.
func (c *Comm) Barrier() error {
	return c.run("Barrier (ncclAllReduce)", true, func() error {
		return c.wd.lib.check("ncclAllReduce", c.wd.lib.ncclAllReduce.Status(c.wd.scratch, c.wd.scratch, 1, ncclInt32, ncclSum, c.comm, c.wd.dev.Stream()), "barrier")
	})
}

// Split is ncclCommSplit: ranks passing the same color form a communicator ordered by
// (key, parent rank); a negative color (NCCL_SPLIT_NOCOLOR) returns (nil, nil).
func (c *Comm) Split(color, key int) (comm.Comm, error) {
	nc := &Comm{wd: c.wd}
	col := color
	if col < 0 {
		col = -1 // NCCL_SPLIT_NOCOLOR
	}
	err := c.run("ncclCommSplit", false, func() error {
		code := c.wd.lib.ncclCommSplit.Status(c.comm, uintptr(int64(col)), uintptr(int64(key)), addrOf(&nc.comm), 0)
		if err := c.wd.lib.check("ncclCommSplit", code, fmt.Sprintf("color %d key %d", color, key)); err != nil {
			return err
		}
		if nc.comm == 0 {
			return nil
		}
		var n, r int32
		if err := c.wd.lib.check("ncclCommCount", c.wd.lib.ncclCommCount.Status(nc.comm, addrOf(&n)), ""); err != nil {
			return err
		}
		if err := c.wd.lib.check("ncclCommUserRank", c.wd.lib.ncclCommUserRank.Status(nc.comm, addrOf(&r)), ""); err != nil {
			return err
		}
		nc.size, nc.rank = int(n), int(r)
		var err error
		nc.ev, err = c.wd.dev.NewStreamEvent()
		return err
	})
	if err != nil || color < 0 || nc.comm == 0 {
		return nil, err
	}
	c.wd.mu.Lock()
	c.wd.comms = append(c.wd.comms, nc)
	c.wd.mu.Unlock()
	return nc, nil
}

// Close destroys the communicator; closing the world communicator destroys every Comm
// split from it and stops the worker thread.
func (c *Comm) Close() error {
	wd := c.wd
	if !c.isWorld {
		return wd.w.Do(func() error { return c.destroy() })
	}
	wd.mu.Lock()
	if wd.closed {
		wd.mu.Unlock()
		return nil
	}
	wd.closed = true
	failed := wd.err != nil
	comms := wd.comms
	wd.mu.Unlock()
	var errs []error
	if !failed {
		errs = append(errs, wd.w.Do(func() error {
			var errs []error
			for i := len(comms) - 1; i >= 0; i-- {
				errs = append(errs, comms[i].destroy())
			}
			return errors.Join(errs...)
		}))
	}
	if wd.scratch != 0 {
		errs = append(errs, wd.dev.Free(wd.scratch))
	}
	wd.w.Close(!failed)
	return errors.Join(errs...)
}

func (c *Comm) destroy() error {
	if c.comm == 0 {
		return nil
	}
	err := c.wd.lib.check("ncclCommDestroy", c.wd.lib.ncclCommDestroy.Status(c.comm), "")
	c.comm = 0
	if c.ev != 0 {
		c.wd.dev.DestroyStreamEvent(c.ev)
		c.ev = 0
	}
	return err
}

// Carries reports whether d is this communicator's GPU (comm.Carrier).
func (c *Comm) Carries(d tensor.Device) bool {
	return d == tensor.Device{Type: tensor.CUDA, Index: c.wd.dev.Index}
}
