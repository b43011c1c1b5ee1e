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
