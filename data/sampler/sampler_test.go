package sampler

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRandpermTorch pins Randperm to torch 1.13's torch.randperm(n, generator=g) after
// g.manual_seed(seed) (values printed by Debian's python3-torch 1.13.1).
func TestRandpermTorch(t *testing.T) {
	require.Equal(t, []int{4, 1, 7, 5, 3, 9, 0, 8, 6, 2}, Randperm(10, 0))
	require.Equal(t, []int{6, 0, 3, 7, 8, 5, 1, 9, 2, 4}, Randperm(10, 3))
	require.Equal(t, []int{845, 303, 66, 436, 239, 593, 573, 999, 919, 268, 228, 955}, Randperm(1000, 1)[:12])
	require.Equal(t, []int{1, 0, 4, 2, 6, 5, 3}, Randperm(7, 1<<33+5)) // seeds keep their low 32 bits
	require.Equal(t, []int{0}, Randperm(1, 7))
	require.Empty(t, Randperm(0, 7))
}

// megatronPy is Megatron's two samplers and cyclic_iter, transcribed from
// megatron/data/data_samplers.py (2023), driven by torch: it prints, per rank, the first
// `steps` micro-batches a loader started at `consumed` yields.
const megatronPy = `
import json, sys, torch
total, mbs, dp, consumed, kind, sharding, steps = json.loads(sys.argv[1])
def single(rank):
    c = consumed
    while c + mbs * dp <= total:
        yield list(range(c + rank * mbs, c + rank * mbs + mbs))
        c += mbs * dp
def cyclic(rank):
    c = consumed
    step = mbs * dp
    while True:
        active = total - total % step
        epoch, cur = c // active, c % active
        g = torch.Generator(); g.manual_seed(epoch)
        if sharding:
            bucket = (total // step) * mbs
            idx = [rank * bucket + x for x in torch.randperm(bucket, generator=g).tolist()[cur // dp:]]
        else:
            full = (total // mbs) * mbs
            idx = torch.randperm(full, generator=g).tolist()[cur:][rank::dp]
        batch = []
        for i in idx:
            batch.append(i)
            if len(batch) == mbs:
                c += step
                yield batch
                batch = []
out = []
for r in range(dp):
    it = single(r) if kind == "single" else cyclic(r)
    out.append([b for _, b in zip(range(steps), it)])
print(json.dumps(out))
`

func TestMatchesMegatron(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 with torch not available (%v)", err)
	}
	cases := []struct {
		total, mbs, dp int
		consumed       int64
		kind           string
		sharding       bool
		steps          int
	}{
		{37, 2, 3, 0, "single", true, 6},
		{37, 2, 3, 12, "single", true, 4},
		{37, 2, 3, 0, "cyclic", true, 40},  // several epochs, 6 samples dropped from each
		{37, 2, 3, 66, "cyclic", true, 20}, // resumed mid-epoch
		{37, 2, 3, 0, "cyclic", false, 40}, // passes overrun the epoch: the order depends on history
		{37, 2, 3, 24, "cyclic", false, 25},
		{10, 1, 1, 0, "cyclic", true, 25},
		{1000, 4, 2, 8, "cyclic", true, 300},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s/sharding=%v/total=%d,mbs=%d,dp=%d,consumed=%d", c.kind, c.sharding, c.total, c.mbs, c.dp, c.consumed)
		t.Run(name, func(t *testing.T) {
			arg, _ := json.Marshal([]any{c.total, c.mbs, c.dp, c.consumed, c.kind, c.sharding, c.steps})
			raw, err := exec.Command("/usr/bin/python3", "-c", megatronPy, string(arg)).Output()
			require.NoError(t, err)
			var want [][][]int
			require.NoError(t, json.Unmarshal(raw, &want))
			for r := 0; r < c.dp; r++ {
				s, err := New(c.kind, Config{Total: c.total, MicroBatchSize: c.mbs, DPSize: c.dp, DPRank: r, Consumed: c.consumed}, c.sharding)
				require.NoError(t, err)
				var got [][]int
				for range want[r] {
					b, err := s.Next()
					require.NoError(t, err)
					got = append(got, b)
				}
				require.Equal(t, want[r], got, "rank %d", r)
				if c.kind == "single" && len(want[r]) < c.steps {
					_, err := s.Next()
					require.ErrorContains(t, err, "does not wrap around")
				}
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		kind string
		cfg  Config
		want string
	}{
		{"single", Config{Total: 0, MicroBatchSize: 1, DPSize: 1}, "dataset is empty"},
		{"single", Config{Total: 4, MicroBatchSize: 1, DPSize: 1, Consumed: 4}, "no samples left"},
		{"cyclic", Config{Total: 5, MicroBatchSize: 2, DPSize: 3}, "do not fill one micro-batch"},
		{"random", Config{Total: 5, MicroBatchSize: 1, DPSize: 1}, `--dataloader-type "random"`},
		{"single", Config{Total: 5, MicroBatchSize: 1, DPSize: 2, DPRank: 2}, "out of range"},
	} {
		_, err := New(c.kind, c.cfg, true)
		require.Error(t, err)
		require.True(t, strings.Contains(err.Error(), c.want), "%v: %v", c.cfg, err)
	}
}

// distributedPy prints torch's DistributedSampler order (shuffle, drop_last false) for every
// rank, for [n, replicas, seed] cases.
const distributedPy = `
import json, sys, torch
from torch.utils.data.distributed import DistributedSampler
out = []
for n, replicas, seed in json.loads(sys.argv[1]):
    ranks = []
    for r in range(replicas):
        s = DistributedSampler(list(range(n)), num_replicas=replicas, rank=r)
        s.set_epoch(seed)
        ranks.append(list(iter(s)))
    out.append(ranks)
print(json.dumps(out))
`

func TestDistributedIndicesMatchTorch(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 with torch not available (%v)", err)
	}
	cases := [][3]int{{10, 1, 1234}, {10, 3, 1234}, {10, 3, 1235}, {7, 4, 0}, {2, 5, 9}, {1, 3, 1}, {1000, 8, 1240}}
	arg, _ := json.Marshal(cases)
	raw, err := exec.Command("/usr/bin/python3", "-c", distributedPy, string(arg)).Output()
	require.NoError(t, err)
	var want [][][]int
	require.NoError(t, json.Unmarshal(raw, &want))
	for i, c := range cases {
		for r := 0; r < c[1]; r++ {
			require.Equal(t, want[i][r], DistributedIndices(c[0], c[1], r, uint64(c[2])), "n=%d replicas=%d seed=%d rank %d", c[0], c[1], c[2], r)
		}
	}
}
