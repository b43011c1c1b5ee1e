package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// HF is a Hugging Face tokenizer.json tokenizer (BPE models: SentencePiece-style with
// byte fallback as Llama-2/Mistral, and byte-level as GPT-2, Llama-3, Qwen, cl100k),
// following the tokenizers library's pipeline: added tokens are split off first, each
// remaining segment is normalized, pre-tokenized and run through the model, and the
// post-processor adds special tokens.
type HF struct {
	model      *bpe
	added      []addedToken
	rawMatch   *addedMatcher // added tokens with normalized=false, matched in the input
	normMatch  *addedMatcher // added tokens with normalized=true, matched per normalized segment
	addedByID  map[int]*addedToken
	normalize  func(string) string // nil: identity
	pretok     hfPretok            // nil: the whole segment is one word
	prefix     []int               // post-processor ids before the sequence
	suffix     []int               // and after it
	decode     []decodeStep
	pureBLDec  bool     // decoder is exactly ByteLevel: decode by concatenating raw bytes
	rawTokens  []string // pureBLDec: id → the token's bytes (ByteLevel decoder of one token)
	vocabSize  int
	modelVocab int // ids of the model's vocabulary, added tokens aside (HF's vocab_size)
	bos, eos   int
	pad, eod   int
	unkID      int
	specialTok map[string]int
	caches     cachePool
}

// pretokenizer splits a normalized segment into words, in order.
type pretokenizer func(s string, yield func(string))

type hfFile struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type                    string          `json:"type"`
		Vocab                   map[string]int  `json:"vocab"`
		Merges                  json.RawMessage `json:"merges"`
		UnkToken                *string         `json:"unk_token"`
		FuseUnk                 bool            `json:"fuse_unk"`
		ByteFallback            bool            `json:"byte_fallback"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
		Dropout                 *float64        `json:"dropout"`
	} `json:"model"`
}

// LoadHF reads a tokenizer.json file, or a directory holding tokenizer.json (and
// optionally tokenizer_config.json / special_tokens_map.json, which give BOS, EOS and
// pad as transformers' AutoTokenizer reads them).
func LoadHF(path string) (*HF, error) {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = filepath.Join(path, "tokenizer.json")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := ParseHF(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", file, err)
	}
	if err := t.readSpecialConfig(filepath.Dir(file)); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseHF builds a tokenizer from tokenizer.json bytes. BOS/EOS/pad are unset (-1)
// until a tokenizer_config.json is read (LoadHF does that).
func ParseHF(data []byte) (*HF, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: %w", err)
	}
	if f.Model.Type != "BPE" && !(f.Model.Type == "" && f.Model.Merges != nil) {
		return nil, fmt.Errorf("model.type %q is not supported (only BPE)", f.Model.Type)
	}
	if f.Model.Dropout != nil && *f.Model.Dropout != 0 {
		return nil, fmt.Errorf("model.dropout %v is not supported (encoding would be random)", *f.Model.Dropout)
	}
	if p := f.Model.ContinuingSubwordPrefix; p != nil && *p != "" {
		return nil, fmt.Errorf("model.continuing_subword_prefix %q is not supported", *p)
	}
	if p := f.Model.EndOfWordSuffix; p != nil && *p != "" {
		return nil, fmt.Errorf("model.end_of_word_suffix %q is not supported", *p)
	}
	t := &HF{bos: -1, eos: -1, pad: -1, eod: -1, unkID: -1, addedByID: map[int]*addedToken{}, specialTok: map[string]int{}}
	var err error
	byteLevel := usesByteLevel(f.PreTokenizer) || usesByteLevel(f.Decoder)
	if t.normalize, err = buildNormalizer(f.Normalizer); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	if t.pretok, err = buildPreTokenizer(f.PreTokenizer); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if t.decode, err = buildDecoder(f.Decoder); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	t.pureBLDec = len(t.decode) == 1 && t.decode[0].kind == "ByteLevel"

	m := &bpe{vocab: make(map[string]int32, len(f.Model.Vocab)), merges: map[uint64]uint64{},
		byteLevel: byteLevel, byteFallback: f.Model.ByteFallback, fuseUnk: f.Model.FuseUnk,
		ignoreMerges: f.Model.IgnoreMerges, unk: -1}
	maxID := -1
	for _, a := range f.AddedTokens {
		maxID = max(maxID, a.ID)
	}
	for tok, id := range f.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("model.vocab[%q] = %d is negative", tok, id)
		}
		maxID = max(maxID, id)
	}
	m.tokens = make([]string, maxID+1)
	spell := map[string]string{} // vocab spelling → model key (raw bytes for byte-level)
	for tok, id := range f.Model.Vocab {
		key := tok
		if byteLevel {
			if raw, ok := byteLevelDecode(tok); ok {
				key = string(raw)
				m.vocab[key] = int32(id)
			}
		} else {
			m.vocab[key] = int32(id)
		}
		spell[tok] = key
		m.tokens[id] = tok
	}
	if f.Model.UnkToken != nil {
		id, ok := f.Model.Vocab[*f.Model.UnkToken]
		if !ok {
			return nil, fmt.Errorf("model.unk_token %q is not in the vocab", *f.Model.UnkToken)
		}
		m.unk, t.unkID = int32(id), id
	}
	merges, err := parseMerges(f.Model.Merges)
	if err != nil {
		return nil, err
	}
	for i, mg := range merges {
		a, okA := spell[mg[0]]
		b, okB := spell[mg[1]]
		if !okA || !okB {
			return nil, fmt.Errorf("model.merges[%d] %q: token not in the vocab", i, mg)
		}
		if _, ok := spell[mg[0]+mg[1]]; !ok {
			return nil, fmt.Errorf("model.merges[%d] %q: merged token not in the vocab", i, mg)
		}
		if err := m.addMerge(a, b, i); err != nil {
			return nil, fmt.Errorf("model.merges: %w", err)
		}
	}
	m.finish()
	t.model = m
	if t.pureBLDec {
		t.rawTokens = make([]string, len(m.tokens))
		for id, tok := range m.tokens {
			t.rawTokens[id] = byteLevelDecodeString(tok)
		}
	}

	ids := map[int]bool{}
	for _, id := range f.Model.Vocab {
		ids[id] = true
	}
	t.modelVocab = len(ids)
	var raw, norm []addedToken
	t.added = f.AddedTokens
	for i := range t.added {
		a := &t.added[i]
		ids[a.ID] = true
		t.addedByID[a.ID] = a
		t.specialTok[a.Content] = a.ID
		if a.Normalized && t.normalize != nil {
			norm = append(norm, *a)
		} else {
			raw = append(raw, *a)
		}
	}
	t.vocabSize = len(ids)
	t.rawMatch, t.normMatch = newAddedMatcher(raw), newAddedMatcher(norm)
	if err := t.buildPostProcessor(f.PostProcessor); err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	return t, nil
}

func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var asStrings []string
	if err := json.Unmarshal(raw, &asStrings); err == nil {
		out := make([][2]string, len(asStrings))
		for i, s := range asStrings {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("model.merges[%d] %q: want two tokens separated by one space", i, s)
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: want a list of \"a b\" strings or [a, b] pairs: %w", err)
	}
	return pairs, nil
}

// readSpecialConfig reads bos/eos/pad tokens from tokenizer_config.json and
// special_tokens_map.json in dir, when present.
func (t *HF) readSpecialConfig(dir string) error {
	for _, name := range []string{"special_tokens_map.json", "tokenizer_config.json"} {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tokenizer: %w", err)
		}
		if err := t.SetSpecialFromConfig(data); err != nil {
			return fmt.Errorf("tokenizer: %s: %w", p, err)
		}
	}
	return nil
}

// SetSpecialFromConfig sets BOS, EOS (and EOD, which Megatron's HuggingFaceTokenizer
// takes as EOS) and pad from a tokenizer_config.json or special_tokens_map.json body.
func (t *HF) SetSpecialFromConfig(data []byte) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	get := func(key string) (int, error) {
		s, ok, err := configToken(c, key)
		if err != nil || !ok {
			return -1, err
		}
		if id, ok := t.TokenID(s); ok {
			return id, nil
		}
		return -1, fmt.Errorf("%s %q is not in the vocab", key, s)
	}
	var err error
	if _, ok := c["bos_token"]; ok {
		if t.bos, err = get("bos_token"); err != nil {
			return err
		}
	}
	if _, ok := c["eos_token"]; ok {
		if t.eos, err = get("eos_token"); err != nil {
			return err
		}
		t.eod = t.eos
	}
	if _, ok := c["pad_token"]; ok {
		if t.pad, err = get("pad_token"); err != nil {
			return err
		}
	}
	return t.llamaPostProcessor(c)
}

// llamaPostProcessor does what transformers' LlamaTokenizerFast (and the Code Llama and
// Gemma variants) do on loading: replace the post-processor by one that adds BOS when
// add_bos_token (default true) and EOS when add_eos_token (default false).
func (t *HF) llamaPostProcessor(c map[string]json.RawMessage) error {
	var class string
	if raw, ok := c["tokenizer_class"]; ok {
		_ = json.Unmarshal(raw, &class)
	}
	switch strings.TrimSuffix(class, "Fast") {
	case "LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer":
	default:
		return nil
	}
	flag := func(key string, def bool) (bool, error) {
		raw, ok := c[key]
		if !ok || string(raw) == "null" {
			return def, nil
		}
		var v bool
		if err := json.Unmarshal(raw, &v); err != nil {
			return false, fmt.Errorf("%s: want true or false", key)
		}
		return v, nil
	}
	addBOS, err := flag("add_bos_token", true)
	if err != nil {
		return err
	}
	addEOS, err := flag("add_eos_token", false)
	if err != nil {
		return err
	}
	t.prefix, t.suffix = nil, nil
	if addBOS {
		if t.bos < 0 {
			return fmt.Errorf("add_bos_token is set but there is no bos_token")
		}
		t.prefix = []int{t.bos}
	}
	if addEOS {
		if t.eos < 0 {
			return fmt.Errorf("add_eos_token is set but there is no eos_token")
		}
		t.suffix = []int{t.eos}
	}
	return nil
}

// TokenID returns the id of an added token or model vocab entry spelled as in tokenizer.json.
func (t *HF) TokenID(tok string) (int, bool) {
	if id, ok := t.specialTok[tok]; ok {
		return id, true
	}
	for id, s := range t.model.tokens {
		if s == tok && s != "" {
			return id, true
		}
	}
	return -1, false
}

// Encode encodes with add_special_tokens=true, as tokenizer(text) does in transformers and
// Megatron's HuggingFaceTokenizer.tokenize.
func (t *HF) Encode(text string) []int { return t.EncodeSpecial(text, true) }

// EncodeSpecial encodes text; addSpecial runs the post-processor (BOS for Llama-2).
func (t *HF) EncodeSpecial(text string, addSpecial bool) []int {
	out := make([]int, 0, len(text)/3+4)
	if addSpecial {
		out = append(out, t.prefix...)
	}
	sc := t.caches.get()
	defer t.caches.put(sc)
	segs := t.rawMatch.split(text, nil)
	var sub []segment
	for k, sg := range segs {
		if sg.tok >= 0 {
			out = append(out, t.rawMatch.tokens[sg.tok].ID)
			continue
		}
		s := sg.text
		if t.normalize != nil {
			s = t.normalize(s)
		}
		sub = t.normMatch.split(s, sub[:0])
		for j, ns := range sub {
			if ns.tok >= 0 {
				out = append(out, t.normMatch.tokens[ns.tok].ID)
				continue
			}
			if t.pretok == nil {
				out = t.model.encode(out, ns.text, sc)
				continue
			}
			t.pretok(ns.text, k == 0 && j == 0, func(w string) { out = t.model.encode(out, w, sc) })
		}
	}
	if addSpecial {
		out = append(out, t.suffix...)
	}
	return out
}

// Decode is decode(ids, skip_special_tokens=false).
func (t *HF) Decode(ids []int) string { return t.DecodeSkip(ids, false) }

// DecodeSkip decodes ids; skipSpecial drops added tokens marked special.
func (t *HF) DecodeSkip(ids []int, skipSpecial bool) string {
	if t.pureBLDec {
		var buf []byte
		for _, id := range ids {
			if a, ok := t.addedByID[id]; ok {
				if skipSpecial && a.Special {
					continue
				}
				buf = append(buf, byteLevelDecodeString(a.Content)...)
				continue
			}
			if id >= 0 && id < len(t.rawTokens) {
				buf = append(buf, t.rawTokens[id]...)
			}
		}
		return lossyUTF8(buf)
	}
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if a, ok := t.addedByID[id]; ok {
			if !(skipSpecial && a.Special) {
				toks = append(toks, a.Content)
			}
			continue
		}
		if id >= 0 && id < len(t.model.tokens) && t.model.tokens[id] != "" {
			toks = append(toks, t.model.tokens[id])
		}
	}
	if t.decode == nil {
		return strings.Join(toks, " ")
	}
	for _, st := range t.decode {
		toks = st.apply(toks)
	}
	return strings.Join(toks, "")
}

// VocabSize is the number of distinct ids, added tokens included (len(tokenizer)).
func (t *HF) VocabSize() int { return t.vocabSize }
func (t *HF) EOD() int       { return t.eod }
func (t *HF) BOS() int       { return t.bos }
func (t *HF) EOS() int       { return t.eos }
func (t *HF) Pad() int       { return t.pad }
