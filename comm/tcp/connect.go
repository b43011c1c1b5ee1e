package tcp

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Store is what the backend needs from the rendezvous store (*store.Client satisfies it):
// each rank publishes its listening address and reads the others'.
type Store interface {
	Set(key string, val []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
}

// handshake: the dialing (higher) rank sends
//
//	magic "GMTC" | version u32 | rank u32 | size u32 | token length u32 | token
//
// and the accepting rank answers one byte, 1 (accepted) or 0 followed by a u32-prefixed reason.
const (
	magic   = "GMTC"
	version = 1
)

// localHost returns the local IP address of the interface that routes to addr (host:port):
// that is the address the other ranks, who reach the store through addr, can reach us on.
// A loopback store means a one-machine job, so loopback is used.
func localHost(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("store address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return "127.0.0.1", nil
	}
	c, err := net.Dial("udp", addr) // no packet is sent: this only asks the kernel for the route
	if err != nil {
		return "", fmt.Errorf("finding the interface that reaches %s: %w", addr, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// connect builds the full mesh: rank r listens, publishes host:port under <prefix>/addr/<r>,
// dials every lower rank and accepts every higher one.
func (t *transport) connect(ctx context.Context, st Store, o *Options) error {
	host := o.Host
	if host == "" {
		if o.StoreAddr == "" {
			host = "127.0.0.1"
		} else {
			h, err := localHost(o.StoreAddr)
			if err != nil {
				return err
			}
			host = h
		}
	}
	tcpLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("rank %d: listening on %s: %w", t.rank, host, err)
	}
	addrKey := func(r int) string { return o.Prefix + "/addr/" + strconv.Itoa(r) }
	// The local (Unix) address goes first: a dialer that has read the TCP key finds it.
	ident, local := "", []byte{}
	var ln net.Listener = tcpLn
	if !o.TCPOnly {
		if ident = hostIdentity(); ident != "" {
			if uln := listenLocal(); uln != nil {
				ln = mergeListeners(tcpLn, uln)
				local = []byte(ident + "\n" + uln.Addr().String())
			}
		}
	}
	defer ln.Close()
	if err := st.Set(addrKey(t.rank)+"/local", local); err != nil {
		return fmt.Errorf("rank %d: publishing its local address: %w", t.rank, err)
	}
	if err := st.Set(addrKey(t.rank), []byte(tcpLn.Addr().String())); err != nil {
		return fmt.Errorf("rank %d: publishing address %s: %w", t.rank, tcpLn.Addr(), err)
	}

	var wg sync.WaitGroup
	errs := make([]error, t.size)
	conns := make([]net.Conn, t.size)
	for r := 0; r < t.rank; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[r], errs[r] = t.dial(ctx, st, addrKey(r), r, o.Token, ident)
		}()
	}
	accepted := make(chan error, 1)
	go func() { accepted <- t.accept(ctx, ln, conns, o.Token) }()
	wg.Wait()
	errAccept := <-accepted
	if err := errors.Join(append(errs, errAccept)...); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return fmt.Errorf("rank %d: connecting to the other ranks: %w", t.rank, err)
	}
	for r, c := range conns {
		if r != t.rank {
			t.addPeer(r, c)
		}
	}
	return nil
}

func (t *transport) dial(ctx context.Context, st Store, key string, r int, token, ident string) (net.Conn, error) {
	addr, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading rank %d's address (%s): %w", r, key, err)
	}
	var d net.Dialer
	if local, err := st.Get(ctx, key+"/local"); err == nil && ident != "" {
		if id, uaddr, ok := strings.Cut(string(local), "\n"); ok && id == ident {
			if c, err := d.DialContext(ctx, "unix", uaddr); err == nil {
				if err := t.hello(ctx, c, token); err == nil {
					return c, nil
				}
				c.Close() // refused on the local socket: TCP reports why
			}
		}
	}
	for {
		c, err := d.DialContext(ctx, "tcp", string(addr))
		if err == nil {
			err = t.hello(ctx, c, token)
			if err == nil {
				return c, nil
			}
			c.Close()
			return nil, fmt.Errorf("rank %d at %s: %w", r, addr, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dialing rank %d at %s: %w", r, addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (t *transport) hello(ctx context.Context, c net.Conn, token string) error {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
		defer c.SetDeadline(time.Time{})
	}
	msg := []byte(magic)
	msg = binary.LittleEndian.AppendUint32(msg, version)
	msg = binary.LittleEndian.AppendUint32(msg, uint32(t.rank))
	msg = binary.LittleEndian.AppendUint32(msg, uint32(t.size))
	msg = binary.LittleEndian.AppendUint32(msg, uint32(len(token)))
	msg = append(msg, token...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	var ok [1]byte
	if _, err := io.ReadFull(c, ok[:]); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if ok[0] != 1 {
		var n [4]byte
		io.ReadFull(c, n[:])
		reason := make([]byte, min(binary.LittleEndian.Uint32(n[:]), 1024))
		io.ReadFull(c, reason)
		return fmt.Errorf("connection refused: %s", reason)
	}
	return nil
}

// accept takes connections until every higher rank has joined. Connections that fail the
// handshake (wrong token, wrong world size, duplicate rank) are refused and do not count.
func (t *transport) accept(ctx context.Context, ln net.Listener, conns []net.Conn, token string) error {
	want := t.size - 1 - t.rank
	if want == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for want > 0 {
		c, err := ln.Accept()
		if err != nil {
			var missing []int
			for r := t.rank + 1; r < t.size; r++ {
				if conns[r] == nil {
					missing = append(missing, r)
				}
			}
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("ranks %v never connected: %w", missing, err)
		}
		r, err := t.check(ctx, c, token)
		if err == nil && conns[r] != nil {
			err = fmt.Errorf("rank %d connected twice", r)
		}
		if err != nil {
			reason := []byte(err.Error())
			c.Write(append(binary.LittleEndian.AppendUint32([]byte{0}, uint32(len(reason))), reason...))
			c.Close()
			continue
		}
		if _, err := c.Write([]byte{1}); err != nil {
			c.Close()
			continue
		}
		conns[r] = c
		want--
	}
	return nil
}

func (t *transport) check(ctx context.Context, c net.Conn, token string) (int, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	var h [20]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0, fmt.Errorf("handshake: %w", err)
	}
	if string(h[:4]) != magic || binary.LittleEndian.Uint32(h[4:]) != version {
		return 0, errors.New("not a gomegatron comm/tcp peer (bad magic or version)")
	}
	r := int(binary.LittleEndian.Uint32(h[8:]))
	size := int(binary.LittleEndian.Uint32(h[12:]))
	n := binary.LittleEndian.Uint32(h[16:])
	if n > 4096 {
		return 0, fmt.Errorf("token of %d bytes is too long", n)
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return 0, fmt.Errorf("handshake: %w", err)
	}
	switch {
	case subtle.ConstantTimeCompare(got, []byte(token)) != 1:
		return 0, errors.New("wrong job token (a process from another job?)")
	case size != t.size:
		return 0, fmt.Errorf("world size %d differs from ours (%d)", size, t.size)
	case r <= t.rank || r >= t.size:
		return 0, fmt.Errorf("rank %d may not dial rank %d", r, t.rank)
	}
	return r, nil
}
