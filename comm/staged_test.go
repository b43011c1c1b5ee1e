package comm_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/tensor"
)

// fakeDevice stands in for a GPU: its tensors keep their bytes in host memory but are
// labelled cuda:0, so host collectives refuse them and only staging can move them.
type fakeDevice struct{ transfers atomic.Int64 }

var gpu0 = tensor.Device{Type: tensor.CUDA}

func (d *fakeDevice) Device() tensor.Device { return gpu0 }

func (d *fakeDevice) tensor(vals ...float32) *tensor.Tensor {
	t := tensor.FromF32(vals, len(vals))
	t.Device = gpu0
	return t
}

func (d *fakeDevice) Upload(dst, src *tensor.Tensor) {
	if dst.Device != gpu0 || src.Device != (tensor.Device{}) {
		panic(fmt.Sprintf("Upload %v ← %v", dst, src))
	}
	d.transfers.Add(1)
	copy(dst.Data, src.Data)
}

func (d *fakeDevice) Download(dst, src *tensor.Tensor) {
	if src.Device != gpu0 || dst.Device != (tensor.Device{}) {
		panic(fmt.Sprintf("Download %v ← %v", dst, src))
	}
	d.transfers.Add(1)
	copy(dst.Data, src.Data)
}

func (d *fakeDevice) Copy(dst, src *tensor.Tensor) {
	if dst.Device != gpu0 || src.Device != gpu0 {
		panic(fmt.Sprintf("Copy %v ← %v", dst, src))
	}
	copy(dst.Data, src.Data)
}

func values(t *tensor.Tensor) []float32 {
	h := tensor.New(t.DType(), t.Shape()...)
	copy(h.Data, t.Data)
	return h.F32()
}

// TestStagedCollectives runs every collective on device tensors of three ranks through
// Staged over comm/tcp and checks the results, that one-rank groups transfer nothing, and
// that host tensors and bad mixes are handled.
func TestStagedCollectives(t *testing.T) {
	onRanks(t, 3, 1, func(r int, w []comm.Comm, d *fakeDevice) error {
		return stagedRank(t, comm.Staged(w[0], d), d)
	})
}

// onRanks runs body for each of n ranks in its own goroutine, with the rank's communicator
// in each of `worlds` fresh in-process comm/tcp worlds (closed afterwards) and a fake GPU,
// and requires every rank to succeed.
func onRanks(t *testing.T, n, worlds int, body func(r int, w []comm.Comm, d *fakeDevice) error) {
	ws := make([][]comm.Comm, worlds)
	for i := range ws {
		var err error
		ws[i], err = tcp.LocalWorld(context.Background(), n, tcp.Options{})
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]comm.Comm, worlds)
			for i := range ws {
				mine[i] = ws[i][r]
				defer ws[i][r].Close()
			}
			errs[r] = body(r, mine, &fakeDevice{})
		}()
	}
	wg.Wait()
	for r, err := range errs {
		assert.NoError(t, err, "rank %d", r)
	}
}

func stagedRank(t *testing.T, c comm.Comm, d *fakeDevice) error {
	r := float32(c.Rank())
	check := func(what string, got *tensor.Tensor, want ...float32) error {
		if v := values(got); fmt.Sprint(v) != fmt.Sprint(want) {
			return fmt.Errorf("rank %d %s: got %v, want %v", c.Rank(), what, v, want)
		}
		return nil
	}

	x := d.tensor(1+r, 10*r)
	if err := c.AllReduce(x, comm.Sum); err != nil {
		return err
	}
	if err := check("AllReduce", x, 6, 30); err != nil {
		return err
	}
	in := d.tensor(r, 2*r, 3*r, 4*r, 5*r, 6*r)
	out := d.tensor(0, 0)
	if err := c.ReduceScatter(out, in, comm.Sum); err != nil {
		return err
	}
	if err := check("ReduceScatter", out, 3*(2*r+1), 3*(2*r+2)); err != nil {
		return err
	}
	all := d.tensor(0, 0, 0)
	if err := c.AllGather(all, d.tensor(7*r)); err != nil {
		return err
	}
	if err := check("AllGather", all, 0, 7, 14); err != nil {
		return err
	}
	b := d.tensor(r + 5)
	if err := c.Broadcast(b, 2); err != nil {
		return err
	}
	if err := check("Broadcast", b, 7); err != nil {
		return err
	}
	// A ring of device tensors.
	next, prev := (c.Rank()+1)%3, (c.Rank()+2)%3
	if err := c.Send(d.tensor(100+r), next); err != nil {
		return err
	}
	got := d.tensor(0)
	if err := c.Recv(got, prev); err != nil {
		return err
	}
	if err := check("Recv", got, 100+float32(prev)); err != nil {
		return err
	}
	// Host tensors pass through untouched by the mover.
	h := tensor.FromF32([]float32{1}, 1)
	if err := c.AllReduce(h, comm.Max); err != nil {
		return err
	}
	// One-rank groups: collectives still give their results, with no transfers.
	solo, err := c.Split(c.Rank(), 0)
	if err != nil {
		return err
	}
	before := d.transfers.Load()
	y := d.tensor(3, 4)
	if err := solo.AllReduce(y, comm.Sum); err != nil {
		return err
	}
	rs := d.tensor(0, 0)
	if err := solo.ReduceScatter(rs, y, comm.Sum); err != nil {
		return err
	}
	ag := d.tensor(0, 0)
	if err := solo.AllGather(ag, y); err != nil {
		return err
	}
	if err := check("one-rank AllGather", ag, 3, 4); err != nil {
		return err
	}
	if err := check("one-rank ReduceScatter", rs, 3, 4); err != nil {
		return err
	}
	if n := d.transfers.Load() - before; n != 0 {
		return fmt.Errorf("one-rank group made %d host transfers", n)
	}
	if err := solo.ReduceScatter(h, y, comm.Sum); err == nil {
		return fmt.Errorf("a host/device mix was accepted")
	}
	other := tensor.FromF32([]float32{1}, 1)
	other.Device = tensor.Device{Type: tensor.CUDA, Index: 1}
	if err := c.AllReduce(other, comm.Sum); err == nil {
		return fmt.Errorf("a tensor on another GPU was accepted")
	}
	return c.Barrier()
}
