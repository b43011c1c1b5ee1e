package comm_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestBatchP2P: a ring of three ranks, each sending to the next and receiving from the
// previous in one batch, over plain, staged (device tensors through a fake GPU) and hybrid
// communicators, the last routing device tensors to its device side.
func TestBatchP2P(t *testing.T) {
	const n = 3
	onRanks(t, n, 2, func(r int, w []comm.Comm, d *fakeDevice) error {
		var dn atomic.Int64
		staged := comm.Staged(w[1], d)
		hyb, err := comm.Hybrid(w[0], counting{staged, &dn}, gpu0)
		if err != nil {
			return err
		}
		next, prev := (r+1)%n, (r+n-1)%n
		ring := func(c comm.Comm, mk func(...float32) *tensor.Tensor, what string) error {
			got := mk(0, 0)
			err := comm.BatchP2P([]comm.P2POp{
				{Comm: c, T: mk(float32(r), 10), Peer: next, Send: true},
				{Comm: c, T: got, Peer: prev},
			})
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if v := values(got); v[0] != float32(prev) || v[1] != 10 {
				return fmt.Errorf("%s: rank %d received %v from rank %d", what, r, v, prev)
			}
			return nil
		}
		host := func(v ...float32) *tensor.Tensor { return tensor.FromF32(v, len(v)) }
		if err := ring(w[0], host, "tcp"); err != nil {
			return err
		}
		if err := ring(staged, d.tensor, "staged"); err != nil {
			return err
		}
		before := d.transfers.Load()
		if err := ring(hyb, d.tensor, "hybrid, device tensors"); err != nil {
			return err
		}
		if d.transfers.Load() == before {
			return fmt.Errorf("hybrid: device tensors did not go through the device side")
		}
		return ring(hyb, host, "hybrid, host tensors")
	})
}
