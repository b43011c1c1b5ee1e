package gpt

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// legacySplitPy is get_train_valid_test_split_ of megatron/data/dataset_utils.py (2023),
// transcribed; it prints the boundaries for each [split, size] pair.
const legacySplitPy = `
import json, sys
def get_train_valid_test_split_(splits_string, size):
    if splits_string.find(',') != -1:
        splits = [float(s) for s in splits_string.split(',')]
    elif splits_string.find('/') != -1:
        splits = [float(s) for s in splits_string.split('/')]
    else:
        splits = [float(splits_string)]
    while len(splits) < 3:
        splits.append(0.)
    splits = splits[:3]
    splits_sum = sum(splits)
    splits = [split / splits_sum for split in splits]
    splits_index = [0]
    for index, split in enumerate(splits):
        splits_index.append(splits_index[index] + int(round(split * float(size))))
    diff = splits_index[-1] - size
    for index in range(1, len(splits_index)):
        splits_index[index] -= diff
    return splits_index
print(json.dumps([get_train_valid_test_split_(s, n) for s, n in json.loads(sys.argv[1])]))
`

func TestLegacySplitRangesMatchPython(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "pass").Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 not available (%v)", err)
	}
	var cases [][2]any
	for _, s := range []string{"969, 30, 1", "98,2,0", "99,1,0", "949,50,1", "1/1/1", "2/1", "7", "1,1,1,1", "0.5, 0.25,0.25", "1,0,1"} {
		for _, n := range []int{1, 2, 3, 5, 7, 10, 33, 100, 101, 999, 1000, 12345, 1 << 20} {
			cases = append(cases, [2]any{s, n})
		}
	}
	arg, _ := json.Marshal(cases)
	out, err := exec.Command("/usr/bin/python3", "-c", legacySplitPy, string(arg)).Output()
	require.NoError(t, err)
	var want [][4]int
	require.NoError(t, json.Unmarshal(out, &want))
	for i, c := range cases {
		got, err := LegacySplitRanges(c[0].(string), c[1].(int))
		require.NoError(t, err)
		for s := 0; s < 3; s++ {
			w := want[i]
			if w[s+1] > w[s] {
				require.NotNil(t, got[s], "%q n=%d split %d", c[0], c[1], s)
				require.Equal(t, Range{w[s], w[s+1]}, *got[s], "%q n=%d split %d", c[0], c[1], s)
			} else {
				require.Nil(t, got[s], "%q n=%d split %d", c[0], c[1], s)
			}
		}
	}
	_, err = LegacySplitRanges("a,b", 10)
	require.ErrorContains(t, err, "is not a number")
	_, err = LegacySplitRanges("0,0,0", 10)
	require.ErrorContains(t, err, "positive finite sum")
}
