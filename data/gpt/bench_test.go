package gpt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/gomegatron/gomegatron/data/nprand"
)

// benchEnv reads an integer knob of the index-build benchmark (set by
// scripts/bench/gpt_index.py so that Go and numpy build the same dataset).
func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// syntheticLengths is numpy.random.RandomState(seed).randint(1, maxLen, size=docs) as int32:
// sequence lengths of a synthetic dataset (mean maxLen/2 tokens per document).
func syntheticLengths(docs, maxLen int, seed uint32) []int32 {
	rs := nprand.New(seed)
	out := make([]int32, docs)
	for i := range out {
		v, err := rs.Randint(1, int64(maxLen))
		if err != nil {
			panic(err)
		}
		out[i] = int32(v)
	}
	return out
}

// cpuSeconds is the process's user+system CPU time: on a shared machine it is steadier than
// wall time, and the Python peer reports time.process_time beside it.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// timed runs body in a b.Loop and reports its CPU seconds per op as "cpu-s/op".
func timed(b *testing.B, body func()) {
	c0 := cpuSeconds()
	n := 0
	for b.Loop() {
		body()
		n++
	}
	b.ReportMetric((cpuSeconds()-c0)/float64(n), "cpu-s/op")
}

// BenchmarkGPTIndex1B builds GPTDataset indices for a synthetic dataset of 2M documents
// (~1e9 tokens) and sequence length 2048, step by step as Megatron's
// _build_document_sample_shuffle_indices does. scripts/bench/gpt_index.py runs it beside
// numpy + a g++ build_sample_idx on the same lengths and reports the ratios.
func BenchmarkGPTIndex1B(b *testing.B) {
	docs := benchEnv("GPT_INDEX_BENCH_DOCS", 2_000_000)
	maxLen := benchEnv("GPT_INDEX_BENCH_MAXLEN", 1000)
	seqLen := benchEnv("GPT_INDEX_BENCH_SEQ", 2048)
	seed := uint32(benchEnv("GPT_INDEX_BENCH_SEED", 1234))
	lengths := syntheticLengths(docs, maxLen, 0)
	ids := Range{0, docs}.Arange()
	cfg := IndexConfig{SequenceLength: seqLen, NumSamples: -1, RandomSeed: seed, AddExtraToken: true, DropLastPartialSequence: true}
	ref, err := BuildIndices(lengths, ids, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if path := os.Getenv("GPT_INDEX_BENCH_SHA_OUT"); path != "" {
		files, err := ref.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		var s string
		for _, kind := range IndexKinds {
			h := sha256.Sum256(files[kind])
			s += fmt.Sprintf("%s %s\n", kind, hex.EncodeToString(h[:]))
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("documents %d, tokens %d, samples %d", docs, ref.TokensPerEpoch, ref.Len())

	b.Run("num_tokens", func(b *testing.B) {
		timed(b, func() {
			var t int64
			for _, d := range ids {
				t += int64(lengths[d])
			}
			if t != ref.TokensPerEpoch {
				b.Fatal("token count differs")
			}
		})
	})
	b.Run("document_index", func(b *testing.B) {
		timed(b, func() { BuildDocumentIndex(ids, 1, nprand.New(seed), false) })
	})
	b.Run("sample_index", func(b *testing.B) {
		timed(b, func() {
			if _, err := BuildSampleIndex(lengths, ref.DocumentIndex, seqLen, 1, ref.TokensPerEpoch, true, 1); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("shuffle_index", func(b *testing.B) {
		n := int64(ref.Len())
		timed(b, func() { BuildShuffleIndex(n, n, nprand.New(seed)) })
	})
	b.Run("total", func(b *testing.B) {
		timed(b, func() {
			if _, err := BuildIndices(lengths, ids, cfg); err != nil {
				b.Fatal(err)
			}
		})
	})
}
