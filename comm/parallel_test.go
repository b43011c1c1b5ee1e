package comm_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/tensor"
)

// TestParallelStateGroups builds the parallel state on in-process worlds and checks, for
// every group of every rank, that all-gathering the world ranks over the group's Comm yields
// exactly the group GroupRanks lists (members and order), and that the coordinates match.
func TestParallelStateGroups(t *testing.T) {
	cases := []struct {
		world int
		cfg   comm.ParallelConfig
	}{
		{8, comm.ParallelConfig{TP: 2, PP: 2}},
		{8, comm.ParallelConfig{TP: 2, CP: 2, PP: 2}},
		{8, comm.ParallelConfig{TP: 2, PP: 4}},
		{6, comm.ParallelConfig{TP: 3}},
		{8, comm.ParallelConfig{TP: 2, PP: 2, Order: "tp-pp-dp"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("world%d_%+v", c.world, c.cfg), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			world, err := tcp.LocalWorld(ctx, c.world, tcp.Options{Timeout: 20 * time.Second})
			require.NoError(t, err)
			errs := make([]error, c.world)
			var wg sync.WaitGroup
			for r := range world {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer world[r].Close()
					errs[r] = checkState(world[r], c.cfg)
				}()
			}
			wg.Wait()
			for r, err := range errs {
				require.NoError(t, err, "rank %d", r)
			}
		})
	}
}

func checkState(w comm.Comm, cfg comm.ParallelConfig) error {
	ps, err := comm.NewParallelState(w, cfg)
	if err != nil {
		return err
	}
	defer ps.Close()
	want, err := comm.RankCoordinates(w.Rank(), cfg, w.Size())
	if err != nil {
		return err
	}
	if ps.Coords != want {
		return fmt.Errorf("coords %+v, want %+v", ps.Coords, want)
	}
	groups := []struct {
		kind comm.GroupKind
		c    comm.Comm
	}{
		{comm.GroupTP, ps.TP}, {comm.GroupCP, ps.CP}, {comm.GroupDP, ps.DP}, {comm.GroupPP, ps.PP},
		{comm.GroupDPCP, ps.DPCP}, {comm.GroupMP, ps.MP}, {comm.GroupAmax, ps.Amax},
		{comm.GroupEmbedding, ps.Embedding}, {comm.GroupPositionEmbedding, ps.PositionEmbedding},
	}
	for _, g := range groups {
		all, err := comm.GroupRanks(g.kind, cfg, w.Size())
		if err != nil {
			return err
		}
		var mine []int
		for _, ranks := range all {
			if slices.Contains(ranks, w.Rank()) {
				mine = ranks
			}
		}
		if mine == nil {
			if g.c != nil {
				return fmt.Errorf("%v: rank belongs to no group but has a Comm", g.kind)
			}
			continue
		}
		if g.c == nil {
			return fmt.Errorf("%v: no Comm for group %v", g.kind, mine)
		}
		in := tensor.FromI64([]int64{int64(w.Rank())}, 1)
		out := tensor.New(tensor.I64, g.c.Size())
		if err := g.c.AllGather(out, in); err != nil {
			return fmt.Errorf("%v: %w", g.kind, err)
		}
		got := make([]int, len(out.I64()))
		for i, v := range out.I64() {
			got[i] = int(v)
		}
		if !slices.Equal(got, mine) {
			return fmt.Errorf("%v: Comm spans %v, want %v", g.kind, got, mine)
		}
	}
	if ps.TP.Rank() != ps.Coords.TP || ps.PP.Rank() != ps.Coords.PP || ps.DP.Rank() != ps.Coords.DP || ps.CP.Rank() != ps.Coords.CP {
		return fmt.Errorf("group ranks differ from coordinates %+v", ps.Coords)
	}
	if ps.IsFirstStage() != (ps.Coords.PP == 0) || ps.IsLastStage() != (ps.Coords.PP == ps.PPSize-1) {
		return fmt.Errorf("stage predicates wrong")
	}
	return nil
}

func TestParallelStateRejectsBadLayout(t *testing.T) {
	_, err := comm.NewParallelState(comm.NewSingle(), comm.ParallelConfig{TP: 2})
	require.ErrorContains(t, err, "world size 1 is not divisible by tensor-model-parallel-size (2)")
}
