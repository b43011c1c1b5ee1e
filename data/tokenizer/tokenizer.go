// Package tokenizer implements the tokenizers Megatron-LM and Pai-Megatron-Patch train with,
// giving exactly the ids of the models' own tokenizers.
package tokenizer

// Tokenizer is what training, preprocessing and generation need from a tokenizer, with the
// special ids as Megatron's tokenizer classes define them (-1 when the tokenizer has none).
type Tokenizer interface {
	// Encode returns the ids of text, without BOS/EOS unless the tokenizer's own
	// post-processor adds them for plain encoding (as HF's Llama tokenizer adds BOS).
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
