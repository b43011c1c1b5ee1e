package comm

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGroupRanksExamples checks hand-derived groups from the formula
// global = tp + TP·(cp + CP·(dp + DP·pp)): world 16, TP 2, PP 4 (DP 2).
func TestGroupRanksExamples(t *testing.T) {
	cfg := ParallelConfig{TP: 2, PP: 4}
	cases := []struct {
		kind GroupKind
		want [][]int
	}{
		{GroupTP, [][]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}},
		{GroupPP, [][]int{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}},
		{GroupDP, [][]int{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}},
		{GroupEmbedding, [][]int{{0, 12}, {1, 13}, {2, 14}, {3, 15}}},
		{GroupPositionEmbedding, [][]int{{0}, {1}, {2}, {3}}},
		{GroupAmax, [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12, 13, 14, 15}}},
	}
	for _, c := range cases {
		t.Run(c.kind.String(), func(t *testing.T) {
			got, err := GroupRanks(c.kind, cfg, 16)
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
	co, err := RankCoordinates(13, cfg, 16)
	require.NoError(t, err)
	// 13 = 1 + 2·(0 + 1·(0 + 2·3)): tp 1, dp 0, pp 3.
	assert.Equal(t, Coords{Rank: 13, TP: 1, DP: 0, PP: 3, DPCP: 0, MP: 7}, co)
}

type refCase struct {
	World int    `json:"world"`
	TP    int    `json:"tp"`
	PP    int    `json:"pp"`
	CP    int    `json:"cp"`
	Order string `json:"order"`
	EP    int    `json:"ep,omitempty"`
}

type refResult struct {
	Groups map[string][][]int `json:"groups"`
	Coords [][6]int           `json:"coords"`
}

// TestGroupRanksMatchMegatron compares every group kind and every rank's coordinates with
// testdata/megatron_groups.py, an independent Python rendering of Megatron's RankGenerator.
func TestGroupRanksMatchMegatron(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: cannot run the Megatron RankGenerator reference")
	}
	cases := []refCase{
		{1, 1, 1, 1, DefaultOrder, 1},
		{8, 2, 2, 1, DefaultOrder, 1},
		{16, 2, 4, 1, DefaultOrder, 1},
		{16, 2, 2, 2, DefaultOrder, 1},
		{24, 2, 3, 2, DefaultOrder, 1},
		{32, 4, 2, 2, DefaultOrder, 1},
		{12, 3, 2, 1, DefaultOrder, 1},
		{16, 2, 2, 1, "tp-pp-dp", 1},
		{16, 2, 2, 2, "tp-cp-pp-dp", 1},
		{24, 2, 3, 2, "pp-dp-cp-tp", 1},
		{8, 1, 1, 1, DefaultOrder, 2},
		{16, 2, 2, 1, DefaultOrder, 2},
		{32, 2, 2, 1, DefaultOrder, 4},
		{48, 2, 2, 1, DefaultOrder, 3},
	}
	in, err := json.Marshal(cases)
	require.NoError(t, err)
	cmd := exec.Command(py, "testdata/megatron_groups.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "megatron_groups.py: %s", stderr.String())
	var ref []refResult
	require.NoError(t, json.Unmarshal(out, &ref))
	require.Len(t, ref, len(cases))
	for i, c := range cases {
		cfg := ParallelConfig{TP: c.TP, PP: c.PP, CP: c.CP, EP: c.EP, Order: c.Order}
		for k := GroupKind(0); k < numGroupKinds; k++ {
			want, ok := ref[i].Groups[k.String()]
			require.True(t, ok, "reference lacks %v", k)
			got, err := GroupRanks(k, cfg, c.World)
			require.NoError(t, err)
			assert.Equal(t, want, got, "case %+v group %v", c, k)
		}
		for r := 0; r < c.World; r++ {
			co, err := RankCoordinates(r, cfg, c.World)
			require.NoError(t, err)
			assert.Equal(t, ref[i].Coords[r], [6]int{co.TP, co.CP, co.DP, co.PP, co.EP, co.ExpertDP}, "case %+v rank %d", c, r)
			dpcp, _ := GroupRanks(GroupDPCP, cfg, c.World)
			_, m := position(dpcp, r)
			assert.Equal(t, m, co.DPCP)
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	cases := []struct {
		cfg   ParallelConfig
		world int
		want  string
	}{
		{ParallelConfig{TP: 2, PP: 3}, 8, "world size 8 is not divisible by tensor-model-parallel-size (2) × pipeline-model-parallel-size (3) × context-parallel-size (1) = 6"},
		{ParallelConfig{TP: 2, EP: 3}, 8, "expert-model-parallel-size 3 does not divide the data-parallel size 4"},
		{ParallelConfig{EP: 2, Order: "tp-cp-ep-pp-dp"}, 8, "expert parallelism needs context-parallel-size 1 and the default rank order"},
		{ParallelConfig{VPP: 2}, 8, "virtual pipeline size 2 needs pipeline-model-parallel-size > 1"},
		{ParallelConfig{Order: "tp-cp-xp-dp-pp"}, 8, `unknown dimension "xp"`},
		{ParallelConfig{CP: 2, Order: "tp-dp-pp"}, 8, `lacks dimension "cp" of size 2`},
		{ParallelConfig{Order: "tp-tp-cp-dp-pp"}, 8, `names "tp" twice`},
		{ParallelConfig{TP: -1}, 8, "negative size"},
	}
	for _, c := range cases {
		_, err := GroupRanks(GroupTP, c.cfg, c.world)
		require.Error(t, err, "%+v", c.cfg)
		assert.Contains(t, err.Error(), c.want)
	}
	_, err := RankCoordinates(8, ParallelConfig{}, 8)
	assert.ErrorContains(t, err, "rank 8 out of range for world size 8")
}
