package train

import (
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// signalFlag is --exit-signal-handler: SIGTERM sets a flag that every rank checks at the end
// of an iteration, agreeing through a max all-reduce, so all ranks save and exit together.
type signalFlag struct {
	on  bool
	got atomic.Bool
	ch  chan os.Signal
	buf *tensor.Tensor
}

func newSignalFlag(on bool) *signalFlag {
	f := &signalFlag{on: on, buf: tensor.New(tensor.I32, 1)}
	if on {
		f.ch = make(chan os.Signal, 1)
		signal.Notify(f.ch, syscall.SIGTERM)
		go func() {
			for range f.ch {
				f.got.Store(true)
			}
		}()
	}
	return f
}

// received reports whether any rank got SIGTERM.
func (f *signalFlag) received(world comm.Comm) (bool, error) {
	if !f.on {
		return false, nil
	}
	v := int32(0)
	if f.got.Load() {
		v = 1
	}
	f.buf.I32()[0] = v
	if world.Size() > 1 {
		if err := world.AllReduce(f.buf, comm.Max); err != nil {
			return false, err
		}
	}
	return f.buf.I32()[0] != 0, nil
}

func (f *signalFlag) close() {
	if f.on {
		signal.Stop(f.ch)
		close(f.ch)
	}
}
