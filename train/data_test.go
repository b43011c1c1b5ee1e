package train

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/gpt"
)

// TestToBatchDocuments: with --reset-position-ids and --reset-attention-mask, a microbatch
// carries get_ltor_masks_and_position_ids's positions and each token's document start
// (the first token after the previous EOD), per sample; without them, neither.
func TestToBatchDocuments(t *testing.T) {
	const eod = 9
	ss := []*gpt.Sample{
		{Tokens: []int64{1, 2, eod, 3, 4, eod, eod, 5}, Labels: make([]int64, 8), LossMask: make([]float32, 8)},
		{Tokens: []int64{eod, 6, 7, 8, 1, 2, 3, 4}, Labels: make([]int64, 8), LossMask: make([]float32, 8)},
	}
	plain := toBatch(ss, documents{eod: eod})
	require.Nil(t, plain.Positions)
	require.Nil(t, plain.DocStart)
	bt := toBatch(ss, documents{eod: eod, resetPos: true, resetAttn: true})
	require.Equal(t, []int32{0, 0, 0, 3, 3, 3, 6, 7, 0, 1, 1, 1, 1, 1, 1, 1}, bt.DocStart)
	for k, s := range ss {
		_, pos, _ := gpt.LTRMasksAndPositionIDs(s.Tokens, eod, true, true, false, false)
		require.Equal(t, pos, bt.Positions[k*8:(k+1)*8], "sample %d: Megatron's position ids", k)
	}
	onlyPos := toBatch(ss, documents{eod: eod, resetPos: true})
	require.Equal(t, bt.Positions, onlyPos.Positions)
	require.Nil(t, onlyPos.DocStart)
}
