"""Reference process groups by Megatron-LM's RankGenerator semantics
(megatron/core/parallel_state.py: RankGenerator.get_ranks and
generate_masked_orthogonal_rank_groups), written independently of the Go code.

stdin: JSON list of {"world", "tp", "pp", "cp", "ep", "order"}; stdout: JSON list of
{"groups": {kind: [[ranks]]}, "coords": [[tp, cp, dp, pp, ep, expert_dp] per rank]}.

Expert groups (Megatron-LM 240126, which splits each data-parallel group): the DP group's
members in DP-rank order are cut into blocks of EP ("ep"), one member of each block forms
"dp-modulo-ep", and a block joined over its TP group is "tp-ep" (TP rank fastest). Group
lists are sorted by their first rank.
"""
import json
import sys


def masked_groups(world, sizes, mask):
    # Global stride of each dimension: product of the sizes before it in the order.
    strides, acc = [], 1
    for s in sizes:
        strides.append(acc)
        acc *= s
    in_shape = [s for s, m in zip(sizes, mask) if m]
    in_stride = [d for d, m in zip(strides, mask) if m]
    out_shape = [s for s, m in zip(sizes, mask) if not m]
    out_stride = [d for d, m in zip(strides, mask) if not m]

    def digits(index, shape):  # mixed radix, first digit fastest
        ds = []
        for s in shape:
            ds.append(index % s)
            index //= s
        return ds

    group_size = 1
    for s in in_shape:
        group_size *= s
    result = []
    for g in range(world // group_size):
        gd = digits(g, out_shape)
        base = sum(a * b for a, b in zip(gd, out_stride))
        result.append([base + sum(a * b for a, b in zip(digits(m, in_shape), in_stride))
                       for m in range(group_size)])
    return result


def main():
    out = []
    for c in json.load(sys.stdin):
        world, tp, pp, cp = c["world"], c["tp"], c["pp"], c["cp"]
        dp = world // (tp * pp * cp)
        size_of = {"tp": tp, "pp": pp, "cp": cp, "ep": 1, "dp": dp}
        order = c["order"].split("-")
        for n in ("tp", "cp", "ep", "dp", "pp"):  # RankGenerator appends size-1 dims
            if n not in order:
                assert size_of[n] == 1, n
                order.append(n)
        sizes = [size_of[n] for n in order]

        def get(token):
            names = token.split("-")
            return masked_groups(world, sizes, [n in names for n in order])

        groups = {"tp": get("tp"), "cp": get("cp"), "dp": get("dp"), "pp": get("pp"),
                  "dp-cp": get("dp-cp"), "tp-pp": get("tp-pp"), "tp-dp-cp": get("tp-dp-cp")}
        emb, pos = [], []
        for ranks in groups["pp"]:
            emb.append([ranks[0], ranks[-1]] if len(ranks) > 1 else [ranks[0]])
            pos.append([ranks[0]])
        groups["embedding"] = emb
        groups["position-embedding"] = pos
        ep = c.get("ep", 1)
        eps, edps, tpeps = [], [], []
        for dpg in groups["dp"]:
            blocks = [dpg[b:b + ep] for b in range(0, len(dpg), ep)]
            eps.extend(blocks)
            edps.extend([blk[e] for blk in blocks] for e in range(ep))
        for blk in eps:
            # The TP group of each block member, in TP-rank order, interleaved by EP rank.
            tpg = [next(g for g in groups["tp"] if m in g) for m in blk]
            if tpg[0][0] == blk[0]:  # one tp-ep group per block of TP-rank-0 members
                tpeps.append([tpg[e][t] for e in range(ep) for t in range(tp)])
        groups["ep"], groups["dp-modulo-ep"], groups["tp-ep"] = sorted(eps), sorted(edps), sorted(tpeps)
        coords = []
        for r in range(world):
            co = {}
            for n in ("tp", "cp", "dp", "pp"):
                for ranks in groups[n]:
                    if r in ranks:
                        co[n] = ranks.index(r)
            coords.append([co["tp"], co["cp"], co["dp"], co["pp"], co["dp"] % ep, co["dp"] // ep])
        out.append({"groups": groups, "coords": coords})
    json.dump(out, sys.stdout)


main()
