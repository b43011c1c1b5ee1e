package generate

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func randomLogits(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * scale)
	}
	return out
}

// torchRef runs the reference script (Megatron's sampling.py filters, Pai's and Hugging
// Face's repetition penalties, transcribed in torch) on the cases and returns its output.
func torchRef(t *testing.T, in any) map[string][][]*float64 {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3 with torch (Debian python3-torch)")
	}
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("needs torch for /usr/bin/python3 (Debian python3-torch)")
	}
	raw, err := json.Marshal(in)
	require.NoError(t, err)
	cmd := exec.Command(py, "testdata/sampling_ref.py")
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var res map[string][][]*float64 // null is −inf
	require.NoError(t, json.Unmarshal(out, &res))
	return res
}

// TestFiltersMatchMegatron compares the top-k and top-p masks and both repetition
// penalties with the torch transcription of Megatron's, Pai's and Hugging Face's code on
// random logits (ties included for top-k).
func TestFiltersMatchMegatron(t *testing.T) {
	rng := newRNG(3)
	type row struct {
		Logits []float32 `json:"logits"`
		TopK   int       `json:"top_k"`
		TopP   float64   `json:"top_p"`
		Temp   float64   `json:"temperature"`
		Used   []int64   `json:"used"`
		Pen    float64   `json:"penalty"`
	}
	var rows []row
	for i := 0; i < 40; i++ {
		lg := randomLogits(rng, 50, 2)
		if i%5 == 0 { // ties at the k-th value
			lg[7], lg[8], lg[9] = 3.5, 3.5, 3.5
		}
		used := make([]int64, 12)
		for j := range used {
			used[j] = int64(rng.IntN(50))
		}
		rows = append(rows, row{Logits: lg, TopK: 2 + i%9, TopP: 0.1 + 0.02*float64(i), Temp: 0.5 + 0.05*float64(i), Used: used, Pen: 1.1 + 0.02*float64(i)})
	}
	ref := torchRef(t, rows)
	for i, r := range rows {
		temper := func() []float32 {
			out := append([]float32(nil), r.Logits...)
			for j := range out {
				out[j] /= float32(r.Temp)
			}
			return out
		}
		k := temper()
		topK(k, r.TopK)
		p := temper()
		topP(p, r.TopP)
		pai := append([]float32(nil), r.Logits...)
		RepetitionPenalty(pai, r.Used, r.Pen, false)
		hf := append([]float32(nil), r.Logits...)
		RepetitionPenalty(hf, r.Used, r.Pen, true)
		for j := range r.Logits {
			require.Equal(t, ref["top_k"][i][j] == nil, math.IsInf(float64(k[j]), -1), "row %d id %d: top-k %d mask", i, j, r.TopK)
			require.Equal(t, ref["top_p"][i][j] == nil, math.IsInf(float64(p[j]), -1), "row %d id %d: top-p %v mask", i, j, r.TopP)
			require.InDelta(t, *ref["pai"][i][j], pai[j], 1e-6, "row %d id %d: Pai's penalty", i, j)
			require.InDelta(t, *ref["hf"][i][j], hf[j], 1e-6, "row %d id %d: HF's penalty", i, j)
		}
	}
}

// TestRepetitionPenaltySigns checks on hand-made logits what tells the two penalties
// apart: Pai divides every used logit (a negative one rises), Hugging Face pushes every
// used logit down; each id is penalised once however often it occurs; unused ids stay.
func TestRepetitionPenaltySigns(t *testing.T) {
	base := []float32{2, -2, 0.5, -1, 3}
	used := []int64{0, 1, 1, 1, 3, 99}
	pai := append([]float32(nil), base...)
	RepetitionPenalty(pai, used, 2, false)
	hf := append([]float32(nil), base...)
	RepetitionPenalty(hf, used, 2, true)
	for _, id := range []int{0, 1, 3} {
		require.Equal(t, base[id]/2, pai[id], "Pai divides id %d once", id)
		require.Less(t, hf[id], base[id], "HF lowers id %d", id)
	}
	require.Greater(t, pai[1], base[1], "Pai raises a negative logit")
	require.Equal(t, base[1]*2, hf[1], "HF multiplies a negative logit once")
	require.Equal(t, base[2], pai[2])
	require.Equal(t, base[4], hf[4])
	same := append([]float32(nil), base...)
	RepetitionPenalty(same, used, 1, false)
	require.Equal(t, base, same, "penalty 1 is off")
}

// TestSampleDeterministicAndMasked checks that a fixed seed gives the same draws, that
// top-k only ever draws the k largest, top-p only the nucleus, and that the draw
// frequencies follow softmax(logits/T).
func TestSampleDeterministicAndMasked(t *testing.T) {
	logits := randomLogits(newRNG(9), 40, 1.5)
	draw := func(s Sampling, seed uint64, n int) []int {
		rng := newRNG(seed)
		out := make([]int, n)
		for i := range out {
			out[i] = s.Sample(append([]float32(nil), logits...), rng)
		}
		return out
	}
	s := Sampling{TopK: 5, Temperature: 0.8}
	require.Equal(t, draw(s, 1, 500), draw(s, 1, 500), "same seed, same draws")
	require.NotEqual(t, draw(s, 1, 500), draw(s, 2, 500), "another seed, other draws")

	order := make([]int, len(logits))
	for i := range order {
		order[i] = i
	}
	// Ids sorted by logit, descending.
	for i := range order {
		for j := i + 1; j < len(order); j++ {
			if logits[order[j]] > logits[order[i]] {
				order[i], order[j] = order[j], order[i]
			}
		}
	}
	seen := map[int]int{}
	for _, id := range draw(s, 3, 5000) {
		seen[id]++
	}
	require.Len(t, seen, 5, "top-5 draws exactly the five largest ids over 5000 draws")
	for _, id := range order[:5] {
		require.Positive(t, seen[id], "id %d is in the top 5", id)
	}

	// Top-p: the nucleus is the sorted prefix whose mass before each member is ≤ p.
	p := 0.6
	probs := softmax(logits)
	nucleus := map[int]bool{}
	cum := 0.0
	for _, id := range order {
		if cum > p {
			break
		}
		nucleus[id] = true
		cum += probs[id]
	}
	for _, id := range draw(Sampling{TopP: p, Temperature: 1}, 4, 5000) {
		require.True(t, nucleus[id], "top-p %v drew id %d outside the nucleus %v", p, id, nucleus)
	}

	// Frequencies against softmax(logits/T): 40000 draws, 4σ of a binomial.
	const n = 40000
	temp := 1.7
	scaled := append([]float32(nil), logits...)
	for i := range scaled {
		scaled[i] /= float32(temp)
	}
	want := softmax(scaled)
	counts := make([]float64, len(logits))
	for _, id := range draw(Sampling{Temperature: temp}, 5, n) {
		counts[id]++
	}
	for id, q := range want {
		sigma := math.Sqrt(q * (1 - q) / n)
		require.InDelta(t, q, counts[id]/n, 4*sigma+1e-4, "id %d frequency", id)
	}

	// Greedy ignores the rng and the temperature.
	require.Equal(t, order[0], Sampling{TopK: 1, Temperature: 0.1}.Sample(append([]float32(nil), logits...), nil))
}

func TestSamplingValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Sampling
		want string
	}{
		{Sampling{TopK: 3, TopP: 0.5, Temperature: 1}, "one of them must be 0"},
		{Sampling{TopP: 1.5, Temperature: 1}, "--top-p"},
		{Sampling{TopK: -1, Temperature: 1}, "--top-k"},
		{Sampling{TopK: 0, Temperature: 0}, "--temperature"},
	} {
		require.ErrorContains(t, tc.s.Validate(), tc.want)
	}
	require.NoError(t, Sampling{TopK: 1}.Validate(), "greedy needs no temperature")
}
