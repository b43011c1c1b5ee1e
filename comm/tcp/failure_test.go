package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/store"
	"github.com/gomegatron/gomegatron/tensor"
)

// die closes a rank's connections the way a killed process's would close: no goodbye frame.
func die(c comm.Comm) {
	c.(*group).t.abort(errors.New("killed"), false)
}

// TestTimeout: rank 0 enters an all-reduce that rank 1 never joins. Rank 0 fails after its
// timeout with ErrTimeout naming rank 1; rank 1 then fails on its next call naming rank 0.
func TestTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var elapsed time.Duration
	errs := world(t, 2, Options{Timeout: timeout}, func(c comm.Comm) error {
		if c.Rank() == 0 {
			start := time.Now()
			err := c.AllReduce(tensor.New(tensor.F32, 1000), comm.Sum)
			elapsed = time.Since(start)
			return err
		}
		time.Sleep(3 * timeout)
		return c.Barrier()
	})
	require.Error(t, errs[0])
	assert.ErrorIs(t, errs[0], comm.ErrTimeout)
	assert.Contains(t, errs[0].Error(), "waiting for rank 1")
	assert.Less(t, elapsed, 10*timeout)
	var pe *comm.PeerError
	require.ErrorAs(t, errs[1], &pe)
	assert.Equal(t, 0, pe.Rank)
}

// TestDeadPeer: rank 2 dies while the others are inside collectives of every size and kind;
// every survivor fails fast (well within the 1-minute timeout) with a PeerError naming rank 2.
func TestDeadPeer(t *testing.T) {
	ops := map[string]func(c comm.Comm) error{
		"all-reduce small": func(c comm.Comm) error { return c.AllReduce(tensor.New(tensor.F32, 10), comm.Sum) },
		"all-reduce large": func(c comm.Comm) error { return c.AllReduce(tensor.New(tensor.BF16, 1<<21), comm.Sum) },
		"broadcast large":  func(c comm.Comm) error { return c.Broadcast(tensor.New(tensor.F32, 1<<20), 2) },
		"all-gather": func(c comm.Comm) error {
			return c.AllGather(tensor.New(tensor.F32, 4<<18), tensor.New(tensor.F32, 1<<18))
		},
		"recv": func(c comm.Comm) error { return c.Recv(tensor.New(tensor.F32, 3), 2) },
		"subgroup without the dead rank": func(c comm.Comm) error {
			// 0, 1, 3 first finish a split among themselves; the dead rank's loss still
			// aborts them (as NCCL's communicator abort), with its rank in the error.
			sub, err := c.Split(0, c.Rank())
			if err != nil {
				return err
			}
			for {
				if err := sub.AllReduce(tensor.New(tensor.F32, 100), comm.Sum); err != nil {
					return err
				}
			}
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var slowest time.Duration
			errs := world(t, 4, Options{Timeout: time.Minute}, func(c comm.Comm) error {
				if c.Rank() == 2 {
					if name == "subgroup without the dead rank" {
						if _, err := c.Split(-1, 0); err != nil {
							return err
						}
					}
					time.Sleep(100 * time.Millisecond)
					die(c)
					return nil
				}
				start := time.Now()
				err := op(c)
				mu.Lock()
				slowest = max(slowest, time.Since(start))
				mu.Unlock()
				return err
			})
			for _, r := range []int{0, 1, 3} {
				var pe *comm.PeerError
				require.ErrorAs(t, errs[r], &pe, "rank %d", r)
				assert.Equal(t, 2, pe.Rank, "rank %d: %v", r, errs[r])
				assert.Contains(t, errs[r].Error(), "peer rank 2 failed")
			}
			assert.Less(t, slowest, 5*time.Second)
		})
	}
}

// TestMismatchedSizes: ranks passing different sizes get an error, not a hang or garbage.
func TestMismatchedSizes(t *testing.T) {
	errs := world(t, 2, Options{Timeout: 5 * time.Second}, func(c comm.Comm) error {
		return c.AllReduce(tensor.New(tensor.F32, 10*(c.Rank()+1)), comm.Sum)
	})
	for r, err := range errs {
		require.Error(t, err, "rank %d", r)
		assert.NotErrorIs(t, err, comm.ErrTimeout)
	}
	assert.Contains(t, errs[0].Error()+errs[1].Error(), "different collectives or passed different sizes")
}

// TestCleanClose: a rank that closes its communicator says goodbye, so the others keep
// working among themselves; receiving from the closed rank fails, naming it.
func TestCleanClose(t *testing.T) {
	errs := world(t, 3, Options{Timeout: 5 * time.Second}, func(c comm.Comm) error {
		color := 1
		if c.Rank() == 0 {
			color = -1
		}
		sub, err := c.Split(color, 0)
		if err != nil {
			return err
		}
		if c.Rank() == 0 {
			return c.Close()
		}
		time.Sleep(200 * time.Millisecond) // rank 0 is gone by now
		for range 10 {
			if err := sub.AllReduce(tensor.New(tensor.F32, 100000), comm.Sum); err != nil {
				return err
			}
		}
		err = c.Recv(tensor.New(tensor.F32, 1), 0)
		if err == nil || !errors.Is(err, comm.ErrClosed) {
			return fmt.Errorf("Recv from a closed rank: got %v, want ErrClosed", err)
		}
		return nil
	})
	noErrors(t, errs)
}

// TestWrongToken: a rank presenting another job's token is refused by its peers.
func TestWrongToken(t *testing.T) {
	srv, err := store.Listen("127.0.0.1:0", "store-token")
	require.NoError(t, err)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := store.Dial(ctx, srv.Addr(), "store-token")
			if err != nil {
				errs[r] = err
				return
			}
			defer st.Close()
			tok := "job-A"
			if r == 1 {
				tok = "job-B"
			}
			c, err := New(ctx, r, 2, st, Options{Token: tok, StoreAddr: srv.Addr(), ConnectTimeout: time.Second})
			if err == nil {
				c.Close()
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	require.Error(t, errs[1])
	assert.Contains(t, errs[1].Error(), "wrong job token")
	require.Error(t, errs[0])
	assert.Contains(t, errs[0].Error(), "ranks [1] never connected")
}

// TestNonLoopbackInterface: with the store on a non-loopback address the ranks listen and
// connect on that interface, so the mesh works across machines.
func TestNonLoopbackInterface(t *testing.T) {
	var ip string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			ip = n.IP.String()
			break
		}
	}
	if ip == "" {
		t.Skip("no non-loopback IPv4 interface")
	}
	srv, err := store.Listen(net.JoinHostPort(ip, "0"), "tok")
	require.NoError(t, err)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	comms := make([]comm.Comm, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := store.Dial(ctx, srv.Addr(), "tok")
			if err != nil {
				errs[r] = err
				return
			}
			defer st.Close()
			// TCPOnly: this checks the route other machines use (same-host ranks would
			// otherwise take Unix sockets).
			comms[r], errs[r] = New(ctx, r, 3, st, Options{Token: "tok", StoreAddr: srv.Addr(), TCPOnly: true})
			if errs[r] == nil {
				errs[r] = comms[r].AllReduce(tensor.New(tensor.F32, 5), comm.Sum)
			}
		}()
	}
	wg.Wait()
	noErrors(t, errs)
	for _, c := range comms {
		for _, p := range c.(*group).t.peers {
			if p != nil {
				host, _, _ := net.SplitHostPort(p.conn.RemoteAddr().String())
				assert.Equal(t, ip, host)
			}
		}
		c.Close()
	}
}

// TestSameHostUsesUnixSockets: ranks on one host connect over Unix sockets by default and
// over TCP with TCPOnly, with the same results.
func TestSameHostUsesUnixSockets(t *testing.T) {
	if hostIdentity() == "" {
		t.Skip("no host identity (/proc) here: only TCP is used")
	}
	var results [2][]float32
	for i, tcpOnly := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		comms, err := LocalWorld(ctx, 3, Options{TCPOnly: tcpOnly})
		cancel()
		require.NoError(t, err)
		for _, c := range comms {
			for _, p := range c.(*group).t.peers {
				if p != nil {
					_, isUnix := p.conn.(*net.UnixConn)
					assert.Equal(t, !tcpOnly, isUnix, "TCPOnly=%v", tcpOnly)
				}
			}
		}
		var wg sync.WaitGroup
		outs := make([]*tensor.Tensor, 3)
		for r, c := range comms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := tensor.New(tensor.F32, 300000)
				for j, v := 0, x.F32(); j < len(v); j++ {
					v[j] = float32((r+1)*j%7) * 0.25
				}
				assert.NoError(t, c.AllReduce(x, comm.Sum))
				outs[r] = x
			}()
		}
		wg.Wait()
		for j, v := range outs[0].F32() {
			require.Equal(t, float32(1*j%7)*0.25+float32(2*j%7)*0.25+float32(3*j%7)*0.25, v, "element %d", j)
		}
		results[i] = outs[0].F32()
		for _, c := range comms {
			c.Close()
		}
	}
	require.Equal(t, results[0], results[1])
}
