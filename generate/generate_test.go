package generate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/comm"
	"github.com/gomegatron/gomegatron/comm/tcp"
	"github.com/gomegatron/gomegatron/kernels/cpu"
	"github.com/gomegatron/gomegatron/layers"
)

const (
	hfFixtures   = "../testdata/hf"
	megatronCkpt = "../ckpt/torchpickle/testdata/checkpoints"
)

// forwardGreedy is the slow reference: for each prompt alone, run the whole prefix through
// the training Forward and take the argmax of the last position's logits (ids < vocab),
// n times.
func forwardGreedy(t *testing.T, m *layers.GPTModel, prompt []int64, n, vocab int) []int64 {
	t.Helper()
	seq := append([]int64(nil), prompt...)
	for range n {
		s := len(seq)
		st := m.NewStash(s, 1)
		bt := layers.Batch{Tokens: seq, Labels: make([]int64, s), LossMask: make([]float32, s)}
		_, _, err := m.Forward(st, bt, 0, 0)
		require.NoError(t, err)
		v := m.Cfg.PaddedVocabSize
		last := st.Logits.F32()[(s-1)*v : (s-1)*v+vocab]
		seq = append(seq, int64(argmax(last)))
	}
	return seq
}

// prompts cuts ragged prompts from the fixture's token rows.
func prompts(rows [][]int64, lens ...int) [][]int64 {
	out := make([][]int64, len(lens))
	for i, n := range lens {
		out[i] = append([]int64(nil), rows[i%len(rows)][:n]...)
	}
	return out
}

func fixtureRows() [][]int64 {
	// The same random ids as the fixtures' inputs.json (row 0 of llama-gqa), reused for
	// every model (all have vocab 256).
	return [][]int64{
		{79, 87, 8, 95, 229, 183, 50, 102, 17, 101, 159, 150, 16, 44, 104, 17},
		{90, 68, 113, 226, 42, 175, 117, 31, 5, 11, 219, 194, 59, 140, 153, 15},
	}
}

// TestGreedyMatchesForwardArgmax checks, for every Hugging Face fixture model, that batched
// greedy generation with the KV cache from ragged prompts gives, token for token, the
// argmax of the full-sequence Forward recomputed over the whole prefix at every step.
func TestGreedyMatchesForwardArgmax(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(hfFixtures, "*"))
	require.NoError(t, err)
	require.NotEmpty(t, dirs)
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m, src, err := Load(cpu.New(), dir, layers.Parallel{})
			require.NoError(t, err)
			require.Equal(t, "hf", src.Kind)
			ps := prompts(fixtureRows(), 3, 7, 5)
			o := Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 6, EOS: -1}
			got, err := Generate(m, ps, o, nil)
			require.NoError(t, err)
			total := 7 + 6
			for i, p := range ps {
				want := forwardGreedy(t, m, p, total-len(p), m.Cfg.VocabSize)
				require.Equal(t, want, got[i], "row %d", i)
			}
		})
	}
}

// TestEOSStopsRows checks Megatron's per-row stop: a row ends at its first generated EOS
// (kept), the others continue, and EOS inside a prompt does not stop the row.
func TestEOSStopsRows(t *testing.T) {
	m, _, err := Load(cpu.New(), filepath.Join(hfFixtures, "llama-gqa"), layers.Parallel{})
	require.NoError(t, err)
	ps := prompts(fixtureRows(), 4, 4)
	o := Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 8, EOS: -1}
	free, err := Generate(m, ps, o, nil)
	require.NoError(t, err)
	require.Len(t, free[0], 12)
	// Make row 0's third generated token the EOS; pick one row 1 never generates.
	eos := free[0][4+2]
	k := 4 + 2
	for j := 4; j < 4+2; j++ {
		require.NotEqual(t, eos, free[0][j], "pick a step whose token is new to row 0")
	}
	o.EOS = eos
	got, err := Generate(m, ps, o, nil)
	require.NoError(t, err)
	require.Equal(t, free[0][:k+1], got[0], "row 0 stops at its first EOS, EOS included")
	first := len(free[1])
	for j := 4; j < len(free[1]); j++ {
		if free[1][j] == eos {
			first = j + 1
			break
		}
	}
	require.Equal(t, free[1][:first], got[1], "row 1 runs to its own EOS or the end")

	// All rows finishing stops the batch: one row, EOS at its first generated token.
	one, err := Generate(m, ps[:1], Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 8, EOS: free[0][4]}, nil)
	require.NoError(t, err)
	require.Equal(t, free[0][:5], one[0])

	// An EOS id inside the prompt is prompt text, not a stop.
	withEOS := [][]int64{append([]int64{free[0][5]}, ps[0][1:]...)}
	out, err := Generate(m, withEOS, Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 3, EOS: free[0][5]}, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(out[0]), 5, "row continues past the prompt's EOS id")
}

// TestRepetitionPenaltyChangesGreedy checks that Generate applies the penalty: with a
// strong penalty greedy decoding never repeats a positive-logit choice as it does without.
func TestRepetitionPenaltyInGenerate(t *testing.T) {
	m, _, err := Load(cpu.New(), filepath.Join(hfFixtures, "gpt2"), layers.Parallel{})
	require.NoError(t, err)
	ps := prompts(fixtureRows(), 4)
	plain, err := Generate(m, ps, Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 10, EOS: -1}, nil)
	require.NoError(t, err)
	pen, err := Generate(m, ps, Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1e6, HFRepetitionPenalty: true, OutSeqLength: 10, EOS: -1}, nil)
	require.NoError(t, err)
	require.NotEqual(t, plain, pen)
	seen := map[int64]bool{}
	for _, id := range pen[0] {
		require.False(t, seen[id], "HF penalty 1e6 repeats id %d in %v", id, pen[0])
		seen[id] = true
	}
}

// runTP runs f on tp in-process ranks and returns every rank's result.
func runTP[T any](t *testing.T, tp int, f func(c comm.Comm) (T, error)) []T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	comms, err := tcp.LocalWorld(ctx, tp, tcp.Options{Timeout: 30 * time.Second})
	require.NoError(t, err)
	defer func() {
		for _, c := range comms {
			c.Close()
		}
	}()
	out := make([]T, tp)
	errs := make([]error, tp)
	var wg sync.WaitGroup
	for r := range tp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[r], errs[r] = f(comms[r])
			if errs[r] != nil {
				errs[r] = fmt.Errorf("rank %d: %w", r, errs[r])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return out
}

// TestTensorParallelGeneration checks that a Hugging Face model sharded over TP = 2 and 4
// generates the single-process tokens, greedy and sampled with the same seed.
func TestTensorParallelGeneration(t *testing.T) {
	dir := filepath.Join(hfFixtures, "llama-mha")
	ps := prompts(fixtureRows(), 3, 6)
	opts := []Options{
		{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1.2, OutSeqLength: 6, EOS: -1},
		{Sampling: Sampling{TopK: 20, Temperature: 0.7}, RepetitionPenalty: 1.1, OutSeqLength: 6, EOS: -1},
		{Sampling: Sampling{TopP: 0.9, Temperature: 1}, RepetitionPenalty: 1, OutSeqLength: 6, EOS: -1},
	}
	m1, _, err := Load(cpu.New(), dir, layers.Parallel{})
	require.NoError(t, err)
	for i, o := range opts {
		want, err := Generate(m1, ps, o, newRNG(42))
		require.NoError(t, err)
		for _, tp := range []int{2, 4} {
			got := runTP(t, tp, func(c comm.Comm) ([][]int64, error) {
				m, _, err := Load(cpu.New(), dir, layers.Parallel{TP: c})
				if err != nil {
					return nil, err
				}
				return Generate(m, ps, o, newRNG(42))
			})
			for r := range got {
				require.Equal(t, want, got[r], "options %d tp=%d rank %d", i, tp, r)
			}
		}
	}
}

// TestLoadMegatronCheckpoint loads the real Megatron checkpoints saved at TP = 1 and
// TP = 2 (bf16 weights, vocab 100 padded to 128) at TP = 1 and 2: the TP = 2 checkpoint
// gives the same greedy tokens whichever TP it is loaded with, and decoding matches the
// training Forward on the loaded weights.
func TestLoadMegatronCheckpoint(t *testing.T) {
	for name, path := range map[string]string{
		"legacy_tp1": filepath.Join(megatronCkpt, "legacy_tp1", "iter_0000010"),
		"mcore_tp1":  filepath.Join(megatronCkpt, "mcore_tp1", "iter_0000010"),
		"legacy_tp2": filepath.Join("testdata", "megatron", "legacy_tp2"),
	} {
		t.Run(name, func(t *testing.T) {
			m, src, err := Load(cpu.New(), path, layers.Parallel{})
			require.NoError(t, err)
			require.Equal(t, "megatron", src.Kind)
			require.Equal(t, 100, m.Cfg.VocabSize)
			ps := [][]int64{{5, 17, 42}, {99, 3, 8, 60, 1}}
			o := Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 5, EOS: -1}
			want, err := Generate(m, ps, o, nil)
			require.NoError(t, err)
			for i, p := range ps {
				require.Equal(t, forwardGreedy(t, m, p, 10-len(p), 100), want[i], "row %d", i)
			}
			got := runTP(t, 2, func(c comm.Comm) ([][]int64, error) {
				m, _, err := Load(cpu.New(), path, layers.Parallel{TP: c})
				if err != nil {
					return nil, err
				}
				return Generate(m, ps, o, nil)
			})
			require.Equal(t, want, got[0])
			require.Equal(t, want, got[1])
		})
	}
}

// TestGenerateErrors checks that bad input fails with a message naming the problem.
func TestGenerateErrors(t *testing.T) {
	m, _, err := Load(cpu.New(), filepath.Join(hfFixtures, "gpt2"), layers.Parallel{})
	require.NoError(t, err)
	greedy := Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 4}
	long := make([]int64, 126)
	for _, tc := range []struct {
		name    string
		prompts [][]int64
		o       Options
		want    string
	}{
		{"too long", [][]int64{long}, greedy, "more than --max-position-embeddings 128"},
		{"flag bound", [][]int64{{1, 2, 3}}, Options{Sampling: greedy.Sampling, OutSeqLength: 4, MaxPositions: 6}, "more than --max-position-embeddings 6"},
		{"empty", [][]int64{{1}, {}}, greedy, "prompt 1 is empty"},
		{"vocab", [][]int64{{1, 300}}, greedy, "outside the model's vocabulary"},
		{"no prompts", nil, greedy, "no prompts"},
		{"out", [][]int64{{1}}, Options{Sampling: greedy.Sampling}, "--out-seq-length"},
		{"sampling", [][]int64{{1}}, Options{Sampling: Sampling{TopK: 2, TopP: 0.5, Temperature: 1}, OutSeqLength: 1}, "one of them must be 0"},
	} {
		_, err := Generate(m, tc.prompts, tc.o, newRNG(1))
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	_, _, err = Load(cpu.New(), t.TempDir(), layers.Parallel{})
	require.ErrorContains(t, err, "neither a Megatron checkpoint")
}

// TestGreedyMatchesTorchLlama compares batched greedy generation on the Llama fixtures
// (MHA and GQA) with an independent float64 torch implementation of Hugging Face's Llama
// (testdata/llama_greedy_ref.py) that recomputes the whole prefix at every step.
func TestGreedyMatchesTorchLlama(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch, numpy").Run(); err != nil {
		t.Skip("needs /usr/bin/python3 with torch and numpy (Debian python3-torch)")
	}
	for _, name := range []string{"llama-mha", "llama-gqa"} {
		dir := filepath.Join(hfFixtures, name)
		m, _, err := Load(cpu.New(), dir, layers.Parallel{})
		require.NoError(t, err)
		ps := prompts(fixtureRows(), 2, 9, 5)
		const out = 8
		got, err := Generate(m, ps, Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: out, EOS: -1}, nil)
		require.NoError(t, err)
		steps := make([]int, len(ps))
		for i, p := range ps {
			steps[i] = 9 + out - len(p)
		}
		req, err := json.Marshal(map[string]any{"dir": dir, "prompts": ps, "steps": steps})
		require.NoError(t, err)
		cmd := exec.Command(py, "testdata/llama_greedy_ref.py")
		cmd.Stdin = bytes.NewReader(req)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		raw, err := cmd.Output()
		require.NoError(t, err, stderr.String())
		var want [][]int64
		require.NoError(t, json.Unmarshal(raw, &want))
		require.Equal(t, want, got, name)
	}
}

// TestPenalisedGreedyMatchesForward checks which ids the penalty sees, against the full
// Forward recomputed each step: Pai's tokens[1 : c+1] (the sequence without its first
// token, plus the pad still at position c) and Hugging Face's tokens[0 : c]. The pad is
// the unpenalised greedy choice, so the two sets lead to different generations.
func TestPenalisedGreedyMatchesForward(t *testing.T) {
	m, _, err := Load(cpu.New(), filepath.Join(hfFixtures, "llama-gqa"), layers.Parallel{})
	require.NoError(t, err)
	const out = 10
	ref := func(p []int64, pad int64, hfMode bool) []int64 {
		seq := append([]int64(nil), p...)
		for range out {
			s := len(seq)
			st := m.NewStash(s, 1)
			_, _, err := m.Forward(st, layers.Batch{Tokens: seq, Labels: make([]int64, s), LossMask: make([]float32, s)}, 0, 0)
			require.NoError(t, err)
			v := m.Cfg.PaddedVocabSize
			row := append([]float32(nil), st.Logits.F32()[(s-1)*v:s*v]...)
			used := append(append([]int64(nil), seq[1:]...), pad)
			if hfMode {
				used = seq
			}
			RepetitionPenalty(row, used, 3, hfMode)
			seq = append(seq, int64(argmax(row)))
		}
		return seq
	}
	differ := 0
	for _, p := range prompts(fixtureRows(), 4, 6) {
		free, err := Generate(m, [][]int64{p}, Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 1, OutSeqLength: 1, EOS: -1}, nil)
		require.NoError(t, err)
		pad := free[0][len(p)]
		var gens [2][]int64
		for i, hfMode := range []bool{false, true} {
			o := Options{Sampling: Sampling{TopK: 1}, RepetitionPenalty: 3, HFRepetitionPenalty: hfMode, OutSeqLength: out, EOS: -1, Pad: pad}
			got, err := Generate(m, [][]int64{p}, o, nil)
			require.NoError(t, err)
			require.Equal(t, ref(p, pad, hfMode), got[0], "hf=%v prompt %v pad %d", hfMode, p, pad)
			gens[i] = got[0]
		}
		t.Logf("prompt %v pad %d: pai %v hf %v", p, pad, gens[0], gens[1])
		if !slices.Equal(gens[0], gens[1]) {
			differ++
		}
	}
	require.Positive(t, differ, "Pai's and HF's penalties should lead to different tokens here")
}
