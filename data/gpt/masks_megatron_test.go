package gpt

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMasksMatchMegatron: the loss mask, position ids and attention mask equal Megatron-Core's
// _get_ltor_masks_and_position_ids (testdata/megatron_masks.json, written by
// testdata/megatron_masks.py) for every combination of --reset-position-ids,
// --reset-attention-mask and --eod-mask-loss, on sequences with documents ending anywhere
// (first token, last token, none); DocStarts describes the same reset mask.
func TestMasksMatchMegatron(t *testing.T) {
	raw, err := os.ReadFile("testdata/megatron_masks.json")
	require.NoError(t, err)
	var cases []struct {
		Tokens        []int64   `json:"tokens"`
		ResetPos      bool      `json:"reset_position_ids"`
		ResetAttn     bool      `json:"reset_attention_mask"`
		EODMaskLoss   bool      `json:"eod_mask_loss"`
		AttentionMask [][]int   `json:"attention_mask"`
		LossMask      []float32 `json:"loss_mask"`
		PositionIDs   []int64   `json:"position_ids"`
	}
	require.NoError(t, json.Unmarshal(raw, &cases))
	require.Len(t, cases, 48)
	const eod = 7
	for i, c := range cases {
		loss, pos, mask := LTRMasksAndPositionIDs(c.Tokens, eod, c.ResetPos, c.ResetAttn, c.EODMaskLoss, true)
		require.Equal(t, c.LossMask, loss, "case %d loss mask", i)
		require.Equal(t, c.PositionIDs, pos, "case %d position ids", i)
		s := len(c.Tokens)
		starts := DocStarts(c.Tokens, eod)
		for r := range s {
			for col := range s {
				want := c.AttentionMask[r][col] == 1 // true: masked
				require.Equal(t, want, mask[r*s+col], "case %d attention mask [%d, %d]", i, r, col)
				if c.ResetAttn {
					require.Equal(t, want, col > r || col < int(starts[r]), "case %d DocStarts at [%d, %d]", i, r, col)
				}
			}
		}
	}
}
