package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// PaiSentencePiece is a slow Hugging Face tokenizer over a SentencePiece model as
// Pai-Megatron-Patch's BaichuanTokenizer loads it (Baichuan's remote tokenization_baichuan.py
// with use_fast=False): tokenizer(text) is the model's pieces, with BOS first when
// tokenizer_config.json's add_bos_token (the class's default: true) and EOS last when its
// add_eos_token (default false); every Baichuan and Baichuan 2 config sets both false. The
// pad is the config's pad_token (Baichuan's "<unk>", id 0), else "[PAD]", which Pai adds
// at the next free id; eod = eos. As with the other SentencePiece tokenizers here, special
// tokens written in the text are ordinary text.
type PaiSentencePiece struct {
	*SentencePiece
	addBOS, addEOS bool
	pad            int
}

// Encode is tokenizer(text) with the special tokens the config asks for.
func (t *PaiSentencePiece) Encode(text string) []int {
	ids := t.SentencePiece.Encode(text)
	if t.addBOS && t.bos >= 0 {
		ids = append([]int{t.bos}, ids...)
	}
	if t.addEOS && t.eos >= 0 {
		ids = append(ids, t.eos)
	}
	return ids
}

// Pad is the config's pad token, or the id Pai's added "[PAD]" takes.
func (t *PaiSentencePiece) Pad() int { return t.pad }

// LoadBaichuan reads dir/tokenizer.model and dir/tokenizer_config.json (optional) as
// Pai's BaichuanTokenizer does.
func LoadBaichuan(dir string) (*PaiSentencePiece, error) {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		dir = filepath.Dir(dir) // the tokenizer.model itself
	}
	sp, err := LoadSentencePiece(filepath.Join(dir, "tokenizer.model"))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: BaichuanTokenizer reads the folder's tokenizer.model: %w", err)
	}
	t := &PaiSentencePiece{SentencePiece: sp, addBOS: true, pad: -1}
	p := filepath.Join(dir, "tokenizer_config.json")
	data, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if err == nil {
		if err := t.readConfig(data); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", p, err)
		}
	}
	if t.pad < 0 {
		t.pad = sp.VocabSize() // Pai: add_special_tokens({"pad_token": "[PAD]"})
	}
	return t, nil
}

func (t *PaiSentencePiece) readConfig(data []byte) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	for key, dst := range map[string]*bool{"add_bos_token": &t.addBOS, "add_eos_token": &t.addEOS} {
		if raw, ok := c[key]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("%s: want true or false", key)
			}
		}
	}
	for key, dst := range map[string]*int{"bos_token": &t.bos, "eos_token": &t.eos, "pad_token": &t.pad} {
		s, ok, err := configToken(c, key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		id := t.PieceID(s)
		if id < 0 {
			return fmt.Errorf("%s %q is not a piece of tokenizer.model", key, s)
		}
		*dst = id
	}
	return nil
}

// configToken reads a special token of tokenizer_config.json or special_tokens_map.json: a
// string or an AddedToken object {"content": …}; ok is false when absent or null.
func configToken(c map[string]json.RawMessage, key string) (tok string, ok bool, err error) {
	raw, found := c[key]
	if !found || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &tok); err == nil {
		return tok, true, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", false, fmt.Errorf("%s: want a string or {\"content\": …}", key)
	}
	return obj.Content, true, nil
}
