package tcp

import (
	"fmt"
	"time"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

func (g *group) AllGather(out, in *tensor.Tensor) error {
	const what = "AllGather"
	dl, err := g.begin(what, out, in)
	if err != nil {
		return err
	}
	if err := comm.CheckSizes(what, in, out, g.Size()); err != nil {
		return err
	}
	inPlace, err := comm.InPlace(what, in, out, g.rank)
	if err != nil {
		return err
	}
	nb := len(in.Data)
	// In place, in is already out's own chunk: the peers' chunks are received around it
	// and it is only read (sent).
	if !inPlace {
		copy(out.Data[g.rank*nb:], in.Data)
	}
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
