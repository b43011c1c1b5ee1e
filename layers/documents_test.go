package layers_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
	"github.com/gomegatron/gomegatron/optim"
)

// packed lays documents end to end into rows of s tokens, with Megatron's
// --reset-position-ids/--reset-attention-mask view of them: positions restart and
// attention stops at each document boundary.
func packed(s int, rows ...[][]int64) layers.Batch {
	var bt layers.Batch
	for _, docs := range rows {
		var toks []int64
		for _, d := range docs {
			start := len(toks)
			for i, t := range d {
				toks = append(toks, t)
				bt.Positions = append(bt.Positions, int64(i))
				bt.DocStart = append(bt.DocStart, int32(start))
			}
		}
		if len(toks) != s {
			panic("documents must fill the row")
		}
		bt.Tokens = append(bt.Tokens, toks...)
		for i := range toks {
			bt.Labels = append(bt.Labels, (toks[i]*7+3)%50)
			bt.LossMask = append(bt.LossMask, 1)
		}
	}
	return bt
}

// TestPackedDocuments: with positions and attention reset per document, every token's loss
// in a packed row is the loss the document gets alone — for RoPE and learned positions, and
// under TP with sequence parallelism — while without the reset the later documents see
// their predecessors and their losses change.
func TestPackedDocuments(t *testing.T) {
	docA := []int64{11, 12, 13, 14, 15, 2}
	docB := []int64{21, 22, 23, 24, 25, 26, 27, 28, 29, 30}
	docC := []int64{31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46}
	const s = 16
	bt := packed(s, [][]int64{docA, docB}, [][]int64{docC})
	for _, preset := range []string{"tiny-llama", "tiny-gpt2"} {
		t.Run(preset, func(t *testing.T) {
			cfg := mustPreset(preset)
			cfg.HiddenDropout, cfg.AttentionDropout = 0, 0
			be := cpu.New()
			m, err := layers.NewGPTModel(be, cfg, 5)
			require.NoError(t, err)
			losses := func(bt layers.Batch, s, b int) []float32 {
				st := m.NewStash(s, b)
				_, _, err := m.Forward(st, bt, 1, 0)
				require.NoError(t, err)
				return st.TokenLosses()
			}
			got := losses(bt, s, 2)
			alone := func(doc []int64) []float32 {
				return losses(packed(len(doc), [][]int64{doc}), len(doc), 1)
			}
			want := append(append(alone(docA), alone(docB)...), alone(docC)...)
			for i := range want {
				require.InDelta(t, want[i], got[i], 1e-5*math.Abs(float64(want[i])), "token %d", i)
			}
			plain := bt
			plain.Positions, plain.DocStart = nil, nil
			noReset := losses(plain, s, 2)
			require.Equal(t, got[:len(docA)], noReset[:len(docA)], "the first document is unchanged")
			require.NotEqual(t, got[len(docA):s], noReset[len(docA):s], "later documents see their predecessors without the reset")
			require.Equal(t, got, losses(bt, s, 2), "positions restored after a batch without them")

			refLoss, refGrads, _ := runSharded(t, cfg, 1, false, bt, s, 2)
			loss, grads, _ := runSharded(t, cfg, 2, true, bt, s, 2)
			require.InDelta(t, refLoss, loss, 1e-5*math.Abs(refLoss))
			for k, w := range refGrads {
				require.Less(t, relErr(grads[k], w), 1e-5, "TP2+SP grad %s", k)
			}
		})
	}
}

// TestContextParallelPackedDocuments: the packed rows split over 2 context-parallel ranks
// (chunks 0+3 and 1+2 of 4, documents crossing chunk boundaries) give the single process's
// loss and, summed over the ranks and averaged as DP × CP does, its gradients.
func TestContextParallelPackedDocuments(t *testing.T) {
	cfg := mustPreset("tiny-llama")
	cfg.HiddenDropout, cfg.AttentionDropout = 0, 0
	t.Run("llama", func(t *testing.T) { contextParallelPacked(t, cfg) })
	cfg.QKLayernorm = true // the head norms run before the keys are gathered
	t.Run("qk-layernorm", func(t *testing.T) { contextParallelPacked(t, cfg) })
}

func contextParallelPacked(t *testing.T, cfg layers.Config) {
	docA := []int64{11, 12, 13, 14, 15, 2}
	docB := []int64{21, 22, 23, 24, 25, 26, 27, 28, 29, 30}
	docC := []int64{31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46}
	const s, cp = 16, 2
	bt := packed(s, [][]int64{docA, docB}, [][]int64{docC})
	refLoss, refGrads, _ := runSharded(t, cfg, 1, false, bt, s, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	comms, err := tcp.LocalWorld(ctx, cp, tcp.Options{Timeout: 30 * time.Second})
	require.NoError(t, err)
	defer func() {
		for _, c := range comms {
			c.Close()
		}
	}()
	models := make([]*layers.GPTModel, cp)
	sums, ns := make([]float64, cp), make([]float64, cp)
	errs := make([]error, cp)
	var wg sync.WaitGroup
	for r := range cp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			be := cpu.New()
			m, err := layers.NewParallelGPTModel(be, cfg, layers.Parallel{CP: comms[r]}, 99)
			if err != nil {
				errs[r] = err
				return
			}
			optim.Attach(be, m.Params, 1)
			st := m.NewStash(s, 2)
			if sums[r], ns[r], err = m.Forward(st, bt, 1, 0); err == nil {
				err = m.Backward(st, float32(1/ns[r]), nil)
			}
			models[r], errs[r] = m, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	loss := (sums[0] + sums[1]) / (ns[0] + ns[1])
	require.InDelta(t, refLoss, loss, 1e-5*math.Abs(refLoss))
	for i, p := range models[0].Params {
		g := make([]float32, p.Numel())
		for r := range cp {
			for j, v := range models[r].Params[i].Grad.F32() {
				g[j] += v / cp
			}
		}
		require.Less(t, relErr(g, refGrads[p.Name]), 1e-5, "CP2 grad %s", p.Name)
	}
}
