package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRejected is returned by Dial when the server refuses the job token.
var ErrRejected = errors.New("store: job token rejected")

// WaitTimeoutError is returned when a wait (or a Get, or a Barrier) runs past its context's
// deadline. It names what was still missing. errors.Is(err, context.DeadlineExceeded) holds.
type WaitTimeoutError struct {
	Addr    string
	After   time.Duration
	Keys    []string // keys still missing
	Barrier string   // barrier name, for Barrier timeouts
	Ranks   []int    // ranks that had not arrived, for Barrier timeouts
	World   int
}

func (e *WaitTimeoutError) Error() string {
	if e.Barrier != "" {
		return fmt.Sprintf("store %s: barrier %q timed out after %v: %d of %d ranks arrived, missing ranks %v",
			e.Addr, e.Barrier, e.After.Round(time.Millisecond), e.World-len(e.Ranks), e.World, e.Ranks)
	}
	return fmt.Sprintf("store %s: timed out after %v waiting for keys %s",
		e.Addr, e.After.Round(time.Millisecond), quoteAll(e.Keys))
}

func (e *WaitTimeoutError) Unwrap() error { return context.DeadlineExceeded }

func quoteAll(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = strconv.Quote(k)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// Client is a connection to a store. It is safe for concurrent use; calls from several
// goroutines share one connection and may block (Get, Wait, Barrier) independently.
type Client struct {
	addr string
	nc   net.Conn

	wmu sync.Mutex
	w   *bufio.Writer

	mu      sync.Mutex
	pending map[uint64]chan frame
	err     error // set once the connection is gone
	nextID  atomic.Uint64
	done    chan struct{}
}

// Dial connects to the store at addr, retrying refused or unreachable connections until
// ctx is done (launchers and workers start in any order). A wrong token fails at once with
// ErrRejected.
func Dial(ctx context.Context, addr, token string) (*Client, error) {
	start := time.Now()
	backoff := 10 * time.Millisecond
	var lastErr error
	for {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c, herr := handshake(ctx, nc, addr, token)
			if herr == nil || errors.Is(herr, ErrRejected) {
				return c, herr
			}
			err = herr
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("store: cannot reach %s after %v: %w (last error: %v)",
				addr, time.Since(start).Round(time.Millisecond), ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

func handshake(ctx context.Context, nc net.Conn, addr, token string) (*Client, error) {
	dl := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	nc.SetDeadline(dl)
	w, r := bufio.NewWriter(nc), bufio.NewReader(nc)
	if err := writeFrame(w, frame{op: opHello, args: [][]byte{[]byte(magic), []byte(token)}}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("store %s: handshake: %w", addr, err)
	}
	resp, err := readFrame(r)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("store %s: handshake: %w", addr, err)
	}
	if resp.op != stOK {
		nc.Close()
		msg := ""
		if len(resp.args) > 0 {
			msg = string(resp.args[0])
		}
		return nil, fmt.Errorf("%w: %s", ErrRejected, msg)
	}
	nc.SetDeadline(time.Time{})
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(15 * time.Second)
	}
	c := &Client{addr: addr, nc: nc, w: w, pending: map[uint64]chan frame{}, done: make(chan struct{})}
	go c.read(r)
	return c, nil
}

// read dispatches responses to the calls waiting for them; when the connection ends every
// pending call fails.
func (c *Client) read(r *bufio.Reader) {
	var err error
	for {
		var f frame
		f, err = readFrame(r)
		if err != nil {
			break
		}
		c.mu.Lock()
		ch, ok := c.pending[f.id]
		delete(c.pending, f.id)
		c.mu.Unlock()
		if ok {
			ch <- f
		}
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = fmt.Errorf("store %s: connection lost: %v", c.addr, err)
	}
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.done)
}

// start sends a request and returns its id and the channel its response arrives on.
func (c *Client) start(op byte, args ...[]byte) (uint64, chan frame, error) {
	id := c.nextID.Add(1)
	ch := make(chan frame, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, nil, err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	c.wmu.Lock()
	err := writeFrame(c.w, frame{op: op, id: id, args: args})
	c.wmu.Unlock()
	if err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return 0, nil, fmt.Errorf("store %s: send: %w", c.addr, err)
	}
	return id, ch, nil
}

func (c *Client) connErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return fmt.Errorf("store %s: connection lost", c.addr)
}

// call sends a non-blocking request and returns the response's arguments.
func (c *Client) call(op byte, args ...[]byte) ([][]byte, error) {
	_, ch, err := c.start(op, args...)
	if err != nil {
		return nil, err
	}
	f, ok := <-ch
	if !ok {
		return nil, c.connErr()
	}
	if f.op != stOK {
		return nil, respErr(f)
	}
	return f.args, nil
}

func respErr(f frame) error {
	if len(f.args) > 0 {
		return errors.New(string(f.args[0]))
	}
	return fmt.Errorf("store: error status %d", f.op)
}

// Set stores val under key, waking every wait on it.
func (c *Client) Set(key string, val []byte) error {
	_, err := c.call(opSet, []byte(key), val)
	return err
}

// Get waits (up to ctx's deadline) for key to be set and returns its value.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	if err := c.Wait(ctx, key); err != nil {
		return nil, err
	}
	a, err := c.call(opGet, []byte(key))
	if err != nil {
		return nil, err
	}
	if len(a) != 1 {
		return nil, fmt.Errorf("store %s: get %q: malformed reply", c.addr, key)
	}
	return a[0], nil
}

// Wait blocks until every key exists. Past ctx's deadline it returns a *WaitTimeoutError
// naming the keys still missing.
func (c *Client) Wait(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	start := time.Now()
	var ms uint64
	if d, ok := ctx.Deadline(); ok {
		ms = uint64(max(time.Until(d).Milliseconds(), 1))
	}
	args := make([][]byte, 0, len(keys)+1)
	args = append(args, u64(ms))
	for _, k := range keys {
		args = append(args, []byte(k))
	}
	id, ch, err := c.start(opWait, args...)
	if err != nil {
		return err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return c.connErr()
		}
		switch f.op {
		case stOK:
			return nil
		case stTimeout:
			missing := make([]string, len(f.args))
			for i, k := range f.args {
				missing[i] = string(k)
			}
			return &WaitTimeoutError{Addr: c.addr, After: time.Since(start), Keys: missing}
		default:
			return respErr(f)
		}
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		c.wmu.Lock()
		writeFrame(c.w, frame{op: opCancel, id: c.nextID.Add(1), args: [][]byte{u64(id)}})
		c.wmu.Unlock()
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("store %s: wait for %s: %w", c.addr, quoteAll(keys), ctx.Err())
		}
		var missing []string
		for _, k := range keys {
			if ok, err := c.Check(k); err == nil && !ok {
				missing = append(missing, k)
			}
		}
		return &WaitTimeoutError{Addr: c.addr, After: time.Since(start), Keys: missing}
	}
}

// Add adds delta to the int64 counter at key (created at 0) and returns the new value. The
// counter is stored as a decimal string, as in c10d.
func (c *Client) Add(key string, delta int64) (int64, error) {
	a, err := c.call(opAdd, []byte(key), u64(uint64(delta)))
	if err != nil {
		return 0, err
	}
	if len(a) != 1 {
		return 0, fmt.Errorf("store %s: add %q: malformed reply", c.addr, key)
	}
	v, err := getU64(a[0])
	return int64(v), err
}

// Check reports whether every key exists, without waiting.
func (c *Client) Check(keys ...string) (bool, error) {
	args := make([][]byte, len(keys))
	for i, k := range keys {
		args[i] = []byte(k)
	}
	a, err := c.call(opCheck, args...)
	if err != nil {
		return false, err
	}
	return len(a) == 1 && len(a[0]) == 1 && a[0][0] == 1, nil
}

// CompareSet sets key to desired if its value equals expected (a missing key matches an
// empty expected) and returns the value stored afterwards: desired on success, else the
// current value, or expected when the key is missing (c10d's compare_set semantics).
func (c *Client) CompareSet(key string, expected, desired []byte) ([]byte, error) {
	a, err := c.call(opCompareSet, []byte(key), expected, desired)
	if err != nil {
		return nil, err
	}
	if len(a) != 1 {
		return nil, fmt.Errorf("store %s: compare_set %q: malformed reply", c.addr, key)
	}
	return a[0], nil
}

// Barrier blocks until world ranks have entered the barrier called name. Each rank sets
// name/rank/<rank> and adds 1 to name/count; the last one sets name/done. A timeout error
// lists the ranks that never arrived. A name serves one barrier: reuse needs a new name
// (e.g. with a generation suffix).
func (c *Client) Barrier(ctx context.Context, name string, rank, world int) error {
	if world < 1 || rank < 0 || rank >= world {
		return fmt.Errorf("store: barrier %q: rank %d outside world of %d", name, rank, world)
	}
	if err := c.Set(fmt.Sprintf("%s/rank/%d", name, rank), []byte("1")); err != nil {
		return fmt.Errorf("store: barrier %q: %w", name, err)
	}
	n, err := c.Add(name+"/count", 1)
	if err != nil {
		return fmt.Errorf("store: barrier %q: %w", name, err)
	}
	if n > int64(world) {
		return fmt.Errorf("store: barrier %q: %d arrivals for a world of %d (name reused?)", name, n, world)
	}
	if n == int64(world) {
		if err := c.Set(name+"/done", []byte("1")); err != nil {
			return fmt.Errorf("store: barrier %q: %w", name, err)
		}
	}
	err = c.Wait(ctx, name+"/done")
	var te *WaitTimeoutError
	if errors.As(err, &te) {
		te.Barrier, te.World, te.Keys = name, world, nil
		for r := 0; r < world; r++ {
			if ok, cerr := c.Check(fmt.Sprintf("%s/rank/%d", name, r)); cerr == nil && !ok {
				te.Ranks = append(te.Ranks, r)
			}
		}
		sort.Ints(te.Ranks)
		return te
	}
	return err
}

// Close closes the connection; pending calls fail.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = fmt.Errorf("store %s: client closed", c.addr)
	}
	c.mu.Unlock()
	err := c.nc.Close()
	<-c.done
	return err
}
