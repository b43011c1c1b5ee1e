package store

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Server is the store's host side: it keeps the key space in memory and answers clients that
// present the job token. Close stops it and drops every connection.
type Server struct {
	ln    net.Listener
	token string

	mu      sync.Mutex
	data    map[string][]byte
	changed chan struct{} // closed and replaced on every mutation, to wake waiters
	conns   map[net.Conn]struct{}
	closed  bool
	done    chan struct{}
	logf    func(format string, args ...any)

	wg sync.WaitGroup
}

// Listen starts a store on addr (host:port; port 0 picks a free one) that admits only
// clients presenting token.
func Listen(addr, token string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("store: listen on %s: %w", addr, err)
	}
	s := &Server{
		ln:      ln,
		token:   token,
		data:    map[string][]byte{},
		changed: make(chan struct{}),
		conns:   map[net.Conn]struct{}{},
		done:    make(chan struct{}),
		logf:    log.New(os.Stderr, "", log.LstdFlags).Printf,
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// SetLogf replaces the function the server reports rejected clients and protocol errors to
// (by default the standard logger on stderr).
func (s *Server) SetLogf(f func(format string, args ...any)) {
	s.mu.Lock()
	s.logf = f
	s.mu.Unlock()
}

func (s *Server) log(format string, args ...any) {
	s.mu.Lock()
	f := s.logf
	s.mu.Unlock()
	if f != nil {
		f(format, args...)
	}
}

// Addr is the address the store listens on, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, closes every client connection and wakes blocked waits.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

// conn is one client connection; responses from concurrent handlers are serialised by wmu.
type conn struct {
	c   net.Conn
	wmu sync.Mutex
	w   *bufio.Writer

	mu      sync.Mutex
	cancels map[uint64]chan struct{} // pending waits by request id
}

func (c *conn) reply(f frame) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := writeFrame(c.w, f); err != nil {
		c.c.Close()
	}
}

func (s *Server) serve(nc net.Conn) {
	defer s.wg.Done()
	cn := &conn{c: nc, w: bufio.NewWriter(nc), cancels: map[uint64]chan struct{}{}}
	var handlers sync.WaitGroup
	defer func() {
		nc.Close()
		cn.mu.Lock()
		for _, ch := range cn.cancels {
			close(ch)
		}
		cn.cancels = map[uint64]chan struct{}{}
		cn.mu.Unlock()
		handlers.Wait()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	r := bufio.NewReader(nc)

	// Handshake: the first frame must be hello(magic, token) within 10 s.
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	hello, err := readFrame(r)
	if err != nil || hello.op != opHello || len(hello.args) != 2 || string(hello.args[0]) != magic {
		s.log("store: rejected client %s: not a gomegatron store client", nc.RemoteAddr())
		return
	}
	if subtle.ConstantTimeCompare(hello.args[1], []byte(s.token)) != 1 {
		s.log("store: rejected client %s: wrong job token (a process from another job?)", nc.RemoteAddr())
		cn.reply(frame{op: stErr, id: hello.id, args: [][]byte{[]byte("store " + s.Addr() + " rejected the job token: the client belongs to another job (check GOMEGATRON_JOB_TOKEN)")}})
		return
	}
	cn.reply(frame{op: stOK, id: hello.id})
	nc.SetReadDeadline(time.Time{})

	for {
		f, err := readFrame(r)
		if err != nil {
			if errors.Is(err, errBadFrame) {
				s.log("store: dropped client %s: %v", nc.RemoteAddr(), err)
			}
			return
		}
		switch f.op {
		case opWait:
			ch := make(chan struct{})
			cn.mu.Lock()
			cn.cancels[f.id] = ch
			cn.mu.Unlock()
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				resp := s.wait(f, ch)
				cn.mu.Lock()
				_, pending := cn.cancels[f.id]
				delete(cn.cancels, f.id)
				cn.mu.Unlock()
				if pending {
					cn.reply(resp)
				}
			}()
		case opCancel:
			if len(f.args) == 1 {
				if id, err := getU64(f.args[0]); err == nil {
					cn.mu.Lock()
					if ch, ok := cn.cancels[id]; ok {
						close(ch)
						delete(cn.cancels, id)
					}
					cn.mu.Unlock()
				}
			}
		default:
			cn.reply(s.handle(f))
		}
	}
}

func errFrame(id uint64, format string, args ...any) frame {
	return frame{op: stErr, id: id, args: [][]byte{[]byte(fmt.Sprintf(format, args...))}}
}

// mutate runs f under the lock and wakes every waiter.
func (s *Server) mutate(f func()) {
	s.mu.Lock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) handle(f frame) frame {
	ok := frame{op: stOK, id: f.id}
	switch f.op {
	case opSet:
		if len(f.args) != 2 {
			return errFrame(f.id, "store: set wants key and value")
		}
		k, v := string(f.args[0]), bytes.Clone(f.args[1])
		s.mutate(func() { s.data[k] = v })
		return ok
	case opGet:
		if len(f.args) != 1 {
			return errFrame(f.id, "store: get wants one key")
		}
		s.mu.Lock()
		v, found := s.data[string(f.args[0])]
		s.mu.Unlock()
		if !found {
			return errFrame(f.id, "store: key %q not set", f.args[0])
		}
		ok.args = [][]byte{v}
		return ok
	case opAdd:
		if len(f.args) != 2 {
			return errFrame(f.id, "store: add wants key and delta")
		}
		d, err := getU64(f.args[1])
		if err != nil {
			return errFrame(f.id, "store: add: %v", err)
		}
		k := string(f.args[0])
		var n int64
		var bad error
		s.mutate(func() {
			if cur, found := s.data[k]; found {
				n, bad = strconv.ParseInt(string(cur), 10, 64)
				if bad != nil {
					bad = fmt.Errorf("store: add on key %q whose value %q is not an integer", k, cur)
					return
				}
			}
			n += int64(d)
			s.data[k] = []byte(strconv.FormatInt(n, 10))
		})
		if bad != nil {
			return errFrame(f.id, "%v", bad)
		}
		ok.args = [][]byte{u64(uint64(n))}
		return ok
	case opCheck:
		s.mu.Lock()
		all := true
		for _, k := range f.args {
			if _, found := s.data[string(k)]; !found {
				all = false
				break
			}
		}
		s.mu.Unlock()
		if all {
			ok.args = [][]byte{{1}}
		} else {
			ok.args = [][]byte{{0}}
		}
		return ok
	case opCompareSet:
		if len(f.args) != 3 {
			return errFrame(f.id, "store: compare_set wants key, expected and desired")
		}
		// c10d semantics: a missing key is set only when expected is empty; the reply is the
		// value now stored (desired on success, the current value — or expected for a missing
		// key — otherwise).
		k, exp, des := string(f.args[0]), f.args[1], bytes.Clone(f.args[2])
		var out []byte
		s.mutate(func() {
			cur, found := s.data[k]
			switch {
			case !found && len(exp) == 0:
				s.data[k], out = des, des
			case !found:
				out = exp
			case bytes.Equal(cur, exp):
				s.data[k], out = des, des
			default:
				out = cur
			}
		})
		ok.args = [][]byte{out}
		return ok
	}
	return errFrame(f.id, "store: unknown op %d", f.op)
}

// wait blocks until every key in f exists, the timeout passes, the client cancels or the
// server closes. A timeout answers with the keys still missing.
func (s *Server) wait(f frame, cancel <-chan struct{}) frame {
	if len(f.args) < 1 {
		return errFrame(f.id, "store: wait wants a timeout")
	}
	ms, err := getU64(f.args[0])
	if err != nil {
		return errFrame(f.id, "store: wait: %v", err)
	}
	keys := f.args[1:]
	var timer <-chan time.Time
	if ms > 0 {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		timer = t.C
	}
	for {
		s.mu.Lock()
		var missing [][]byte
		for _, k := range keys {
			if _, found := s.data[string(k)]; !found {
				missing = append(missing, k)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if len(missing) == 0 {
			return frame{op: stOK, id: f.id}
		}
		select {
		case <-ch:
		case <-timer:
			return frame{op: stTimeout, id: f.id, args: missing}
		case <-cancel:
			return frame{op: stErr, id: f.id, args: [][]byte{[]byte("store: wait cancelled")}}
		case <-s.done:
			return frame{op: stErr, id: f.id, args: [][]byte{[]byte("store: server closed")}}
		}
	}
}
