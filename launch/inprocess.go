package launch

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/gomegatron/gomegatron/comm/store"
)

// RunInProcess runs a builtin command in this process as one rank of a process-level layout
// (a worker started by golaunch or torchrun, a Slurm task, an MPI rank): it exports the
// torchrun worker variables the platform implies, hosts the store on global rank 0 when no
// parent agent hosts one (keeping it up until every rank finished, up to 300 s), and runs
// main under RecordErrors. It returns the exit code.
func RunInProcess(l *Layout, getenv func(string) string, stderr io.Writer, main func() error) int {
	if l.AgentStore != "" && l.AgentStore != "torch" {
		return RecordErrors(main) // a golaunch worker: the environment is complete
	}
	token := JobToken(l, getenv)
	port := l.MasterPort
	if l.AgentStore == "torch" {
		port++ // torchrun's c10d store holds MASTER_PORT
	}
	storeAddr := net.JoinHostPort(l.MasterAddr, strconv.Itoa(port))
	var srv *store.Server
	if l.Rank == 0 {
		listen := net.JoinHostPort("", strconv.Itoa(port))
		if l.WorldSize == 1 {
			listen = net.JoinHostPort(l.MasterAddr, strconv.Itoa(port))
		}
		var err error
		if srv, err = store.Listen(listen, token); err != nil {
			fmt.Fprintf(stderr, "golaunch: error: hosting the rendezvous store on rank 0: %v\n", err)
			return 1
		}
		defer srv.Close()
	}
	env := WorkerEnv(l, l.LocalRank, 0, l.MasterPort, getenv(ErrorFileEnv), storeAddr, token,
		func(k string) bool { return getenv(k) != "" })
	for k, v := range env {
		if k == ErrorFileEnv && v == "" {
			continue
		}
		os.Setenv(k, v)
	}
	code := RecordErrors(main)
	if l.WorldSize > 1 {
		exitRendezvous(l, storeAddr, token, stderr)
	}
	return code
}

// exitRendezvous counts this rank out; rank 0 (the store's host) waits for every rank so the
// store outlives its users.
func exitRendezvous(l *Layout, addr, token string, stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	c, err := store.Dial(dctx, addr, token)
	if err != nil {
		return
	}
	defer c.Close()
	key := "golaunch/" + l.RunID + "/process-exit"
	n, err := c.Add(key+"/count", 1)
	if err != nil {
		return
	}
	if n == int64(l.WorldSize) {
		c.Set(key+"/done", []byte("1"))
	}
	if l.Rank == 0 {
		if err := c.Wait(ctx, key+"/done"); err != nil {
			fmt.Fprintf(stderr, "golaunch: warning: not every rank finished before the store closed: %v\n", err)
		}
	}
}
