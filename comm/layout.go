package comm

import (
	"fmt"
	"sort"
	"strings"
)

// ParallelConfig is Megatron's model-parallel layout: --tensor-model-parallel-size (TP),
// --pipeline-model-parallel-size (PP), --context-parallel-size (CP),
// --expert-model-parallel-size (EP), --num-layers-per-virtual-pipeline-stage turned into a
// virtual pipeline size (VPP, 0 or 1 = not interleaved) and the rank order (default
// "tp-cp-ep-dp-pp"). Zero sizes mean 1. The data-parallel size is derived:
// DP = world / (TP·PP·CP). Expert parallelism splits each data-parallel group, as
// Megatron-LM 240126's parallel_state does: the EP consecutive DP ranks of a block hold
// different experts (expert-parallel rank = DP rank mod EP) and the ranks EP apart hold the
// same ones (the expert-data-parallel group, "data modulo expert parallel").
type ParallelConfig struct {
	TP, PP, CP, EP, VPP int
	Order               string
}

// DefaultOrder is Megatron's default rank order (parallel_state.initialize_model_parallel).
const DefaultOrder = "tp-cp-ep-dp-pp"

// Coords are one rank's coordinates in every parallel dimension, as Megatron's
// get_*_rank() return them.
type Coords struct {
	Rank           int // global rank
	TP, CP, EP, DP int // tensor-, context-, expert-, data-parallel rank
	ExpertDP       int // rank in the expert-data-parallel group: DP rank / EP
	PP             int // pipeline stage
	DPCP           int // rank in the data-parallel group with context parallelism (dp-cp)
	MP             int // rank in the model-parallel group (tp-pp)
}

// GroupKind names one family of process groups.
type GroupKind int

const (
	GroupTP                GroupKind = iota // tensor parallel: "tp"
	GroupCP                                 // context parallel: "cp"
	GroupDP                                 // data parallel: "dp"
	GroupPP                                 // pipeline parallel: "pp"
	GroupDPCP                               // data parallel with context parallel: "dp-cp"
	GroupMP                                 // model parallel: "tp-pp"
	GroupAmax                               // FP8 amax reduction: "tp-dp-cp", every rank of a PP stage
	GroupEmbedding                          // {first, last} stage of each pipeline group
	GroupPositionEmbedding                  // {first} stage of each pipeline group
	GroupEP                                 // expert parallel: "ep", EP consecutive DP ranks
	GroupTPEP                               // tensor and expert parallel: "tp-ep"
	GroupExpertDP                           // data modulo expert parallel: "dp-modulo-ep"
	numGroupKinds
)

var groupNames = [numGroupKinds]string{"tp", "cp", "dp", "pp", "dp-cp", "tp-pp", "tp-dp-cp", "embedding", "position-embedding", "ep", "tp-ep", "dp-modulo-ep"}

func (k GroupKind) String() string {
	if k < 0 || k >= numGroupKinds {
		return fmt.Sprintf("group(%d)", int(k))
	}
	return groupNames[k]
}

// layout is a validated configuration: the dimensions in rank order with their sizes and
// strides (global = Σ coord_d · stride_d, stride = product of the sizes before d).
type layout struct {
	world  int
	ep     int            // expert-parallel size (a split of dp; "ep" itself has size 1 here)
	dims   []string       // in order, e.g. tp cp ep dp pp
	size   map[string]int // per dimension
	stride map[string]int
}

func (c ParallelConfig) layout(world int) (*layout, error) {
	def := func(v int) int {
		if v == 0 {
			return 1
		}
		return v
	}
	tp, pp, cp, ep := def(c.TP), def(c.PP), def(c.CP), def(c.EP)
	switch {
	case world < 1:
		return nil, fmt.Errorf("parallel layout: world size %d must be ≥ 1", world)
	case tp < 0 || pp < 0 || cp < 0 || ep < 0 || c.VPP < 0:
		return nil, fmt.Errorf("parallel layout: negative size (tensor %d, pipeline %d, context %d, expert %d, virtual pipeline %d)", c.TP, c.PP, c.CP, c.EP, c.VPP)
	case world%(tp*pp*cp) != 0:
		return nil, fmt.Errorf("parallel layout: world size %d is not divisible by tensor-model-parallel-size (%d) × pipeline-model-parallel-size (%d) × context-parallel-size (%d) = %d", world, tp, pp, cp, tp*pp*cp)
	case c.VPP > 1 && pp == 1:
		return nil, fmt.Errorf("parallel layout: virtual pipeline size %d needs pipeline-model-parallel-size > 1", c.VPP)
	}
	order := c.Order
	if order == "" {
		order = DefaultOrder
	}
	dp := world / (tp * pp * cp)
	if dp%ep != 0 {
		return nil, fmt.Errorf("parallel layout: expert-model-parallel-size %d does not divide the data-parallel size %d", ep, dp)
	}
	if ep > 1 && (cp > 1 || c.Order != "" && c.Order != DefaultOrder) {
		return nil, fmt.Errorf("parallel layout: expert parallelism needs context-parallel-size 1 and the default rank order %s", DefaultOrder)
	}
	l := &layout{world: world, ep: ep, size: map[string]int{"tp": tp, "cp": cp, "ep": 1, "dp": dp, "pp": pp}, stride: map[string]int{}}
	for _, d := range strings.Split(order, "-") {
		if _, ok := l.size[d]; !ok {
			return nil, fmt.Errorf("parallel layout: order %q: unknown dimension %q (want tp, cp, ep, dp, pp)", order, d)
		}
		if _, dup := l.stride[d]; dup {
			return nil, fmt.Errorf("parallel layout: order %q names %q twice", order, d)
		}
		l.stride[d] = 0
		l.dims = append(l.dims, d)
	}
	// As Megatron's RankGenerator: a dimension of size 1 may be left out of the order (it
	// is appended); a larger one may not.
	for _, d := range []string{"tp", "cp", "ep", "dp", "pp"} {
		if _, ok := l.stride[d]; ok {
			continue
		}
		if l.size[d] != 1 {
			return nil, fmt.Errorf("parallel layout: order %q lacks dimension %q of size %d", order, d, l.size[d])
		}
		l.stride[d] = 0
		l.dims = append(l.dims, d)
	}
	s := 1
	for _, d := range l.dims {
		l.stride[d] = s
		s *= l.size[d]
	}
	return l, nil
}

// coord returns rank's coordinate in dimension d.
func (l *layout) coord(rank int, d string) int {
	if l.size[d] == 1 {
		return 0
	}
	return rank / l.stride[d] % l.size[d]
}

// groups returns the groups spanning the dimensions in mask, as Megatron's
// generate_masked_orthogonal_rank_groups lists them: group g enumerates the other
// dimensions' coordinates (first dimension of the order fastest) and the members of a group
// run over the masked dimensions' coordinates (first fastest).
func (l *layout) groups(mask ...string) [][]int {
	in := map[string]bool{}
	for _, d := range mask {
		in[d] = true
	}
	var masked, unmasked []string
	for _, d := range l.dims {
		if in[d] {
			masked = append(masked, d)
		} else {
			unmasked = append(unmasked, d)
		}
	}
	gsize := 1
	for _, d := range masked {
		gsize *= l.size[d]
	}
	ngroups := l.world / gsize
	out := make([][]int, ngroups)
	for g := range out {
		base := l.offset(g, unmasked)
		out[g] = make([]int, gsize)
		for m := range out[g] {
			out[g][m] = base + l.offset(m, masked)
		}
	}
	return out
}

// offset maps a mixed-radix index over dims (first fastest) to its global-rank offset.
func (l *layout) offset(idx int, dims []string) int {
	off := 0
	for _, d := range dims {
		off += idx % l.size[d] * l.stride[d]
		idx /= l.size[d]
	}
	return off
}

// position returns where rank sits among groups: the index of its group and its index in it.
func position(groups [][]int, rank int) (group, member int) {
	for g, ranks := range groups {
		for m, r := range ranks {
			if r == rank {
				return g, m
			}
		}
	}
	return -1, -1
}

// RankCoordinates returns rank's coordinates under cfg in a world of the given size, by
// Megatron's formula global = tp + TP·(cp + CP·(dp + DP·pp)) for the default order (in
// general: the mixed-radix decomposition of rank in the configured order).
func RankCoordinates(rank int, cfg ParallelConfig, world int) (Coords, error) {
	l, err := cfg.layout(world)
	if err != nil {
		return Coords{}, err
	}
	if rank < 0 || rank >= world {
		return Coords{}, fmt.Errorf("rank %d out of range for world size %d", rank, world)
	}
	c := Coords{Rank: rank, TP: l.coord(rank, "tp"), CP: l.coord(rank, "cp"), DP: l.coord(rank, "dp"), PP: l.coord(rank, "pp")}
	c.EP, c.ExpertDP = c.DP%l.ep, c.DP/l.ep
	_, c.DPCP = position(l.groups("dp", "cp"), rank)
	_, c.MP = position(l.groups("tp", "pp"), rank)
	return c, nil
}

// GroupRanks lists every group of the given kind as global ranks, in the order Megatron's
// parallel_state.initialize_model_parallel creates them (the rank order inside a group is the
// group-local rank order).
func GroupRanks(kind GroupKind, cfg ParallelConfig, world int) ([][]int, error) {
	l, err := cfg.layout(world)
	if err != nil {
		return nil, err
	}
	switch kind {
	case GroupTP:
		return l.groups("tp"), nil
	case GroupCP:
		return l.groups("cp"), nil
	case GroupDP:
		return l.groups("dp"), nil
	case GroupPP:
		return l.groups("pp"), nil
	case GroupDPCP:
		return l.groups("dp", "cp"), nil
	case GroupMP:
		return l.groups("tp", "pp"), nil
	case GroupAmax:
		return l.groups("tp", "dp", "cp"), nil
	case GroupEP, GroupTPEP, GroupExpertDP:
		return l.expertGroups(kind), nil
	case GroupEmbedding, GroupPositionEmbedding:
		pp := l.groups("pp")
		out := make([][]int, len(pp))
		for i, ranks := range pp {
			out[i] = []int{ranks[0]}
			if kind == GroupEmbedding && len(ranks) > 1 {
				out[i] = append(out[i], ranks[len(ranks)-1])
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown group kind %d", int(kind))
}

// expertGroups lists the expert groups as Megatron-LM 240126's initialize_model_parallel
// builds them (default order, so global = tp + TP·dp + TP·DP·pp): in each pipeline stage's
// block of TP·DP ranks, "tp-ep" groups are the consecutive TP·EP ranges, "dp-modulo-ep"
// groups take every TP·EP-th rank, and "ep" groups are one TP rank of a "tp-ep" range.
// With EP = 1 (any order) they are the singletons, the TP groups and the DP groups. Lists
// are sorted by first rank.
func (l *layout) expertGroups(kind GroupKind) [][]int {
	tp, dp, ep := l.size["tp"], l.size["dp"], l.ep
	if ep == 1 {
		var out [][]int
		switch kind {
		case GroupEP:
			out = l.groups()
		case GroupTPEP:
			out = l.groups("tp")
		case GroupExpertDP:
			out = l.groups("dp")
		}
		sort.Slice(out, func(a, b int) bool { return out[a][0] < out[b][0] })
		return out
	}
	var out [][]int
	for base := 0; base < l.world; base += tp * dp {
		switch kind {
		case GroupTPEP, GroupEP:
			for start := base; start < base+tp*dp; start += tp * ep {
				if kind == GroupTPEP {
					out = append(out, seq(start, start+tp*ep, 1))
					continue
				}
				for t := 0; t < tp; t++ {
					out = append(out, seq(start+t, start+tp*ep, tp))
				}
			}
		case GroupExpertDP:
			for j := 0; j < tp*ep; j++ {
				out = append(out, seq(base+j, base+tp*dp, tp*ep))
			}
		}
	}
	return out
}

// seq is lo, lo+step, … below hi.
func seq(lo, hi, step int) []int {
	var out []int
	for r := lo; r < hi; r += step {
		out = append(out, r)
	}
	return out
}
