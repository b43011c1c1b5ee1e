package tcp

import (
	"fmt"
	"sync"
	"time"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

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
	inPlace, err := comm.InPlace(what, out, in, g.rank)
	if err != nil {
		return err
	}
	m := out.Numel()
	if g.Size() == 1 {
		if !inPlace {
			copy(out.Data, in.Data)
		}
		return nil
	}
	// In place (out is in's own chunk) needs no temporary: the senders read only the peers'
	// chunks, and the owner folds each segment of its chunk, reading its own contribution
	// before writing the result over it (reduceInto lets dst alias a source), as AllReduce
	// does.
	if err := g.reduceScatter(what, in.Data, func(r int) int { return r * m }, in.DType(), op, out.Data, false, dl); err != nil {
		return g.fail(what, err)
	}
	return nil
}
