package main

import (
	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// tokenizerFlags select an optional tokenizer for decoding, with Megatron's flag names.
type tokenizerFlags struct {
	TokenizerType  string `name:"tokenizer-type" help:"Decode samples with this tokenizer (GPT2BPETokenizer, Llama2Tokenizer, HuggingFaceTokenizer, TikTokenizer, NullTokenizer, …)."`
	TokenizerModel string `name:"tokenizer-model" help:"Tokenizer model file or folder."`
	VocabFile      string `name:"vocab-file" help:"Vocab file (GPT2BPETokenizer)."`
	MergeFile      string `name:"merge-file" help:"Merges file (GPT2BPETokenizer)."`
	VocabSize      int    `name:"vocab-size" help:"Vocab size (NullTokenizer)."`
}

// decoder returns a function turning ids into text, or nil without --tokenizer-type.
func (f *tokenizerFlags) decoder() (func([]int64) string, error) {
	if f.TokenizerType == "" {
		return nil, nil
	}
	tok, err := tokenizer.Build(tokenizer.Config{
		TokenizerType: f.TokenizerType, TokenizerModel: f.TokenizerModel,
		VocabFile: f.VocabFile, MergeFile: f.MergeFile, VocabSize: f.VocabSize,
	})
	if err != nil {
		return nil, err
	}
	return func(ids []int64) string {
		v := make([]int, len(ids))
		for i, id := range ids {
			v[i] = int(id)
		}
		return tok.Decode(v)
	}, nil
}
