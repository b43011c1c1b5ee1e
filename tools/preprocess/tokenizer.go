package main

import "github.com/gomegatron/gomegatron/data/tokenizer"

// buildTokenizer builds the tokenizer the flags name, as Megatron's build_tokenizer does.
func buildTokenizer(c tokenizer.Config) (tokenizer.Tokenizer, error) { return tokenizer.Build(c) }
