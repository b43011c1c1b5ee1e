package train

import "fmt"

// moeLaterFlags checks the later Megatron-Core MoE flags against what is implemented:
// dropless routing and an fp32 router (--moe-layer-freq and the router's score function,
// scaling and groups are layers.Config's).
func (a *Args) moeLaterFlags() error {
	switch a.MoETokenDispatcherType {
	case "allgather", "alltoall":
	default:
		return fmt.Errorf("--moe-token-dispatcher-type %q: allgather and alltoall are supported (the same dropless routing)", a.MoETokenDispatcherType)
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
		{a.MoEPadToCapacity, "--moe-pad-expert-input-to-capacity"}} {
		if f.set {
			return fmt.Errorf("%s is not supported yet", f.flag)
		}
	}
	return nil
}
