// Package tokenizer implements the tokenizers Megatron-LM and Pai-Megatron-Patch train with,
// giving exactly the ids of the models' own tokenizers:
//
//   - HF: Hugging Face tokenizer.json BPE models (SentencePiece-style with byte fallback as
//     Llama-2/Mistral; byte-level as GPT-2, Llama-3, Qwen, cl100k, Falcon, StarCoder, BLOOM),
//     as tokenizers 0.23 runs them, with tokenizer_config.json's special tokens;
//   - SentencePiece: .model files (BPE and Unigram, precompiled charsmap normalization,
//     byte fallback), as sentencepiece 0.1.97 runs them;
//   - GPT2: Megatron's GPT2BPETokenizer (vocab.json + merges.txt);
//   - TikToken: tiktoken rank files and Megatron's TikTokenizer JSON (and Qwen 1.0's
//     qwen.tiktoken with its special tokens);
//   - PaiSentencePiece: Pai-Megatron-Patch's BaichuanTokenizer;
//   - Null: Megatron's NullTokenizer.
//
// Build picks one from Megatron's --tokenizer-type. All are safe for concurrent use.
package tokenizer

// Tokenizer is what training, preprocessing and generation need from a tokenizer, with the
// special ids as Megatron's tokenizer classes define them (-1 when the tokenizer has none).
type Tokenizer interface {
	// Encode returns the ids of text as Megatron's tokenizer.tokenize(text) does: without
	// BOS/EOS unless the tokenizer adds them for plain encoding (HF's Llama tokenizer's
	// post-processor and Megatron's Llama2Tokenizer add BOS). EncodeNoSpecial gives the
	// ids without them.
	Encode(text string) []int
	// Decode turns ids back into text.
	Decode(ids []int) string
	// VocabSize is the number of ids, added tokens included (Megatron's vocab_size).
	VocabSize() int
	EOD() int
	BOS() int
	EOS() int
	Pad() int
}

// Config selects a tokenizer with Megatron's flag names.
type Config struct {
	TokenizerType  string // --tokenizer-type (GPT2BPETokenizer, Llama2Tokenizer, HuggingFaceTokenizer, TikTokenizer, NullTokenizer, …; Pai's LLamaTokenizer)
	TokenizerModel string // --tokenizer-model
	VocabFile      string // --vocab-file
	MergeFile      string // --merge-file
	VocabSize      int    // --vocab-size (NullTokenizer; TikTokenizer's total vocab)

	TikToken TikTokenConfig // --tiktoken-* flags (TikTokenizer)
}
