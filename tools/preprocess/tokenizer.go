package main

import (
	"errors"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// buildTokenizer builds the tokenizer the flags name.
func buildTokenizer(c tokenizer.Config) (tokenizer.Tokenizer, error) {
	return nil, errors.New("tokenizer.Build is not available yet")
}
