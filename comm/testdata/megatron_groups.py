"""Reference process groups by Megatron-LM's RankGenerator semantics
(megatron/core/parallel_state.py: RankGenerator.get_ranks and
generate_masked_orthogonal_rank_groups), written independently of the Go code.

stdin: JSON list of {"world", "tp", "pp", "cp", "order"}; stdout: JSON list of
{"groups": {kind: [[ranks]]}, "coords": [[tp, cp, dp, pp] per rank]}.
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
        coords = []
        for r in range(world):
            co = {}
            for n in ("tp", "cp", "dp", "pp"):
                for ranks in groups[n]:
                    if r in ranks:
                        co[n] = ranks.index(r)
            coords.append([co["tp"], co["cp"], co["dp"], co["pp"]])
        out.append({"groups": groups, "coords": coords})
    json.dump(out, sys.stdout)


main()
