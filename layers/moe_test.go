package layers

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/tensor"
)

// megatronMoE transcribes Megatron-LM 240126's MoELayer (router.py TopKRouter with
// aux_loss or sinkhorn balancing (training and eval) and the z-loss, token_dispatcher.py MoEDroplessTokenDispatcher
// without SP/EP, experts.py SequentialMLP with SwiGLU) in float64 torch, with Megatron-Core's
// later pre-softmax scores (moe_router_pre_softmax) and SharedExpertMLP (SwiGLU, optional
// sigmoid gate_weight, added to the experts' output). The
// MoEAuxLossAutoScaler gives the auxiliary losses the gradient `scale`, so the objective
// is Σ out·dout + scale·(aux + z). Reads the inputs as JSON on stdin, prints the output
// and the gradients as JSON.
const megatronMoE = `
import json, sys, torch
d = json.load(sys.stdin)
T = lambda k: torch.tensor(d[k], dtype=torch.float64)
N, h, E, k, F = d["N"], d["h"], d["E"], d["k"], d["F"]
x = T("x").view(N, h).requires_grad_()
R = T("router").view(E, h).requires_grad_()
if d["grouped"]:  # GroupedMLP: gmm(x, weight1.view(E, h, -1)[e]), gmm(., weight2.view(E, -1, h)[e])
    weight1 = T("weight1").view(h, E * 2 * F).requires_grad_()
    weight2 = T("weight2").view(E * F, h).requires_grad_()
    w1, w2 = weight1.view(E, h, -1), weight2.view(E, -1, h)
    fc1 = lambda e, x: x @ w1[e]
    fc2 = lambda e, x: x @ w2[e]
else:
    W1 = [T("fc1_%d" % e).view(2 * F, h).requires_grad_() for e in range(E)]
    W2 = [T("fc2_%d" % e).view(h, F).requires_grad_() for e in range(E)]
    fc1 = lambda e, x: x @ W1[e].t()
    fc2 = lambda e, x: x @ W2[e].t()
dout = T("dout").view(N, h)
aux_c, z_c, scale = d["aux"], d["z"], d["scale"]

def sinkhorn(cost, tol=0.0001):
    cost = torch.exp(cost)
    d0 = torch.ones(cost.size(0), dtype=cost.dtype)
    d1 = torch.ones(cost.size(1), dtype=cost.dtype)
    eps, error, d1_old = 0.00000001, 1e9, d1
    while error > tol:
        d0 = (1 / d0.size(0)) * 1 / (torch.sum(d1 * cost, 1) + eps)
        d1 = (1 / d1.size(0)) * 1 / (torch.sum(d0.unsqueeze(1) * cost, 0) + eps)
        error = torch.mean(torch.abs(d1_old - d1))
        d1_old = d1
    return d1 * cost * d0.unsqueeze(1)

logits = torch.nn.functional.linear(x, R).view(-1, E)
extra = 0
if z_c:
    extra = extra + torch.mean(torch.square(torch.logsumexp(logits, dim=-1))) * z_c
z_logits = logits
if d.get("jit"):
    logits = logits * T("jit").view(N, E)  # the jitter's draws, after the z-loss
if d["type"] == "sinkhorn":
    act = torch.sigmoid(logits) if k == 1 else torch.softmax(logits, dim=-1)
    if d["eval"]:
        scores, indices = torch.topk(act, k=k, dim=1)
    else:
        with torch.no_grad():
            _, indices = torch.topk(sinkhorn(logits.float()), k=k, dim=1)
        scores = torch.gather(act, 1, indices)
    aux = torch.zeros((), dtype=torch.float64)
else:
    G, GK, sig = d["G"], d["GK"], d["sigmoid"]
    def topk(v):  # Megatron-Core's group_limited_topk when groups are set
        if not GK:
            return torch.topk(v, k=k, dim=1)
        gs = v.view(N, G, -1).topk(k // GK, dim=-1)[0].sum(dim=-1)
        gi = torch.topk(gs, k=GK, dim=-1, sorted=False)[1]
        gm = torch.zeros_like(gs).scatter(1, gi, 1)
        em = gm.unsqueeze(-1).expand(N, G, E // G).reshape(N, -1)
        return torch.topk(v.masked_fill(~em.bool(), float("-inf")), k=k, dim=1)
    if sig:  # sigmoid scores, renormalised over the top k when k > 1; the aux loss's σ/Σσ
        s_all = torch.sigmoid(logits)
        if d.get("bias"):  # the expert bias chooses (and scores the groups), σ weighs
            _, indices = topk(s_all + T("bias").view(1, E))
        else:
            _, indices = topk(s_all)
        scores = torch.gather(s_all, 1, indices)
        if k > 1:
            scores = scores / (scores.sum(dim=-1, keepdim=True) + 1e-20)
        probs = s_all / (s_all.sum(dim=-1, keepdim=True) + 1e-20)
    else:
        probs = torch.softmax(logits, dim=-1)
        if d["pre"]:  # the top k of the softmax over all experts
            scores, indices = topk(probs)
        else:
            top_logits, indices = topk(logits)
            scores = torch.softmax(top_logits, dim=-1)
    if d["topk_scale"]:
        scores = scores * d["topk_scale"]
    # The aux losses count the top k of their own scores (Megatron-Core's
    # compute_routing_scores_for_aux_loss), not the experts groups or the bias chose.
    mask = torch.nn.functional.one_hot(torch.topk(probs, k=k, dim=1)[1], num_classes=E).sum(dim=1)
    if d["type"] == "seq_aux_loss":  # the switch loss of each sequence ([s, b] tokens as [s, b·E]), f/k, over b
        B = d["B"]
        s = N // B
        p_seq, m_seq = probs.reshape(s, B * E), mask.double().reshape(s, B * E)
        aux = torch.sum(p_seq.sum(dim=0) * m_seq.sum(dim=0)) * (E * aux_c / (k * s * s)) / B
    else:
        aux = torch.sum(probs.mean(dim=0) * mask.double().mean(dim=0)) * E * aux_c
extra = extra + aux

hidden = x.view(-1, h)
if k > 1:
    glm = torch.ones_like(indices).bool()
    local_indices = indices.masked_select(glm)
    local_probs = scores.masked_select(glm)
    glm = glm.nonzero()[:, 0].view(-1, 1).expand(-1, h)
    local_hidden = torch.gather(hidden, 0, glm)
else:
    local_indices, local_probs, local_hidden, glm = indices, scores, hidden, None
order = torch.argsort(local_indices.view(-1), dim=0, stable=True)
tpe = torch.histc(local_indices.double(), bins=E, min=0, max=E - 1).long()
idx = order.view(-1, 1).expand(-1, h)
permuted = torch.gather(local_hidden, 0, idx)
out_local = torch.zeros_like(permuted)
cum = torch.cat((torch.zeros(1, dtype=torch.long), torch.cumsum(tpe, dim=0)))
for e in range(E):
    a, b = cum[e], cum[e + 1]
    f = fc1(e, permuted[a:b])
    g0, g1 = torch.chunk(f, 2, dim=-1)
    out_local[a:b] = fc2(e, torch.nn.functional.silu(g0) * g1)
un = torch.zeros_like(out_local).scatter(0, idx, out_local)
if k > 1:
    un = un * local_probs.view(-1, 1)
    out = torch.zeros(N, h, dtype=torch.float64).scatter_add(0, glm, un)
else:
    out = un * local_probs
S = d["S"]
if S:  # SharedExpertMLP: a SwiGLU MLP of every token, times sigmoid(x·gate_weight)
    SW1 = T("sfc1").view(2 * S, h).requires_grad_()
    SW2 = T("sfc2").view(h, S).requires_grad_()
    a0, a1 = torch.chunk(x @ SW1.t(), 2, dim=-1)
    shared = (torch.nn.functional.silu(a0) * a1) @ SW2.t()
    if d["gate"]:
        G = T("gate").view(1, h).requires_grad_()
        shared = shared * torch.sigmoid(x @ G.t())
    out = out + shared
(torch.sum(out * dout) + scale * extra).backward()
z_val = float(torch.mean(torch.square(torch.logsumexp(z_logits, dim=-1))) * z_c)
res = {"out": out.flatten().tolist(), "dx": x.grad.flatten().tolist(), "drouter": R.grad.flatten().tolist(),
       "aux": float(aux), "z": z_val}
if d["grouped"]:
    res["dweight1"], res["dweight2"] = weight1.grad.flatten().tolist(), weight2.grad.flatten().tolist()
else:
    for e in range(E):
        res["dfc1_%d" % e] = W1[e].grad.flatten().tolist()
        res["dfc2_%d" % e] = W2[e].grad.flatten().tolist()
if S:
    res["dsfc1"], res["dsfc2"] = SW1.grad.flatten().tolist(), SW2.grad.flatten().tolist()
    if d["gate"]:
        res["dgate"] = G.grad.flatten().tolist()
print(json.dumps(res))
`

func TestMoEMatchesMegatron(t *testing.T) {
	if _, err := exec.Command("/usr/bin/python3", "-c", "import torch").CombinedOutput(); err != nil {
		t.Skipf("skipping: needs /usr/bin/python3 with torch for the reference (%v)", err)
	}
	for _, tc := range []moeCase{{2, 0.01, 0.001, "aux_loss", false, 0, false, moeExtras{}}, {1, 0.1, 0, "aux_loss", false, 0, false, moeExtras{}},
		{3, 0, 0.01, "aux_loss", false, 0, false, moeExtras{}},
		{1, 0, 0.001, "sinkhorn", false, 0, false, moeExtras{}}, {2, 0, 0, "sinkhorn", false, 0, false, moeExtras{}},
		{3, 0, 0.01, "sinkhorn", false, 0, false, moeExtras{}},
		{2, 0, 0.001, "sinkhorn", true, 0, false, moeExtras{}}, {1, 0, 0, "sinkhorn", true, 0, false, moeExtras{}},
		{2, 0.01, 0.01, "aux_loss", false, 0.2, false, moeExtras{}}, {1, 0, 0.01, "sinkhorn", false, 0.2, false, moeExtras{}},
		{2, 0.01, 0.001, "aux_loss", false, 0, true, moeExtras{}}, {1, 0, 0.01, "sinkhorn", false, 0, true, moeExtras{}},
		// Qwen1.5/Qwen2-MoE: pre-softmax scores, shared experts with and without the gate.
		{2, 0.01, 0, "aux_loss", false, 0, false, moeExtras{pre: true}}, {1, 0, 0.001, "aux_loss", false, 0, false, moeExtras{pre: true}},
		{2, 0.01, 0.001, "aux_loss", false, 0, false, moeExtras{pre: true, shared: 5, gate: true}},
		{2, 0.01, 0, "aux_loss", false, 0.2, true, moeExtras{shared: 3}}, {1, 0, 0, "aux_loss", false, 0, false, moeExtras{shared: 4, gate: true}},
		// DeepSeek-V2's per-sequence aux loss: 3 sequences of 4 tokens; 1 sequence.
		{2, 0.01, 0.001, "seq_aux_loss", false, 0, false, moeExtras{pre: true, shared: 4, seqs: 3}},
		{3, 0.1, 0, "seq_aux_loss", false, 0, false, moeExtras{seqs: 3}}, {2, 0.1, 0, "seq_aux_loss", false, 0, false, moeExtras{seqs: 1}},
		// DeepSeek-V3's router: sigmoid scores, their scaling, group-limited routing; and
		// each on its own with softmax scores.
		{2, 0.01, 0.001, "seq_aux_loss", false, 0, false, moeExtras{sigmoid: true, scaling: 2.5, groups: 2, gtopk: 1, shared: 4, seqs: 3}},
		{2, 0, 0.001, "aux_loss", false, 0, false, moeExtras{sigmoid: true, scaling: 2.5, groups: 2, gtopk: 1, bias: true}},
		{3, 0.01, 0, "aux_loss", false, 0, false, moeExtras{sigmoid: true, bias: true}},
		{1, 0.01, 0, "aux_loss", false, 0.2, false, moeExtras{sigmoid: true}}, {3, 0, 0.001, "aux_loss", false, 0, true, moeExtras{sigmoid: true, scaling: 1.5}},
		{2, 0.01, 0, "aux_loss", false, 0, false, moeExtras{scaling: 3, groups: 2, gtopk: 2}}, {2, 0, 0.01, "aux_loss", false, 0, false, moeExtras{pre: true, groups: 4, gtopk: 2}},
		{1, 0.01, 0, "aux_loss", false, 0, false, moeExtras{scaling: 2}}} {
		t.Run(fmt.Sprintf("%s_top%d_aux%v_z%v_eval%v_jitter%v_grouped%v_%+v", tc.typ, tc.k, tc.aux, tc.z, tc.eval, tc.jitter, tc.grouped, tc.extras), func(t *testing.T) {
			checkMoEAgainstMegatron(t, tc)
		})
	}
}

type moeCase struct {
	k       int
	aux, z  float64
	typ     string
	eval    bool
	jitter  float64
	grouped bool
	extras  moeExtras
}

// moeExtras are Megatron-Core's later router and shared-expert options.
type moeExtras struct {
	pre    bool // --moe-router-pre-softmax
	shared int  // --moe-shared-expert-intermediate-size
	gate   bool // --moe-shared-expert-gate
	seqs   int  // sequences in the microbatch (seq_aux_loss); 0: 11 tokens of one
	// DeepSeek-V3's router: --moe-router-score-function sigmoid, the top-k scaling factor,
	// groups and the groups each token chooses.
	sigmoid       bool
	scaling       float64
	groups, gtopk int
	bias          bool // --moe-router-enable-expert-bias
}

func checkMoEAgainstMegatron(t *testing.T, tc moeCase) {
	k, auxC, zC, typ, eval, jitter, grouped := tc.k, tc.aux, tc.z, tc.typ, tc.eval, tc.jitter, tc.grouped
	be := cpu.New()
	const h, F, E = 8, 6, 4
	N := 11
	if tc.extras.seqs > 0 {
		N = 4 * tc.extras.seqs
	}
	cfg := Defaults()
	cfg.HiddenSize, cfg.FFNHiddenSize, cfg.SwiGLU, cfg.DisableBiasLinear = h, F, true, true
	cfg.NumExperts, cfg.MoERouterTopK, cfg.MoEAuxLossCoeff, cfg.MoEZLossCoeff = E, k, auxC, zC
	cfg.MoERouterLoadBalancingType, cfg.evaluating, cfg.MoEInputJitterEps = typ, eval, jitter
	cfg.MoEGroupedGemm = grouped
	cfg.MoERouterPreSoftmax, cfg.MoESharedExpertIntermediateSize, cfg.MoESharedExpertGate = tc.extras.pre, tc.extras.shared, tc.extras.gate
	cfg.MoERouterTopKScaling, cfg.MoERouterNumGroups, cfg.MoERouterGroupTopK = tc.extras.scaling, tc.extras.groups, tc.extras.gtopk
	if tc.extras.sigmoid {
		cfg.MoERouterScoreFunction = "sigmoid"
	}
	cfg.MoERouterEnableExpertBias = tc.extras.bias
	require.NoError(t, cfg.finalizeMoE())
	scale := float32(0.75)
	cast := &castScratch{be: be}
	ps := &paramSet{be: be, tp: 1, cast: cast, auxScale: &scale}
	m := newMoE(ps, "decoder.layers.0.", 0, &cfg, Parallel{}, &scale)
	rng := rand.New(rand.NewPCG(uint64(k), 7))
	randn := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
		return v
	}
	in := map[string]any{"N": N, "h": h, "E": E, "k": k, "F": F, "aux": auxC, "z": zC, "scale": scale, "type": typ, "eval": eval, "grouped": grouped,
		"sigmoid": tc.extras.sigmoid, "topk_scale": tc.extras.scaling, "G": tc.extras.groups, "GK": tc.extras.gtopk,
		"pre": tc.extras.pre, "S": tc.extras.shared, "gate": tc.extras.gate, "B": max(tc.extras.seqs, 1)}
	for _, p := range ps.all {
		v := randn(p.Numel(), 0.5)
		copy(p.Data.F32(), v)
		p.Grad = be.Alloc(tensor.F32, p.Shape...)
	}
	in["router"] = m.Router.Data.F32()
	if m.ExpertBias != nil {
		in["bias"] = m.ExpertBias.Data.F32()
	}
	if grouped {
		require.Equal(t, []int{h, E * 2 * F}, m.W1.Shape, "weight1 [h, E·2F]")
		require.Equal(t, []int{E * F, h}, m.W2.Shape, "weight2 [E·F, h]")
		in["weight1"], in["weight2"] = m.W1.Data.F32(), m.W2.Data.F32()
	} else {
		for e, ex := range m.Experts {
			in[fmt.Sprintf("fc1_%d", e)] = ex.FC1.W.Data.F32()
			in[fmt.Sprintf("fc2_%d", e)] = ex.FC2.W.Data.F32()
		}
	}
	if m.Shared != nil {
		in["sfc1"], in["sfc2"] = m.Shared.FC1.W.Data.F32(), m.Shared.FC2.W.Data.F32()
		if m.Gate != nil {
			in["gate"] = m.Gate.Data.F32()
		}
	}
	x, dout := tensor.FromF32(randn(N*h, 1), N, h), tensor.FromF32(randn(N*h, 1), N, h)
	in["x"], in["dout"] = x.F32(), dout.F32()

	ms, g := m.newStash(be, tensor.F32, N), m.newGrads(be, tensor.F32, N, N)
	out, dx := be.Alloc(tensor.F32, N, h), be.Alloc(tensor.F32, N, h)
	ms.jitterSeed, ms.jitterOffs, ms.seqs = 11, 1<<40, tc.extras.seqs
	require.NoError(t, m.Forward(be, cast, ms, out, x))
	if jitter > 0 {
		require.Len(t, ms.jit, N*E)
		for _, u := range ms.jit {
			require.InDelta(t, 1, u, jitter, "jitter draws in [1 − eps, 1 + eps]")
		}
		in["jit"] = ms.jit
	}
	require.NoError(t, m.Backward(be, cast, ms, g, dx, dout, x, x, 0))
	be.Add(dx, dx, g.dxr)

	js, err := json.Marshal(in)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "in.json")
	require.NoError(t, os.WriteFile(f, js, 0o644))
	cmd := exec.Command("/usr/bin/python3", "-c", megatronMoE)
	cmd.Stdin, err = os.Open(f)
	require.NoError(t, err)
	raw, err := cmd.CombinedOutput()
	require.NoError(t, err, "python: %s", raw)
	var want map[string]any
	require.NoError(t, json.Unmarshal(raw, &want))

	near := func(name string, got []float32) {
		w := want[name].([]any)
		require.Len(t, got, len(w), name)
		var num, den float64
		for i, v := range w {
			d := float64(got[i]) - v.(float64)
			num += d * d
			den += v.(float64) * v.(float64)
		}
		require.LessOrEqual(t, math.Sqrt(num), 1e-5*math.Sqrt(den)+1e-9, "%s: relative L2 error", name)
	}
	near("out", out.F32())
	near("dx", dx.F32())
	near("drouter", m.Router.Grad.F32())
	if grouped {
		near("dweight1", m.W1.Grad.F32())
		near("dweight2", m.W2.Grad.F32())
	} else {
		for e, ex := range m.Experts {
			near(fmt.Sprintf("dfc1_%d", e), ex.FC1.W.Grad.F32())
			near(fmt.Sprintf("dfc2_%d", e), ex.FC2.W.Grad.F32())
		}
	}
	if m.Shared != nil {
		near("dsfc1", m.Shared.FC1.W.Grad.F32())
		near("dsfc2", m.Shared.FC2.W.Grad.F32())
		if m.Gate != nil {
			near("dgate", m.Gate.Grad.F32())
		}
	}
	aux, z := m.auxLosses(ms)
	require.InDelta(t, want["aux"].(float64), aux, 1e-6)
	require.InDelta(t, want["z"].(float64), z, 1e-6)
	if k == 1 && auxC == 0 && zC == 0 && typ == "aux_loss" && !tc.extras.pre {
		require.Zero(t, m.Router.Grad.F32()[0])
	}
}

// auxLosses returns the microbatch's load-balancing and z losses (unscaled by the main
// loss scale) from the stash, to compare with Megatron's.
func (m *MoE) auxLosses(ms *moeStash) (aux, z float64) {
	c := m.cfg
	k, E, n := c.MoERouterTopK, c.NumExperts, ms.n
	pm, mm := make([]float64, E), make([]float64, E)
	sel := ms.sel[ms.own : ms.own+n*k]
	if ms.auxSel != nil {
		sel = ms.auxSel
	}
	for t := 0; t < n; t++ {
		for e := 0; e < E; e++ {
			pm[e] += float64(ms.probs[t*E+e])
		}
		for _, e := range sel[t*k : (t+1)*k] {
			mm[e]++
		}
		z += float64(ms.lse[t]) * float64(ms.lse[t])
	}
	if c.MoERouterLoadBalancingType == "seq_aux_loss" { // per sequence (token t is t mod b's)
		b := max(ms.seqs, 1)
		s := float64(n / b)
		for g := range b {
			clear(pm)
			clear(mm)
			for t := g; t < n; t += b {
				for e := 0; e < E; e++ {
					pm[e] += float64(ms.probs[t*E+e])
				}
				for _, e := range sel[t*k : (t+1)*k] {
					mm[e]++
				}
			}
			for e := range pm {
				aux += pm[e] * mm[e] / (float64(k) * s * s * float64(b))
			}
		}
		return c.MoEAuxLossCoeff * float64(E) * aux, c.MoEZLossCoeff * z / float64(n)
	}
	for e := range pm {
		aux += pm[e] / float64(n) * mm[e] / float64(n)
	}
	return c.MoEAuxLossCoeff * float64(E) * aux, c.MoEZLossCoeff * z / float64(n)
}
