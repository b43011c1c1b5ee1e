package train

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// megatronRampup transcribes Megatron-LM 240126's RampupBatchsizeNumMicroBatches.update
// and update_train_iters (megatron/microbatches.py, training.py): for each case
// [start, increment, ramp samples, global batch, train samples] the batch size at every
// consumed count of a run, and the iteration count.
const megatronRampup = `
import json, sys
out = []
for start, inc, ramp, gbs, train in json.loads(sys.argv[1]):
    per = ramp / ((gbs - start) // inc)
    def cur(consumed):
        if consumed > ramp:
            return gbs
        return start + int(consumed / per) * inc
    iters, consumed = 0, 0
    while consumed <= int(ramp):
        consumed += cur(consumed)
        iters += 1
    iters += (train - consumed) // gbs
    sizes, c = [], 0
    for _ in range(iters):
        b = cur(c)
        sizes.append(b)
        c += b
    out.append({"iters": iters, "sizes": sizes})
print(json.dumps(out))
`

func TestRampupMatchesMegatron(t *testing.T) {
	cases := [][5]int{{4, 4, 32, 16, 160}, {16, 8, 300, 64, 2000}, {2, 2, 10, 8, 41}, {8, 8, 1, 32, 100}, {1, 1, 1000, 7, 3000}}
	arg, err := json.Marshal(cases)
	require.NoError(t, err)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not found: cannot run the Megatron reference")
	}
	raw, err := exec.Command("python3", "-c", megatronRampup, string(arg)).Output()
	require.NoError(t, err, "the Megatron reference")
	var want []struct {
		Iters int   `json:"iters"`
		Sizes []int `json:"sizes"`
	}
	require.NoError(t, json.Unmarshal(raw, &want))
	for i, c := range cases {
		r, err := parseRampup(strings.Fields(fmt.Sprint(c[0], c[1], c[2])), c[3])
		require.NoError(t, err)
		require.Equal(t, want[i].Iters, r.iterations(int64(c[4])), "case %v iterations", c)
		var consumed int64
		for it, w := range want[i].Sizes {
			require.Equal(t, w, r.at(consumed), "case %v iteration %d", c, it+1)
			consumed += int64(w)
		}
	}
	for _, bad := range []struct {
		words []string
		want  string
	}{
		{[]string{"4", "4"}, "takes 3 values"},
		{[]string{"16", "4", "100"}, "must be below --global-batch-size 16"},
		{[]string{"4", "5", "100"}, "not divisible by the increment 5"},
		{[]string{"4", "x", "100"}, `"x" is not a non-negative integer`},
		{[]string{"0", "4", "100"}, "must be positive"},
		{[]string{"4", "4", "0"}, "the ramp-up samples must be positive"},
	} {
		_, err := parseRampup(bad.words, 16)
		require.ErrorContains(t, err, bad.want)
	}
}
