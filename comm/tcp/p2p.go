package tcp

import (
	"fmt"

	"github.com/gomegatron/gomegatron/tensor"
)

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
