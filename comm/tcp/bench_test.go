package tcp

import (
	"fmt"
	"sync"
	"testing"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/tensor"
)

// BenchmarkAllReduce measures in-process 4-rank f32 all-reduces (the multi-process numbers
// in docs/perf come from scripts/bench/allreduce_gloo.py).
func BenchmarkAllReduce(b *testing.B) {
	for _, nb := range []int{1 << 10, 64 << 10, 1 << 20, 16 << 20} {
		b.Run(fmt.Sprint(nb), func(b *testing.B) {
			comms, err := LocalWorld(b.Context(), 4, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				for _, c := range comms {
					c.Close()
				}
			}()
			b.SetBytes(int64(nb))
			var wg sync.WaitGroup
			for _, c := range comms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					x := tensor.New(tensor.F32, nb/4)
					for range b.N {
						if err := c.AllReduce(x, comm.Sum); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
