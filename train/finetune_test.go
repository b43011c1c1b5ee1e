package train

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// paiLoaderPy is Pai-Megatron-Patch's fine-tuning data order (finetune_utils.py, 2023) on the
// real torch: per epoch, set_epoch(seed + epoch) on a DistributedSampler over the DP ranks
// and a DataLoader of micro-batches (drop_last = not keep_last); it prints, per iteration,
// the dataset indices of every rank's micro-batch, rank after rank.
const paiLoaderPy = `
import json, sys, torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
n, dp, mbs, epochs, seed, keep_last = json.loads(sys.argv[1])
out = []
for epoch in range(epochs):
    per_rank = []
    for r in range(dp):
        s = DistributedSampler(list(range(n)), num_replicas=dp, rank=r)
        s.set_epoch(seed + epoch)
        per_rank.append([b.tolist() for b in DataLoader(list(range(n)), batch_size=mbs, sampler=s, drop_last=not keep_last)])
    for j in range(len(per_rank[0])):
        out.append([per_rank[r][j] for r in range(dp)])
print(json.dumps(out))
`

// TestSFTOrderMatchesPai: fine-tuning reads the samples in exactly the order Pai's
// DistributedSampler and DataLoader give, epoch after epoch and rank by rank (a kept partial
// last micro-batch is where they differ: Pai runs it smaller, gomegatron fills it).
func TestSFTOrderMatchesPai(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 with torch not available (%v)", err)
	}
	for _, c := range []struct {
		n, dp, mbs, epochs, seed int
		keepLast                 bool
	}{{40, 1, 2, 3, 1234, false}, {40, 2, 2, 2, 1234, false}, {37, 3, 2, 2, 7, false}, {10, 3, 1, 3, 1234, true}, {23, 2, 4, 2, 5, true}, {22, 2, 4, 2, 3, true}} {
		arg, _ := json.Marshal([]any{c.n, c.dp, c.mbs, c.epochs, c.seed, c.keepLast})
		raw, err := exec.Command("/usr/bin/python3", "-c", paiLoaderPy, string(arg)).Output()
		require.NoError(t, err)
		var want [][][]int
		require.NoError(t, json.Unmarshal(raw, &want))
		s := &sftSamples{n: c.n, epochs: c.epochs, mbs: c.mbs, dp: c.dp, rankedEpoch: -1,
			seed: func(e int) uint64 { return uint64(c.seed + e) }}
		s.setIters(c.keepLast)
		require.Equal(t, len(want), c.epochs*s.iters, "%+v: iterations", c)
		i := 0
		for it, ranks := range want {
			for r, batch := range ranks {
				for k := 0; k < c.mbs; k++ {
					if k < len(batch) {
						require.Equal(t, batch[k], s.index(i), "%+v: iteration %d rank %d row %d", c, it, r, k)
					}
					i++
				}
			}
		}
		require.Equal(t, s.Len(), i)
	}
}
