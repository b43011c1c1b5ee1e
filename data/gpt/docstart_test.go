package gpt

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocStartsIsTheResetMask: DocStarts encodes exactly the attention mask
// LTRMasksAndPositionIDs builds with --reset-attention-mask (token i sees j iff
// DocStarts[i] ≤ j ≤ i), and with --reset-position-ids every position is i − DocStarts[i].
func TestDocStartsIsTheResetMask(t *testing.T) {
	const eod = 2
	for _, tokens := range [][]int64{
		{5, 6, 2, 7, 8, 9, 2, 2, 4},
		{2, 3, 3},
		{3, 4, 5, 6},
		{7, 2},
	} {
		starts := DocStarts(tokens, eod)
		_, pos, mask := LTRMasksAndPositionIDs(tokens, eod, true, true, false, true)
		s := len(tokens)
		for i := range s {
			require.Equal(t, int64(i)-int64(starts[i]), pos[i], "%v: position %d", tokens, i)
			for j := range s {
				require.Equal(t, !(int(starts[i]) <= j && j <= i), mask[i*s+j], "%v: mask[%d][%d]", tokens, i, j)
			}
		}
	}
}
