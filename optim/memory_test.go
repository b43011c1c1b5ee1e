package optim_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestMemoryPerParameter measures the bytes per parameter that weights, grads and optimizer
// state take with and without the distributed optimizer for DP 1, 2 and 4 (bf16 training),
// beside Megatron's formula: 18 bytes (2 bf16 weights + 4 fp32 grads + 4 main + 4 + 4 Adam)
// and 6 + 12/DP with the distributed optimizer. The CPU path keeps bf16 weights in float32
// storage (4 bytes): 20 and 8 + 12/DP. With ShadowWeights (the GPU path) the weights are
// 16-bit as Megatron's: 18 and 6 + 12/DP, + the F32 copies of the embeddings, norms and
// biases (Wide). The distributed optimizer's reduce-scatter and all-gather run in place in
// the grad and param buffers, as Megatron's, so the shard staging column is 0 (it was 8/DP,
// and 6/DP with 16-bit weights, when shards were staged outside the buffers).
// GOMEGATRON_MEMORY_REPORT=file writes the table.
func TestMemoryPerParameter(t *testing.T) {
	cfg, err := layers.Preset("small-llama")
	require.NoError(t, err)
	cfg.NumLayers, cfg.VocabSize = 2, 4096 // ~2.6M parameters: quick, and padding stays < 1%
	var rows []string
	for _, dp := range []int{1, 2, 4} {
		for _, variant := range []struct{ dist, shadow bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			dist, shadow := variant.dist, variant.shadow
			if dist && dp == 1 {
				continue
			}
			mems := make([]optim.Memory, dp)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			var comms []comm.Comm
			if dp > 1 {
				comms, err = tcp.LocalWorld(ctx, dp, tcp.Options{Timeout: time.Minute})
				require.NoError(t, err)
			}
			var wg sync.WaitGroup
			for r := 0; r < dp; r++ {
				wg.Add(1)
				go func(r int) {
					defer wg.Done()
					be := cpu.New()
					m, err := layers.NewGPTModel(be, cfg, 1)
					if err != nil {
						t.Error(err)
						return
					}
					g := optim.Groups{}
					if dp > 1 {
						g.DP = comms[r]
					}
					opt := optim.NewAdam(be, m.Params, optim.DefaultAdam(), dist, g)
					opt.SetModelDType(tensor.BF16)
					if shadow {
						opt.ShadowWeights()
					}
					mems[r] = opt.Memory()
				}(r)
			}
			wg.Wait()
			cancel()
			for _, c := range comms {
				c.Close()
			}
			mm := mems[0]
			n := float64(mm.Params)
			per := func(b int64) float64 { return float64(b) / n }
			total := per(mm.Weights + mm.Wide + mm.Grads + mm.Optimizer + mm.Staging)
			megatron, ours := 18.0, 20.0
			switch {
			case dist && shadow:
				megatron, ours = 6+12/float64(dp), 6+12/float64(dp)
			case dist:
				megatron, ours = 6+12/float64(dp), 8+12/float64(dp)
			case shadow:
				ours = 18
			}
			require.Zero(t, mm.Staging, "dp=%d dist=%v 16-bit=%v: no staging outside the buffers", dp, dist, shadow)
			ours += per(mm.Wide)
			// Buffers are padded (64-element alignment, lcm(DP,128) ends): allow that slack.
			require.InDelta(t, ours, total, 0.02*ours, "dp=%d dist=%v 16-bit=%v", dp, dist, shadow)
			rows = append(rows, fmt.Sprintf("| %d | %v | %v | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |",
				dp, dist, shadow, per(mm.Weights), per(mm.Wide), per(mm.Grads), per(mm.Optimizer), per(mm.Staging), total, ours, megatron))
		}
	}
	table := "| DP | distributed optimizer | 16-bit weights (GPU) | weights | F32 copies | grads | optimizer state | shard staging | total B/param | expected | Megatron formula (bf16) |\n|---|---|---|---|---|---|---|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
	t.Log("\n" + table)
	if out := os.Getenv("GOMEGATRON_MEMORY_REPORT"); out != "" {
		require.NoError(t, os.WriteFile(out, []byte(table), 0o644))
	}
}
