package layers

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMoELayerPattern: Megatron-Core's --moe-layer-freq forms expand as its moe_freq_type
// and Python's eval do, and malformed or mismatched patterns are refused.
func TestMoELayerPattern(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want []int
	}{
		{"1", 4, []int{1, 1, 1, 1}},
		{"2", 5, []int{1, 0, 1, 0, 1}},
		{"([1]*4)", 4, []int{1, 1, 1, 1}},
		{"'([1]*4)'", 4, []int{1, 1, 1, 1}},
		{"([0]+[1]*3)", 4, []int{0, 1, 1, 1}},
		{"([1]*2+[0]*1)*2", 6, []int{1, 1, 0, 1, 1, 0}},
		{"2*[1, 0]", 4, []int{1, 0, 1, 0}},
		{"[1,1]+[0]", 3, []int{1, 1, 0}},
	} {
		got, err := MoELayerPattern(tc.s, tc.n)
		require.NoError(t, err, tc.s)
		require.Equal(t, tc.want, got, tc.s)
	}
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"([1]*3)", 4, "the pattern has 3 layers, the model 4"},
		{"([1]*4", 4, "missing )"},
		{"[1,", 4, "want an integer"},
		{"0", 4, "positive integer"},
		{"x", 4, "positive integer"},
		{"[1]*4 junk", 4, "unexpected"},
		{"[1,2,1,1]", 4, "layer 1 is 2: want 0 (dense) or 1 (experts)"},
		{"[1]*99999999", 4, "want an integer"},
		{"[1]*1000*1000*1000", 4, "implausibly long"},
		{"[1]*1000000*1000000*1000000*1000000", 4, "implausibly long"},
		{"([1]*1000000)*1000000", 4, "implausibly long"},
	} {
		_, err := MoELayerPattern(tc.s, tc.n)
		require.ErrorContains(t, err, tc.want, tc.s)
	}
}

// FuzzMoELayerPattern: any --moe-layer-freq text gives a pattern of 0s and 1s of the
// model's length or an error, never a panic or a runaway allocation.
func FuzzMoELayerPattern(f *testing.F) {
	for _, s := range []string{"1", "2", "([0]+[1]*3)", "([1]*2+[0])*2", "2*[1,0]", "'([1]*4)'", "[1]*1000000*1000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := MoELayerPattern(s, 4)
		if err != nil {
			return
		}
		require.Len(t, p, 4)
		for _, v := range p {
			require.True(t, v == 0 || v == 1, "%q: %v", s, p)
		}
	})
}
