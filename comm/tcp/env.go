package tcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/store"
)

// InitFromEnv joins the world described by the launcher's environment (golaunch sets it;
// it is torchrun's contract plus the store and token):
//
//	RANK, WORLD_SIZE                 this process's rank and the world size
//	GOMEGATRON_STORE_ADDR            host:port of the rendezvous store
//	GOMEGATRON_JOB_TOKEN             the job token (store and peer connections)
//	TORCHELASTIC_RESTART_COUNT       namespaces the store keys per restart
//	GOMEGATRON_COMM_TIMEOUT          per-operation timeout: a Go duration ("90s") or seconds
//
// Without WORLD_SIZE (or with WORLD_SIZE=1) it returns comm.NewSingle(). Fields set in o win
// over the environment. It lives here rather than in package comm because comm cannot
// import its backends (they import comm).
func InitFromEnv(ctx context.Context, o Options) (comm.Comm, error) {
	ws := os.Getenv("WORLD_SIZE")
	if ws == "" || ws == "1" {
		return comm.NewSingle(), nil
	}
	size, err := strconv.Atoi(ws)
	if err != nil || size < 1 {
		return nil, fmt.Errorf("comm: WORLD_SIZE=%q is not a positive integer", ws)
	}
	rank, err := strconv.Atoi(os.Getenv("RANK"))
	if err != nil || rank < 0 || rank >= size {
		return nil, fmt.Errorf("comm: RANK=%q is not a rank of a world of size %d", os.Getenv("RANK"), size)
	}
	addr := os.Getenv("GOMEGATRON_STORE_ADDR")
	if addr == "" {
		return nil, fmt.Errorf("comm: WORLD_SIZE=%d but GOMEGATRON_STORE_ADDR is not set (start workers with golaunch)", size)
	}
	if o.Token == "" {
		o.Token = os.Getenv("GOMEGATRON_JOB_TOKEN")
	}
	if o.StoreAddr == "" {
		o.StoreAddr = addr
	}
	if o.Timeout == 0 {
		if v := os.Getenv("GOMEGATRON_COMM_TIMEOUT"); v != "" {
			d, err := parseTimeout(v)
			if err != nil {
				return nil, fmt.Errorf("comm: GOMEGATRON_COMM_TIMEOUT=%q: %w", v, err)
			}
			o.Timeout = d
		}
	}
	if o.Prefix == "" {
		o.Prefix = "comm/tcp/restart" + os.Getenv("TORCHELASTIC_RESTART_COUNT")
	}
	o.defaults()
	cctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	st, err := store.Dial(cctx, addr, o.Token)
	if err != nil {
		return nil, fmt.Errorf("comm: rank %d: joining the store at %s (GOMEGATRON_STORE_ADDR): %w", rank, addr, err)
	}
	c, err := New(cctx, rank, size, st, o)
	// The store is only needed to exchange addresses.
	st.Close()
	return c, err
}

func parseTimeout(v string) (time.Duration, error) {
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0, fmt.Errorf("must be positive")
		}
		return time.Duration(s * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err == nil && d <= 0 {
		err = fmt.Errorf("must be positive")
	}
	return d, err
}

// LocalWorld starts an in-process world of n ranks over loopback TCP (a private store and a
// random token), for tests of code that needs communicators: use comms[r] from goroutine r.
// Close every Comm when done.
func LocalWorld(ctx context.Context, n int, o Options) ([]comm.Comm, error) {
	var tok [16]byte
	rand.Read(tok[:])
	if o.Token == "" {
		o.Token = hex.EncodeToString(tok[:])
	}
	srv, err := store.Listen("127.0.0.1:0", o.Token)
	if err != nil {
		return nil, fmt.Errorf("comm/tcp: local store: %w", err)
	}
	defer srv.Close()
	o.StoreAddr = srv.Addr()
	comms := make([]comm.Comm, n)
	errs := make(chan error, n)
	for r := range n {
		go func() {
			st, err := store.Dial(ctx, srv.Addr(), o.Token)
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			comms[r], err = New(ctx, r, n, st, o)
			errs <- err
		}()
	}
	var msgs []string
	for range n {
		if err := <-errs; err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if msgs != nil {
		for _, c := range comms {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("comm/tcp: local world of %d: %s", n, strings.Join(msgs, "; "))
	}
	return comms, nil
}
