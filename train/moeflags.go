package train

import "fmt"

// moeLaterFlags checks the later Megatron-Core MoE flags against what is implemented:
// dropless routing, softmax scores, an fp32 router (--moe-layer-freq is layers.Config's).
func (a *Args) moeLaterFlags() error {
	switch a.MoETokenDispatcherType {
	case "allgather", "alltoall":
	default:
		return fmt.Errorf("--moe-token-dispatcher-type %q: allgather and alltoall are supported (the same dropless routing)", a.MoETokenDispatcherType)
	}
	if a.MoERouterScoreFunction != "softmax" {
		return fmt.Errorf("--moe-router-score-function %q is not supported (softmax is)", a.MoERouterScoreFunction)
	}
	if a.MoERouterDtype != "" && a.MoERouterDtype != "fp32" {
		return fmt.Errorf("--moe-router-dtype %q is not supported (the router computes in fp32)", a.MoERouterDtype)
	}
	switch a.MoETokenDropPolicy {
	case "probs", "position":
	default:
		return fmt.Errorf("--moe-token-drop-policy %q: want probs or position", a.MoETokenDropPolicy)
	}
	for _, f := range []struct {
		set  bool
		flag string
	}{{a.MoEExpertCapacityFactor != 0, "--moe-expert-capacity-factor (token dropping; routing is dropless)"},
		{a.MoEPadToCapacity, "--moe-pad-expert-input-to-capacity"}, {a.MoERouterTopKScaling != 0, "--moe-router-topk-scaling-factor"},
		{a.MoERouterExpertBias, "--moe-router-enable-expert-bias"}, {a.MoERouterNumGroups != 0 || a.MoERouterGroupTopK != 0, "--moe-router-num-groups/--moe-router-group-topk"}} {
		if f.set {
			return fmt.Errorf("%s is not supported yet", f.flag)
		}
	}
	return nil
}
