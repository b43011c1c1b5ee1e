package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Build returns the tokenizer Megatron's build_tokenizer makes for cfg, by
// --tokenizer-type:
//
//   - GPT2BPETokenizer: --vocab-file (vocab.json) and --merge-file (merges.txt);
//     eod = <|endoftext|>; special tokens in the text are ordinary text, as in Megatron.
//   - SentencePieceTokenizer: --tokenizer-model (.model), with Megatron's extra
//     <CLS>/<SEP>/<EOD>/<MASK> tokens appended and matched in the text.
//   - GPTSentencePieceTokenizer: --tokenizer-model; Encode has no BOS; eod = eos.
//   - Llama2Tokenizer: --tokenizer-model; Encode prepends BOS (Megatron's tokenize
//     default bos=True); eod = eos.
//   - HuggingFaceTokenizer, and Pai-Megatron-Patch's LLamaTokenizer, LLama3Tokenizer,
//     Qwen2Tokenizer, Qwen3Tokenizer (its own pad) and MistralTokenizer (pad 0; see
//     paiLlamaSpecials, paiQwen2Specials),
//     FalconTokenizer and StarcoderTokenizerFromHF (pad = eos) and BloomTokenizerFromHF:
//     --tokenizer-model is a Hugging Face directory (tokenizer.json, tokenizer_config.json)
//     or a tokenizer.json; Encode is tokenizer(text) (add_special_tokens=True); eod = eos.
//   - BaichuanTokenizer (Pai's): --tokenizer-model is the Baichuan folder (tokenizer.model,
//     tokenizer_config.json); see PaiSentencePiece.
//   - QwenTokenizer (Pai's, Qwen 1.0): --tokenizer-model is qwen.tiktoken or its folder;
//     special tokens in the text are matched; eod = eos = <|endoftext|>; see Qwen.
//   - TikTokenizer: --tokenizer-model, Megatron's JSON rank list, or a tiktoken rank file
//     (base64 token and rank per line); see TikTokenConfig.
//   - NullTokenizer: --vocab-size.
func Build(cfg Config) (Tokenizer, error) {
	switch cfg.TokenizerType {
	case "GPT2BPETokenizer":
		if cfg.VocabFile == "" || cfg.MergeFile == "" {
			return nil, fmt.Errorf("tokenizer: GPT2BPETokenizer needs --vocab-file and --merge-file")
		}
		return LoadGPT2(cfg.VocabFile, cfg.MergeFile)
	case "SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer":
		if cfg.TokenizerModel == "" {
			return nil, fmt.Errorf("tokenizer: %s needs --tokenizer-model", cfg.TokenizerType)
		}
		sp, err := LoadSentencePiece(cfg.TokenizerModel)
		if err != nil {
			return nil, err
		}
		switch cfg.TokenizerType {
		case "SentencePieceTokenizer":
			return NewMegatronSentencePiece(sp, 0), nil
		case "Llama2Tokenizer":
			return &SentencePieceBOS{sp}, nil
		}
		return sp, nil
	case "HuggingFaceTokenizer", "LLamaTokenizer", "LLama3Tokenizer", "Qwen2Tokenizer", "Qwen3Tokenizer", "MistralTokenizer",
		"FalconTokenizer", "StarcoderTokenizerFromHF", "BloomTokenizerFromHF":
		if cfg.TokenizerModel == "" {
			return nil, fmt.Errorf("tokenizer: %s needs --tokenizer-model (a Hugging Face directory or tokenizer.json)", cfg.TokenizerType)
		}
		p := cfg.TokenizerModel
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			if _, err := os.Stat(filepath.Join(p, "tokenizer.json")); err != nil && fastOnly(cfg.TokenizerType) {
				return nil, fmt.Errorf("tokenizer: %s reads the fast tokenizer's tokenizer.json, and %s has none", cfg.TokenizerType, p)
			} else if err != nil {
				if _, err2 := os.Stat(filepath.Join(p, "tokenizer.model")); err2 == nil {
					sp, err := LoadSentencePiece(filepath.Join(p, "tokenizer.model"))
					if err != nil {
						return nil, err
					}
					return &SentencePieceBOS{sp}, nil
				}
				return nil, fmt.Errorf("tokenizer: --tokenizer-model %s has neither tokenizer.json nor tokenizer.model", p)
			}
		}
		hf, err := LoadHF(p)
		if err != nil {
			return nil, err
		}
		switch cfg.TokenizerType {
		case "LLamaTokenizer":
			paiLlamaSpecials(hf)
		case "LLama3Tokenizer", "Qwen3Tokenizer": // the tokenizer's own pad, if any
			hf.eod = hf.eos
		case "Qwen2Tokenizer":
			paiQwen2Specials(hf)
		case "MistralTokenizer":
			hf.eod, hf.pad = hf.eos, 0 // Pai sets pad_token_id = 0 (<unk>)
		case "FalconTokenizer", "StarcoderTokenizerFromHF":
			hf.eod, hf.pad = hf.eos, hf.eos // Pai: tokenizer.pad_token = tokenizer.eos_token
		case "BloomTokenizerFromHF":
			hf.eod = hf.eos
		}
		return hf, nil
	case "BaichuanTokenizer":
		if cfg.TokenizerModel == "" {
			return nil, fmt.Errorf("tokenizer: BaichuanTokenizer needs --tokenizer-model (the Baichuan folder with tokenizer.model)")
		}
		return LoadBaichuan(cfg.TokenizerModel)
	case "QwenTokenizer":
		if cfg.TokenizerModel == "" {
			return nil, fmt.Errorf("tokenizer: QwenTokenizer needs --tokenizer-model (qwen.tiktoken, or the folder holding it)")
		}
		return LoadQwen(cfg.TokenizerModel)
	case "TikTokenizer":
		if cfg.TokenizerModel == "" {
			return nil, fmt.Errorf("tokenizer: TikTokenizer needs --tokenizer-model")
		}
		return LoadTikToken(cfg.TokenizerModel, cfg.TikToken, cfg.VocabSize)
	case "NullTokenizer":
		if cfg.VocabSize <= 0 {
			return nil, fmt.Errorf("tokenizer: NullTokenizer needs --vocab-size > 0, got %d", cfg.VocabSize)
		}
		return NewNull(cfg.VocabSize), nil
	case "":
		return nil, fmt.Errorf("tokenizer: --tokenizer-type is not set")
	}
	return nil, fmt.Errorf("tokenizer: --tokenizer-type %q is not supported (GPT2BPETokenizer, SentencePieceTokenizer, GPTSentencePieceTokenizer, Llama2Tokenizer, HuggingFaceTokenizer, LLamaTokenizer, LLama3Tokenizer, Qwen2Tokenizer, Qwen3Tokenizer, MistralTokenizer, QwenTokenizer, BaichuanTokenizer, FalconTokenizer, StarcoderTokenizerFromHF, BloomTokenizerFromHF, TikTokenizer, NullTokenizer)", cfg.TokenizerType)
}

// fastOnly reports a Pai tokenizer type read only from tokenizer.json: Qwen's, Falcon's,
// StarCoder's and BLOOM's folders have no SentencePiece model to fall back on.
func fastOnly(typ string) bool {
	switch typ {
	case "Qwen2Tokenizer", "Qwen3Tokenizer", "FalconTokenizer", "StarcoderTokenizerFromHF", "BloomTokenizerFromHF":
		return true
	}
	return false
}

// paiLlamaSpecials gives Pai-Megatron-Patch's LLamaTokenizer special ids: eod = eos, and
// a tokenizer without a pad token gets the id Pai's added "[PAD]" takes, the next free id
// (32000 for Llama-2). The token itself is not added and "[PAD]" in a text stays ordinary
// text. (Pai's LLama3Tokenizer has eod = eos and keeps the tokenizer's pad, if any.)
func paiLlamaSpecials(t *HF) {
	if t.pad < 0 {
		t.pad = t.VocabSize()
	}
	t.eod = t.eos
}

// paiQwen2Specials gives Pai-Megatron-Patch's Qwen2Tokenizer special ids: eod = eos, and
// the pad is "<|extra_0|>", which Pai adds: its id, or the next free one when the
// tokenizer does not have it (151646 for Qwen1.5), whatever pad the tokenizer names.
func paiQwen2Specials(t *HF) {
	t.eod = t.eos
	if id, ok := t.TokenID("<|extra_0|>"); ok {
		t.pad = id
	} else {
		t.pad = t.VocabSize()
	}
}

// IsPai reports one of Pai-Megatron-Patch's Hugging Face tokenizer types (its
// --patch-tokenizer-type), which read the tokenizer from --load and size the vocabulary
// with PaiVocabSize.
func IsPai(typ string) bool {
	switch typ {
	case "LLamaTokenizer", "LLama3Tokenizer", "Qwen2Tokenizer", "Qwen3Tokenizer", "MistralTokenizer", "QwenTokenizer",
		"BaichuanTokenizer", "FalconTokenizer", "StarcoderTokenizerFromHF", "BloomTokenizerFromHF":
		return true
	}
	return false
}

// PaiModelVocab is the embedding size Pai-Megatron-Patch's build_tokenizer sets for
// tokenizer type typ (args.padded_vocab_size, which it does not pad further): fixed for
// BLOOM (250880) and StarCoder (49152), as their checkpoints have it, else PaiVocabSize
// plus --extra-vocab-size.
func PaiModelVocab(typ string, t Tokenizer, extra int) int {
	switch typ {
	case "BloomTokenizerFromHF":
		return 250880
	case "StarcoderTokenizerFromHF":
		return 49152
	}
	return PaiVocabSize(t) + extra
}

// PaiVocabSize is the vocabulary Pai-Megatron-Patch sizes the embedding from before
// --extra-vocab-size (tokenizer.vocab_size): for a Hugging Face tokenizer its model's ids
// without the added tokens past them (HF's vocab_size: 32000 for Llama-2, 128000 for
// Llama-3, whose 256 added specials need the --extra-vocab-size 256 Pai's scripts pass),
// else VocabSize.
func PaiVocabSize(t Tokenizer) int {
	if h, ok := t.(*HF); ok {
		return h.modelVocab
	}
	return t.VocabSize()
}

// EncodeNoSpecial encodes text without the special tokens a tokenizer's Encode adds
// (HF add_special_tokens=False, as Pai-Megatron-Patch's preprocess_data.py encodes;
// Llama2Tokenizer without BOS). Other tokenizers encode as Encode.
func EncodeNoSpecial(t Tokenizer, text string) []int {
	switch v := t.(type) {
	case *HF:
		return v.EncodeSpecial(text, false)
	case *SentencePieceBOS:
		return v.SentencePiece.Encode(text)
	case *PaiSentencePiece:
		return v.SentencePiece.Encode(text)
	}
	return t.Encode(text)
}

// AddsBOS reports whether t's Encode puts BOS first, as Hugging Face's tokenizer(text)
// (add_special_tokens=True) does: a fast tokenizer when its post-processor adds it
// (LlamaTokenizer's add_bos_token; not BLOOM's, Falcon's or Qwen's), Pai's
// BaichuanTokenizer by its config's add_bos_token, a SentencePiece tokenizer with BOS by
// Llama2Tokenizer's rule; a tokenizer with an AddsBOS method by it; others whenever they
// have a BOS.
func AddsBOS(t Tokenizer) bool {
	switch v := t.(type) {
	case *HF:
		return v.bos >= 0 && slices.Contains(v.prefix, v.bos)
	case *PaiSentencePiece:
		return v.addBOS && v.bos >= 0
	case interface{ AddsBOS() bool }:
		return v.AddsBOS()
	}
	return t.BOS() >= 0
}
