package tcp

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// Frame tags: the kind of message in the top byte, a segment index below.
const (
	tagAllReduceSmall = 1 + iota
	tagReduceScatter
	tagAllGather
	tagBcast
	tagBcastGather
	tagP2P
	tagBarrier
	tagCredit
)

var tagNames = map[uint64]string{tagAllReduceSmall: "all-reduce", tagReduceScatter: "reduce-scatter",
	tagAllGather: "all-gather", tagBcast: "broadcast", tagBcastGather: "broadcast all-gather",
	tagP2P: "send/recv", tagBarrier: "barrier", tagCredit: "reduce-scatter credit"}

func tag(kind uint64, seg int) uint64 { return kind<<56 | uint64(seg) }

func tagString(t uint64) string {
	return fmt.Sprintf("%s segment %d", tagNames[t>>56], t&(1<<56-1))
}

// group is a communicator: the world or a Split of it, sharing the world's transport.
type group struct {
	t      *transport
	id     uint64
	name   string
	ranks  []int // group rank → world rank
	rank   int
	world  bool
	splits int
	closed bool

	small, seg, window int
	scratch            []byte
}

func (g *group) Rank() int { return g.rank }
func (g *group) Size() int { return len(g.ranks) }

func (g *group) peer(p int) *peer { return g.t.peers[g.ranks[p]] }

func (g *group) post(p int, tg uint64, buf []byte) *request {
	return g.peer(p).post(chanKey{g.id, tg}, buf)
}

func (g *group) send(p int, tg uint64, buf []byte, dl time.Time) error {
	return g.peer(p).send(chanKey{g.id, tg}, buf, dl)
}

func (g *group) wait(r *request, p int, what string, dl time.Time) error {
	return g.t.wait(r, g.ranks[p], what+" on "+g.name, dl)
}

// begin validates the call and returns the operation's deadline.
func (g *group) begin(what string, ts ...*tensor.Tensor) (time.Time, error) {
	if g.closed {
		return time.Time{}, fmt.Errorf("%s on %s: %w", what, g.name, comm.ErrClosed)
	}
	if err := g.t.err(); err != nil {
		return time.Time{}, fmt.Errorf("%s on %s: %w", what, g.name, err)
	}
	for _, t := range ts {
		if err := comm.CheckTensor(what+": tensor", t); err != nil {
			return time.Time{}, err
		}
	}
	return time.Now().Add(g.t.timeout), nil
}

// fail aborts the transport with err (if it is still healthy) and returns the root cause,
// labelled with the operation.
func (g *group) fail(what string, err error) error {
	g.t.fail(err)
	return fmt.Errorf("%s on %s (rank %d of %d): %w", what, g.name, g.rank, g.Size(), g.t.err())
}

// failP2P is fail for Send and Recv: a peer that closed its communicator cleanly only fails
// the operations addressed to it; anything else aborts.
func (g *group) failP2P(what string, err error) error {
	if errors.Is(err, comm.ErrClosed) && g.t.err() == nil {
		return fmt.Errorf("%s on %s (rank %d of %d): %w", what, g.name, g.rank, g.Size(), err)
	}
	return g.fail(what, err)
}

// buffers carves scratch space of the given sizes out of the group's reusable scratch.
func (g *group) buffers(sizes ...int) [][]byte {
	total := 0
	for _, s := range sizes {
		total += s
	}
	if cap(g.scratch) < total {
		g.scratch = make([]byte, total)
	}
	out := make([][]byte, len(sizes))
	off := 0
	for i, s := range sizes {
		out[i] = g.scratch[off : off+s : off+s]
		off += s
	}
	return out
}

// fanout runs one goroutine per peer that sends what push asks for, in order, so that the
// caller can keep reducing while results go out.
type fanout struct {
	chans map[int]chan int
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

func startFanout(peers []int, depth int, send func(p, s int) error) *fanout {
	f := &fanout{chans: map[int]chan int{}}
	for _, p := range peers {
		ch := make(chan int, depth)
		f.chans[p] = ch
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			failed := false
			for s := range ch {
				if failed {
					continue
				}
				if err := send(p, s); err != nil {
					failed = true
					f.mu.Lock()
					if f.err == nil {
						f.err = err
					}
					f.mu.Unlock()
				}
			}
		}()
	}
	return f
}

func (f *fanout) push(s int) {
	for _, ch := range f.chans {
		ch <- s
	}
}

func (f *fanout) finish() error {
	for _, ch := range f.chans {
		close(ch)
	}
	f.wg.Wait()
	return f.err
}

func (g *group) others(skip ...int) []int {
	var out []int
	for p := range g.ranks {
		if p != g.rank && !slices.Contains(skip, p) {
			out = append(out, p)
		}
	}
	return out
}

// segments splits [lo, hi) into pieces of at most seg elements: piece s is
// [lo+s·seg, min(lo+(s+1)·seg, hi)).
func segCount(n, seg int) int { return (n + seg - 1) / seg }

func (g *group) segElems(dt tensor.DType) int { return max(1, g.seg/dt.Size()) }

func (g *group) AllReduce(t *tensor.Tensor, op comm.Op) error {
	const what = "AllReduce"
	dl, err := g.begin(what, t)
	if err != nil {
		return err
	}
	if err := comm.CheckOp(op, t.DType()); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, N := g.Size(), t.Numel()
	if n == 1 || N == 0 {
		return nil
	}
	if len(t.Data) <= g.small || N < n {
		return g.allReduceSmall(t, op, dl)
	}
	lo := func(r int) int { return r * N / n }
	es := t.DType().Size()
	mine := t.Data[lo(g.rank)*es : lo(g.rank+1)*es]
	if err := g.reduceScatter(what, t.Data, lo, t.DType(), op, mine, true, dl); err != nil {
		return g.fail(what, err)
	}
	return nil
}

// allReduceSmall sends the whole tensor to every peer and folds the n contributions locally.
func (g *group) allReduceSmall(t *tensor.Tensor, op comm.Op, dl time.Time) error {
	const what = "AllReduce"
	n, dt, nb := g.Size(), t.DType(), len(t.Data)
	ws := wideSize(dt) * t.Numel()
	sizes := []int{ws, ws}
	for range n {
		sizes = append(sizes, nb)
	}
	b := g.buffers(sizes...)
	acc, tmp, in := b[0], b[1], b[2:]
	reqs := make([]*request, n)
	for _, p := range g.others() {
		reqs[p] = g.post(p, tag(tagAllReduceSmall, 0), in[p])
	}
	for _, p := range g.others() {
		if err := g.send(p, tag(tagAllReduceSmall, 0), t.Data, dl); err != nil {
			return g.fail(what, err)
		}
	}
	in[g.rank] = t.Data
	for _, p := range g.others() {
		if err := g.wait(reqs[p], p, what, dl); err != nil {
			return g.fail(what, err)
		}
	}
	reduceInto(t.Data, func(r int) []byte { return in[r] }, n, acc, tmp, dt, op)
	return nil
}

// reduceScatter reduces data (chunk r = elements [lo(r), lo(r+1))) over the group into out
// (this rank's chunk). With gather, the reduced chunk is then sent to every peer, and the
// peers' chunks are received into data in place (all-reduce).
func (g *group) reduceScatter(what string, data []byte, lo func(int) int, dt tensor.DType, op comm.Op, out []byte, gather bool, dl time.Time) error {
	n, me := g.Size(), g.rank
	es, ws := dt.Size(), wideSize(dt)
	segE := g.segElems(dt)
	myLo, myHi := lo(me), lo(me+1)
	nseg := segCount(myHi-myLo, segE)
	segOf := func(base, hi, s int) (int, int) { return base + s*segE, min(base+(s+1)*segE, hi) }
	peers := g.others()
	// Flow control: each owner receives at most window segments per peer ahead, into
	// scratch; a peer sends segment s ≥ window only after the owner's credit for it, so
	// contributions land in posted buffers (no queueing and copying) and the scratch stays
	// small enough to be cache-warm when folded.
	window := max(1, g.window/(segE*es))

	// Senders: this rank's part of chunk p goes to p; with gather, the same region then
	// receives p's reduced result.
	var wg sync.WaitGroup
	sendErr := make([]error, n)
	gatherReqs := make([][]*request, n)
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pl, ph := lo(p), lo(p+1)
			for s := range segCount(ph-pl, segE) {
				a, b := segOf(pl, ph, s)
				if s >= window { // p has room for segment s once it has folded s-window
					if err := g.wait(g.post(p, tag(tagCredit, s), nil), p, what, dl); err != nil {
						sendErr[p] = err
						return
					}
				}
				// With gather, the region receives p's reduced result once sent: post that
				// receive first (armed after the send) so that the result never arrives
				// before its buffer and has to be queued and copied.
				var r *request
				if gather {
					r = g.peer(p).postArmed(chanKey{g.id, tag(tagAllGather, s)}, data[a*es:b*es])
					gatherReqs[p] = append(gatherReqs[p], r)
				}
				err := g.send(p, tag(tagReduceScatter, s), data[a*es:b*es], dl)
				if r != nil {
					r.arm()
				}
				if err != nil {
					sendErr[p] = err
					return
				}
			}
		}()
	}
	var fan *fanout
	if gather {
		fan = startFanout(peers, nseg, func(p, s int) error {
			a, b := segOf(0, myHi-myLo, s)
			return g.send(p, tag(tagAllGather, s), out[a*es:b*es], dl)
		})
	}

	// Owner: post the receives of a window of segments ahead, fold each segment in rank
	// order as it completes, then grant the peers the next segment.
	slots := min(window, max(nseg, 1)) // receive buffers per peer
	sizes := []int{segE * ws, segE * 4}
	for range n * slots {
		sizes = append(sizes, segE*es)
	}
	buf := g.buffers(sizes...)
	acc, tmp := buf[0], buf[1]
	slot := func(p, s int) []byte { return buf[2+p*slots+s%slots] }
	reqs := make([][]*request, n)
	for p := range reqs {
		reqs[p] = make([]*request, slots)
	}
	postSeg := func(s int) {
		a, b := segOf(myLo, myHi, s)
		for _, p := range peers {
			reqs[p][s%slots] = g.post(p, tag(tagReduceScatter, s), slot(p, s)[:(b-a)*es])
		}
	}
	for s := range min(window, nseg) {
		postSeg(s)
	}
	var err error
	for s := 0; s < nseg && err == nil; s++ {
		a, b := segOf(myLo, myHi, s)
		for _, p := range peers {
			if err = g.wait(reqs[p][s%slots], p, what, dl); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
		m := b - a
		reduceInto(out[(a-myLo)*es:(b-myLo)*es], func(r int) []byte {
			if r == me {
				return data[a*es : b*es]
			}
			return slot(r, s)[:m*es]
		}, n, acc, tmp, dt, op)
		if s+window < nseg {
			postSeg(s + window)
			for _, p := range peers {
				if err = g.send(p, tag(tagCredit, s+window), nil, dl); err != nil {
					break
				}
			}
		}
		if fan != nil {
			fan.push(s)
		}
	}
	if err != nil {
		g.t.fail(err) // unblocks the senders
	}
	if fan != nil {
		if e := fan.finish(); err == nil {
			err = e
		}
	}
	wg.Wait()
	for _, e := range sendErr {
		if err == nil {
			err = e
		}
	}
	if err != nil {
		return err
	}
	for _, p := range peers {
		for _, r := range gatherReqs[p] {
			if err := g.wait(r, p, what, dl); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *group) ReduceScatter(out, in *tensor.Tensor, op comm.Op) error {
	const what = "ReduceScatter"
	dl, err := g.begin(what, out, in)
	if err != nil {
		return err
	}
	if err := comm.CheckSizes(what, out, in, g.Size()); err != nil {
		return err
	}
	if err := comm.CheckOp(op, in.DType()); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m := out.Numel()
	if g.Size() == 1 {
		copy(out.Data, in.Data)
		return nil
	}
	if err := g.reduceScatter(what, in.Data, func(r int) int { return r * m }, in.DType(), op, out.Data, false, dl); err != nil {
		return g.fail(what, err)
	}
	return nil
}

func (g *group) AllGather(out, in *tensor.Tensor) error {
	const what = "AllGather"
	dl, err := g.begin(what, out, in)
	if err != nil {
		return err
	}
	if err := comm.CheckSizes(what, in, out, g.Size()); err != nil {
		return err
	}
	nb := len(in.Data)
	copy(out.Data[g.rank*nb:], in.Data)
	segB := g.segElems(in.DType()) * in.DType().Size()
	nseg := segCount(nb, segB)
	peers := g.others()
	var reqs []*request
	var from []int
	for _, p := range peers {
		for s := range nseg {
			a, b := p*nb+s*segB, p*nb+min((s+1)*segB, nb)
			reqs = append(reqs, g.post(p, tag(tagAllGather, s), out.Data[a:b]))
			from = append(from, p)
		}
	}
	fan := startFanout(peers, nseg, func(p, s int) error {
		return g.send(p, tag(tagAllGather, s), in.Data[s*segB:min((s+1)*segB, nb)], dl)
	})
	for s := range nseg {
		fan.push(s)
	}
	var errs error
	for i, r := range reqs {
		if err := g.wait(r, from[i], what, dl); err != nil {
			errs = err
			g.t.fail(err)
			break
		}
	}
	if err := fan.finish(); errs == nil {
		errs = err
	}
	if errs != nil {
		return g.fail(what, errs)
	}
	return nil
}

func (g *group) Broadcast(t *tensor.Tensor, root int) error {
	const what = "Broadcast"
	dl, err := g.begin(what, t)
	if err != nil {
		return err
	}
	n := g.Size()
	if root < 0 || root >= n {
		return fmt.Errorf("%s: root %d out of range for %s of size %d", what, root, g.name, n)
	}
	if n == 1 || len(t.Data) == 0 {
		return nil
	}
	if len(t.Data) <= g.small || n == 2 || t.Numel() < n {
		if g.rank == root {
			for _, p := range g.others() {
				if err := g.send(p, tag(tagBcast, 0), t.Data, dl); err != nil {
					return g.fail(what, err)
				}
			}
			return nil
		}
		if err := g.wait(g.post(root, tag(tagBcast, 0), t.Data), root, what, dl); err != nil {
			return g.fail(what, err)
		}
		return nil
	}
	if err := g.scatterGather(t, root, dl); err != nil {
		return g.fail(what, err)
	}
	return nil
}

// scatterGather broadcasts a large tensor: the root sends chunk r to rank r, which forwards
// each segment to the other non-root ranks as it arrives; the root sends its own chunk to all.
func (g *group) scatterGather(t *tensor.Tensor, root int, dl time.Time) error {
	const what = "Broadcast"
	n, N, es := g.Size(), t.Numel(), t.DType().Size()
	lo := func(r int) int { return r * N / n }
	segE := g.segElems(t.DType())
	seg := func(r, s int) []byte {
		a, b := lo(r)+s*segE, min(lo(r)+(s+1)*segE, lo(r+1))
		return t.Data[a*es : b*es]
	}
	nsegOf := func(r int) int { return segCount(lo(r+1)-lo(r), segE) }
	if g.rank == root {
		fan := startFanout(g.others(), 1, func(p, _ int) error {
			for s := range nsegOf(p) {
				if err := g.send(p, tag(tagBcast, s), seg(p, s), dl); err != nil {
					return err
				}
			}
			for s := range nsegOf(root) {
				if err := g.send(p, tag(tagBcastGather, s), seg(root, s), dl); err != nil {
					return err
				}
			}
			return nil
		})
		fan.push(0)
		return fan.finish()
	}
	me := g.rank
	var reqs []*request
	var from []int
	for _, q := range g.others() {
		for s := range nsegOf(q) {
			reqs = append(reqs, g.post(q, tag(tagBcastGather, s), seg(q, s)))
			from = append(from, q)
		}
	}
	fan := startFanout(g.others(root), nsegOf(me), func(p, s int) error {
		return g.send(p, tag(tagBcastGather, s), seg(me, s), dl)
	})
	var err error
	for s := range nsegOf(me) {
		if err = g.wait(g.post(root, tag(tagBcast, s), seg(me, s)), root, what, dl); err != nil {
			g.t.fail(err)
			break
		}
		fan.push(s)
	}
	if e := fan.finish(); err == nil {
		err = e
	}
	if err != nil {
		return err
	}
	for i, r := range reqs {
		if err := g.wait(r, from[i], what, dl); err != nil {
			return err
		}
	}
	return nil
}

func (g *group) checkPeer(what string, peer int) error {
	if peer < 0 || peer >= g.Size() || peer == g.rank {
		return fmt.Errorf("%s: peer %d is not another rank of %s (rank %d of %d)", what, peer, g.name, g.rank, g.Size())
	}
	return nil
}

func (g *group) Send(t *tensor.Tensor, peer int) error {
	const what = "Send"
	dl, err := g.begin(what, t)
	if err != nil {
		return err
	}
	if err := g.checkPeer(what, peer); err != nil {
		return err
	}
	if err := g.send(peer, tag(tagP2P, 0), t.Data, dl); err != nil {
		return g.failP2P(what, err)
	}
	return nil
}

func (g *group) Recv(t *tensor.Tensor, peer int) error {
	const what = "Recv"
	dl, err := g.begin(what, t)
	if err != nil {
		return err
	}
	if err := g.checkPeer(what, peer); err != nil {
		return err
	}
	if err := g.wait(g.post(peer, tag(tagP2P, 0), t.Data), peer, what, dl); err != nil {
		return g.failP2P(what, err)
	}
	return nil
}

func (g *group) Barrier() error {
	const what = "Barrier"
	dl, err := g.begin(what)
	if err != nil {
		return err
	}
	reqs := make([]*request, g.Size())
	for _, p := range g.others() {
		reqs[p] = g.post(p, tag(tagBarrier, 0), nil)
	}
	for _, p := range g.others() {
		if err := g.send(p, tag(tagBarrier, 0), nil, dl); err != nil {
			return g.fail(what, err)
		}
	}
	for _, p := range g.others() {
		if err := g.wait(reqs[p], p, what, dl); err != nil {
			return g.fail(what, err)
		}
	}
	return nil
}

// Split all-gathers every rank's (color, key) and forms the groups locally; members of a
// group agree on its id, a hash of the parent's id, the split's sequence number and the color.
func (g *group) Split(color, key int) (comm.Comm, error) {
	if _, err := g.begin("Split"); err != nil {
		return nil, err
	}
	in := tensor.FromI64([]int64{int64(color), int64(key)}, 2)
	all := tensor.New(tensor.I64, 2*g.Size())
	if err := g.AllGather(all, in); err != nil {
		return nil, fmt.Errorf("Split: %w", err)
	}
	g.splits++
	if color < 0 {
		return nil, nil
	}
	type member struct{ key, parent int }
	var ms []member
	v := all.I64()
	for r := range g.Size() {
		if v[2*r] == int64(color) {
			ms = append(ms, member{int(v[2*r+1]), r})
		}
	}
	slices.SortFunc(ms, func(a, b member) int { return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.parent, b.parent)) })
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d/%d", g.id, g.splits, color)
	sub := &group{t: g.t, id: h.Sum64() &^ (1 << 63), name: fmt.Sprintf("%s/split%d.color%d", g.name, g.splits, color),
		small: g.small, seg: g.seg, window: g.window}
	for i, m := range ms {
		sub.ranks = append(sub.ranks, g.ranks[m.parent])
		if m.parent == g.rank {
			sub.rank = i
		}
	}
	return sub, nil
}

func (g *group) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	if g.world {
		g.t.close()
	}
	return nil
}
