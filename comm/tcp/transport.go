package tcp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomegatron/gomegatron/comm"
)

// Wire format. After the handshake (connect.go) a connection carries frames
//
//	comm id u64 | tag u64 | payload length u64 | payload
//
// little-endian. (comm id, tag) names a logical channel; the frames of one channel from one
// peer are delivered in the order sent (TCP order), so a receive is matched with the oldest
// unmatched frame of its channel. A frame with comm id byeComm is the peer's goodbye; one
// with abortComm carries the error that made the peer abort (u32 rank at fault, message).
const (
	headerLen = 24
	byeComm   = ^uint64(0)
	abortComm = ^uint64(1)
	// abortGrace bounds a failing rank's wait for writes in progress before its abort frame,
	// and its goodbye. At 200 ms a loaded machine (8 ranks on 2 cores beside other tests)
	// sometimes cut the abort frame, and a peer then blamed the failing survivor instead of
	// the rank at fault (TestMultiProcessKilledWorker, about 1 run in 40 under load; none
	// in 100 at 2 s).
	abortGrace = 2 * time.Second
)

type chanKey struct{ comm, tag uint64 }

// request is a posted receive: the reader goroutine fills buf and closes done.
type request struct {
	buf  []byte
	err  error
	done chan struct{}
	// armed, when not nil, is closed by the poster once buf may be written: a receive can
	// be posted into a buffer that is still being sent (see postArmed).
	armed chan struct{}
}

func (r *request) finish(err error) { r.err = err; close(r.done) }

// arm allows the reader to fill the buffer of a request from postArmed.
func (r *request) arm() { close(r.armed) }

// ready waits until the request is armed (or the transport fails).
func (p *peer) ready(r *request) error {
	if r.armed == nil {
		return nil
	}
	select {
	case <-r.armed:
		return nil
	case <-p.t.failed:
		return p.t.err()
	}
}

// channel holds, for one (comm, tag) of one peer, either frames that arrived before their
// receive was posted or receives posted before their frame arrived (never both).
type channel struct {
	early  [][]byte
	posted []*request
}

// peer is the connection to one other rank of the world.
type peer struct {
	t    *transport
	rank int
	conn net.Conn

	wmu sync.Mutex // one frame at a time on the wire

	mu    sync.Mutex
	chans map[chanKey]*channel
	gone  error // set when the connection ended: later receives fail with it
}

// transport is the full mesh of connections of one world; every Comm split from the world
// shares it.
type transport struct {
	rank, size int
	peers      []*peer // peers[rank] is nil
	timeout    time.Duration

	failOnce sync.Once
	failed   chan struct{} // closed on the first fatal error
	failErr  error
	closing  atomic.Bool
	onClose  func()
	readers  sync.WaitGroup
	pools    [48]sync.Pool // early-frame buffers by power-of-two size
}

func newTransport(rank, size int, timeout time.Duration) *transport {
	return &transport{rank: rank, size: size, peers: make([]*peer, size), timeout: timeout, failed: make(chan struct{})}
}

func (t *transport) addPeer(rank int, c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetReadBuffer(4 << 20)
		tc.SetWriteBuffer(4 << 20)
		tc.SetKeepAlive(true)
		tc.SetKeepAlivePeriod(15 * time.Second)
	}
	if uc, ok := c.(*net.UnixConn); ok {
		uc.SetReadBuffer(4 << 20)
		uc.SetWriteBuffer(4 << 20)
	}
	t.peers[rank] = &peer{t: t, rank: rank, conn: c, chans: map[chanKey]*channel{}}
}

func (t *transport) start() {
	for _, p := range t.peers {
		if p != nil {
			t.readers.Add(1)
			go p.read()
		}
	}
}

// fail records the first fatal error, tells every peer about it (an abort frame carrying
// the rank at fault and the message, so that all ranks report the same root cause) and
// closes every connection, which ends all readers and fails every pending and later
// operation. The peers fail in turn, so an error on one rank reaches every rank.
func (t *transport) fail(err error) { t.abort(err, true) }

func (t *transport) abort(err error, notify bool) {
	t.failOnce.Do(func() {
		t.failErr = err
		close(t.failed)
		if notify {
			t.notify(err)
		}
		for _, p := range t.peers {
			if p != nil {
				p.conn.Close()
			}
		}
	})
}

// notify sends the abort frame to every peer, waiting at most abortGrace for writes in
// progress (a frame cut short by the deadline leaves that peer to see the disconnection).
func (t *transport) notify(err error) {
	origin := t.rank
	var pe *comm.PeerError
	msg := err.Error()
	if errors.As(err, &pe) {
		origin, msg = pe.Rank, pe.Err.Error()
		var re *remoteError
		if errors.As(pe.Err, &re) {
			msg = re.msg
		}
	}
	payload := binary.LittleEndian.AppendUint32(nil, uint32(origin))
	payload = append(payload, msg...)
	var hdr [headerLen]byte
	binary.LittleEndian.PutUint64(hdr[0:], abortComm)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(len(payload)))
	dl := time.Now().Add(abortGrace)
	var wg sync.WaitGroup
	for _, p := range t.peers {
		if p == nil || p.rank == origin {
			continue
		}
		p.conn.SetWriteDeadline(dl) // bounds a write in progress
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.wmu.Lock()
			defer p.wmu.Unlock()
			p.conn.SetWriteDeadline(dl)
			bufs := net.Buffers{hdr[:], payload}
			bufs.WriteTo(p.conn)
		}()
	}
	wg.Wait()
}

// remoteError is an error another rank reported in its abort frame.
type remoteError struct {
	msg string
	via int // the rank whose abort frame carried it
}

func (e *remoteError) Error() string { return fmt.Sprintf("%s (reported by rank %d)", e.msg, e.via) }

// err returns the fatal error, or nil while the transport is healthy.
func (t *transport) err() error {
	select {
	case <-t.failed:
		return t.failErr
	default:
		return nil
	}
}

// close says goodbye to every peer (so they do not take the disconnection for a crash) and
// closes the connections.
func (t *transport) close() {
	if !t.closing.CompareAndSwap(false, true) {
		return
	}
	if t.err() == nil {
		var hdr [headerLen]byte
		binary.LittleEndian.PutUint64(hdr[0:], byeComm)
		for _, p := range t.peers {
			if p == nil {
				continue
			}
			p.wmu.Lock()
			p.conn.SetWriteDeadline(time.Now().Add(abortGrace))
			p.conn.Write(hdr[:])
			p.wmu.Unlock()
		}
	}
	t.abort(fmt.Errorf("rank %d: %w", t.rank, comm.ErrClosed), false)
	t.readers.Wait()
	if t.onClose != nil {
		t.onClose()
	}
}

// read runs for the life of the connection, matching each incoming frame with a posted
// receive (reading the payload straight into its buffer) or queueing it.
func (p *peer) read() {
	defer p.t.readers.Done()
	// A small buffer: it batches headers and small frames, while large payloads are read
	// straight into their destination (what the buffer holds of them is copied twice).
	br := bufio.NewReaderSize(p.conn, 8<<10)
	err := p.readLoop(br)
	p.mu.Lock()
	p.gone = err
	for _, ch := range p.chans {
		for _, r := range ch.posted {
			r.finish(err)
		}
		ch.posted = nil
	}
	p.mu.Unlock()
}

func (p *peer) readLoop(br *bufio.Reader) error {
	var hdr [headerLen]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return p.connErr(err)
		}
		k := chanKey{binary.LittleEndian.Uint64(hdr[0:]), binary.LittleEndian.Uint64(hdr[8:])}
		n := binary.LittleEndian.Uint64(hdr[16:])
		if k.comm == byeComm {
			return fmt.Errorf("peer rank %d closed its communicator: %w", p.rank, comm.ErrClosed)
		}
		if k.comm == abortComm && n >= 4 && n < 1<<16 {
			b := make([]byte, n)
			if _, err := io.ReadFull(br, b); err != nil {
				return p.connErr(err)
			}
			origin := int(binary.LittleEndian.Uint32(b))
			p.t.fail(&comm.PeerError{Rank: origin, Err: &remoteError{msg: string(b[4:]), via: p.rank}})
			return p.t.err()
		}
		if n > 1<<40 {
			err := fmt.Errorf("corrupt frame from rank %d: payload length %d", p.rank, n)
			p.t.fail(err)
			return err
		}
		p.mu.Lock()
		ch := p.chan_(k)
		if len(ch.posted) > 0 {
			r := ch.posted[0]
			ch.posted = ch.posted[1:]
			p.drop(k, ch)
			p.mu.Unlock()
			if uint64(len(r.buf)) != n {
				err := p.mismatch(k, n, len(r.buf))
				r.finish(err)
				return err
			}
			if err := p.ready(r); err != nil {
				r.finish(err)
				return err
			}
			if _, err := io.ReadFull(br, r.buf); err != nil {
				err = p.connErr(err)
				r.finish(err)
				return err
			}
			r.finish(nil)
			continue
		}
		p.mu.Unlock()
		buf := p.t.getBuf(int(n))
		if _, err := io.ReadFull(br, buf); err != nil {
			return p.connErr(err)
		}
		p.mu.Lock()
		ch = p.chan_(k)
		if len(ch.posted) > 0 { // posted while the payload was read
			r := ch.posted[0]
			ch.posted = ch.posted[1:]
			p.drop(k, ch)
			p.mu.Unlock()
			if len(r.buf) != len(buf) {
				err := p.mismatch(k, n, len(r.buf))
				r.finish(err)
				return err
			}
			if err := p.ready(r); err != nil {
				r.finish(err)
				return err
			}
			copy(r.buf, buf)
			p.t.putBuf(buf)
			r.finish(nil)
			continue
		}
		ch.early = append(ch.early, buf)
		p.mu.Unlock()
	}
}

// Frames that arrive before their receive is posted (a peer that entered the collective
// earlier) wait in buffers from the transport's pools, one per power-of-two size from
// 64 KiB, so that large collectives do not allocate (and clear, and collect) megabytes per call.
const minPooled = 64 << 10

func (t *transport) getBuf(n int) []byte {
	if n < minPooled {
		return make([]byte, n)
	}
	c := bits.Len(uint(n - 1)) // 2^c ≥ n
	if b, ok := t.pools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

func (t *transport) putBuf(b []byte) {
	if cap(b) < minPooled || cap(b)&(cap(b)-1) != 0 {
		return
	}
	b = b[:cap(b)]
	t.pools[bits.Len(uint(cap(b)-1))].Put(&b)
}

func (p *peer) chan_(k chanKey) *channel {
	ch := p.chans[k]
	if ch == nil {
		ch = &channel{}
		p.chans[k] = ch
	}
	return ch
}

func (p *peer) drop(k chanKey, ch *channel) {
	if len(ch.early) == 0 && len(ch.posted) == 0 {
		delete(p.chans, k)
	}
}

// connErr turns a read or write error into the transport's error: the root cause when the
// transport already failed, else a PeerError naming this peer (which also fails the transport).
func (p *peer) connErr(err error) error {
	if e := p.t.err(); e != nil {
		return e
	}
	// EOF or a reset without the goodbye frame: the process is gone.
	err = fmt.Errorf("connection lost without goodbye (process exited or was killed?): %w", err)
	pe := &comm.PeerError{Rank: p.rank, Err: err}
	p.t.fail(pe)
	return p.t.err()
}

func (p *peer) mismatch(k chanKey, got uint64, want int) error {
	err := fmt.Errorf("rank %d sent %d bytes where rank %d expected %d (comm %#x, %s): the ranks called different collectives or passed different sizes",
		p.rank, got, p.t.rank, want, k.comm, tagString(k.tag))
	p.t.fail(err)
	return err
}

// post registers a receive of exactly len(buf) bytes on channel k. It never blocks.
func (p *peer) post(k chanKey, buf []byte) *request {
	return p.postReq(k, &request{buf: buf, done: make(chan struct{})})
}

// postArmed posts a receive into a buffer that the caller is about to send from, for a reply
// that the peer can only send after it has received that data: the reader holds the frame
// until the caller calls arm() (right after its send returns), which orders the send's reads
// of buf before the reader's writes. The caller must call arm() exactly once.
func (p *peer) postArmed(k chanKey, buf []byte) *request {
	return p.postReq(k, &request{buf: buf, done: make(chan struct{}), armed: make(chan struct{})})
}

func (p *peer) postReq(k chanKey, r *request) *request {
	buf := r.buf
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.chans[k]
	if ch != nil && len(ch.early) > 0 && r.armed != nil {
		r.finish(p.mismatch(k, uint64(len(ch.early[0])), len(buf))) // a reply before its request
		return r
	}
	if ch != nil && len(ch.early) > 0 {
		b := ch.early[0]
		ch.early = ch.early[1:]
		p.drop(k, ch)
		if len(b) != len(buf) {
			r.finish(p.mismatch(k, uint64(len(b)), len(buf)))
			return r
		}
		copy(buf, b)
		p.t.putBuf(b)
		r.finish(nil)
		return r
	}
	if p.gone != nil {
		r.finish(p.gone)
		return r
	}
	if e := p.t.err(); e != nil {
		r.finish(e)
		return r
	}
	p.chan_(k).posted = append(p.chan_(k).posted, r)
	return r
}

// send writes one frame; it returns when the payload is in the kernel's socket buffer.
func (p *peer) send(k chanKey, payload []byte, deadline time.Time) error {
	if e := p.t.err(); e != nil {
		return e
	}
	var hdr [headerLen]byte
	binary.LittleEndian.PutUint64(hdr[0:], k.comm)
	binary.LittleEndian.PutUint64(hdr[8:], k.tag)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(len(payload)))
	p.mu.Lock()
	gone := p.gone
	p.mu.Unlock()
	if gone != nil {
		return gone
	}
	p.wmu.Lock()
	p.conn.SetWriteDeadline(deadline)
	bufs := net.Buffers{hdr[:], payload}
	_, err := bufs.WriteTo(p.conn)
	p.wmu.Unlock()
	if err == nil {
		return nil
	}
	if e := p.t.err(); e != nil {
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err := fmt.Errorf("sending %d bytes to rank %d (%s): %w after %v", len(payload), p.rank, tagString(k.tag), comm.ErrTimeout, p.t.timeout)
		p.t.fail(err)
		return p.t.err()
	}
	// A write fails once the peer is gone. Its reader, which still gets the peer's last
	// frames (maybe an abort frame naming the rank at fault) before the disconnection,
	// gives the verdict; wait for it briefly, then name this peer.
	select {
	case <-p.t.failed:
		return p.t.err()
	case <-time.After(2 * abortGrace):
	}
	return p.connErr(err)
}

// wait blocks until r completes, the transport fails, or the deadline passes; on a timeout
// it fails the transport (an incomplete receive cannot be abandoned safely) and names the
// peer that did not deliver.
func (t *transport) wait(r *request, from int, what string, deadline time.Time) error {
	select {
	case <-r.done:
		return r.err
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-r.done:
		return r.err
	case <-t.failed:
	case <-timer.C:
		t.fail(fmt.Errorf("%s: waiting for rank %d: %w after %v (is rank %d in a different collective, or stuck?)",
			what, from, comm.ErrTimeout, t.timeout, from))
	}
	<-r.done // the reader finishes every posted receive once its connection is closed
	return t.err()
}
