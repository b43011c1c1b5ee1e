package tokenizer

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time; benchmarks report MB per CPU-second
// beside Go's wall-clock MB/s, because the machine is shared and wall time counts waits.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCorpus is the visible corpus strings (mixed English, Chinese, code, …), each
// encoded as one input, as the peers in scripts/bench/tokenize.sh do.
func benchCorpus(b *testing.B) (texts []string, bytes int64) {
	b.Helper()
	for _, r := range readExpected(b, "corpus.jsonl") {
		texts = append(texts, r.Text)
		bytes += int64(len(r.Text))
	}
	return texts, bytes
}

func benchEncode(b *testing.B, enc func(string) []int) {
	texts, n := benchCorpus(b)
	tokens := 0
	for _, s := range texts { // warm-up
		tokens += len(enc(s))
	}
	b.SetBytes(n)
	b.ResetTimer()
	c0 := cpuTime()
	iters := 0
	for b.Loop() {
		for _, s := range texts {
			enc(s)
		}
		iters++
	}
	b.ReportMetric(float64(tokens), "tokens/op")
	if cpu := cpuTime() - c0; cpu > 0 {
		b.ReportMetric(float64(n)*float64(iters)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkEncodeLlama2SP is the Llama-2 tokenizer.model (SentencePiece BPE), peer:
// python3-sentencepiece on the same file. "cold" disables the word cache (the repeated
// corpus would otherwise hit it for every word after the first pass).
func BenchmarkEncodeLlama2SP(b *testing.B) {
	for _, cold := range []bool{false, true} {
		b.Run(map[bool]string{false: "cached", true: "cold"}[cold], func(b *testing.B) {
			sp, err := LoadSentencePiece(largeFile(b, "tokenizers/sentencepiece/llama2_tokenizer.model"))
			if err != nil {
				b.Fatal(err)
			}
			sp.noCache = cold
			benchEncode(b, sp.Encode)
		})
	}
}

// BenchmarkEncodeUnigram2k is the fixture Unigram model (nmt_nfkc charsmap, byte
// fallback, user-defined symbols), peer: python3-sentencepiece on the same file.
func BenchmarkEncodeUnigram2k(b *testing.B) {
	sp, err := LoadSentencePiece("testdata/sp_unigram2k.model")
	if err != nil {
		b.Fatal(err)
	}
	benchEncode(b, sp.Encode)
}

// benchHF benchmarks a tokenizer.json fixture, with and without the word cache (HF's own
// BPE keeps a word cache too).
func benchHF(b *testing.B, name string) {
	for _, cold := range []bool{false, true} {
		b.Run(map[bool]string{false: "cached", true: "cold"}[cold], func(b *testing.B) {
			t := loadHFFixture(b, name)
			t.model.noCache = cold
			benchEncode(b, func(s string) []int { return t.EncodeSpecial(s, false) })
		})
	}
}

// BenchmarkEncodeQwen3 is Qwen3's tokenizer.json (byte-level BPE, NFC), peer: HF
// tokenizers (Rust) through its Node binding.
func BenchmarkEncodeQwen3(b *testing.B)    { benchHF(b, "qwen3") }
func BenchmarkEncodeLlama3(b *testing.B)   { benchHF(b, "llama3") }
func BenchmarkEncodeLlama2HF(b *testing.B) { benchHF(b, "llama2") }

// BenchmarkEncodePretokChains is the small BPEs carrying Falcon's, StarCoder's and
// BLOOM's pre-tokenizer chains (testdata/pretok), without the word cache, so the
// pre-tokenizers (BLOOM's Split runs on regexp2) weigh as they would on a real vocabulary.
func BenchmarkEncodePretokChains(b *testing.B) {
	for _, name := range []string{"falcon", "starcoder", "bloom"} {
		b.Run(name, func(b *testing.B) {
			t, err := LoadHF("testdata/pretok/" + name + ".tokenizer.json")
			if err != nil {
				b.Fatal(err)
			}
			t.model.noCache = true
			benchEncode(b, func(s string) []int { return t.EncodeSpecial(s, false) })
		})
	}
}
