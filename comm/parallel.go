package comm

import (
	"errors"
	"fmt"
)

// ParallelState is Megatron's megatron.core.parallel_state for one rank: its coordinates and
// a communicator for each process group it belongs to.
type ParallelState struct {
	Config ParallelConfig
	World  Comm
	Coords Coords // this rank's coordinates (ps.Coords.TP is the TP rank; ps.TP the TP Comm)
	// Sizes of each dimension (DP derived from the world size).
	TPSize, CPSize, DPSize, PPSize, EPSize int

	TP, CP, DP, PP Comm
	DPCP           Comm // data parallel with context parallel (grad reduction, distributed optimizer)
	MP             Comm // model parallel: tp × pp
	Amax           Comm // FP8 amax reduction: tp × dp × cp (all ranks of this pipeline stage)
	// Embedding holds the first and last pipeline stage of this rank's pipeline (tied
	// word-embedding grads); nil on ranks of middle stages. With PP = 1 it is the rank alone.
	Embedding Comm
	// PositionEmbedding holds the first pipeline stage; nil on other stages.
	PositionEmbedding Comm
	// Expert parallelism: EP holds the DP ranks whose experts differ (the MoE token
	// exchange), TPEP the same joined over TP, ExpertDP the DP ranks holding the same
	// experts (their gradient reduction). With EP = 1, EP is the rank alone and ExpertDP
	// the DP group's ranks.
	EP, TPEP, ExpertDP Comm
}

// NewParallelState splits world into Megatron's process groups for cfg. It is collective over
// world: every rank must call it with the same cfg. Each group Comm's ranks are ordered as in
// GroupRanks, so e.g. PS.TP.Rank() == PS.Coords.TP.
func NewParallelState(world Comm, cfg ParallelConfig) (*ParallelState, error) {
	l, err := cfg.layout(world.Size())
	if err != nil {
		return nil, err
	}
	co, err := RankCoordinates(world.Rank(), cfg, world.Size())
	if err != nil {
		return nil, err
	}
	ps := &ParallelState{Config: cfg, World: world, Coords: co,
		TPSize: l.size["tp"], CPSize: l.size["cp"], DPSize: l.size["dp"], PPSize: l.size["pp"], EPSize: l.ep}
	slots := []struct {
		kind GroupKind
		dst  *Comm
	}{
		{GroupTP, &ps.TP}, {GroupCP, &ps.CP}, {GroupDP, &ps.DP}, {GroupPP, &ps.PP},
		{GroupDPCP, &ps.DPCP}, {GroupMP, &ps.MP}, {GroupAmax, &ps.Amax},
		{GroupEmbedding, &ps.Embedding}, {GroupPositionEmbedding, &ps.PositionEmbedding},
		{GroupEP, &ps.EP}, {GroupTPEP, &ps.TPEP}, {GroupExpertDP, &ps.ExpertDP},
	}
	for _, s := range slots {
		groups, err := GroupRanks(s.kind, cfg, world.Size())
		if err != nil {
			return nil, err
		}
		color, key := position(groups, world.Rank())
		c, err := world.Split(color, key)
		if err != nil {
			ps.Close()
			return nil, fmt.Errorf("building the %v group: %w", s.kind, err)
		}
		if color >= 0 && (c.Size() != len(groups[color]) || c.Rank() != key) {
			ps.Close()
			return nil, fmt.Errorf("building the %v group: got rank %d of %d, want %d of %d (ranks %v)",
				s.kind, c.Rank(), c.Size(), key, len(groups[color]), groups[color])
		}
		*s.dst = c
	}
	return ps, nil
}

// IsFirstStage reports whether this rank is on the first pipeline stage.
func (ps *ParallelState) IsFirstStage() bool { return ps.Coords.PP == 0 }

// IsLastStage reports whether this rank is on the last pipeline stage.
func (ps *ParallelState) IsLastStage() bool { return ps.Coords.PP == ps.PPSize-1 }

// Close closes the group communicators (not World).
func (ps *ParallelState) Close() error {
	var errs []error
	for _, c := range []Comm{ps.TP, ps.CP, ps.DP, ps.PP, ps.DPCP, ps.MP, ps.Amax, ps.Embedding, ps.PositionEmbedding, ps.EP, ps.TPEP, ps.ExpertDP} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
