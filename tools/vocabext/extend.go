package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gomegatron/gomegatron/ckpt/hf"
	"github.com/gomegatron/gomegatron/ckpt/safetensors"
	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// Tensor names of the vocabulary-indexed matrices in a Hugging Face Llama checkpoint.
const (
	embedName  = "model.embed_tokens.weight"
	lmHeadName = "lm_head.weight"
)

type options struct {
	modelDir, newPieces, outputDir string
	init                           string // "mean" or "normal"
	padTo                          int
	seed                           uint64
	force                          bool
	log                            io.Writer
	progress                       func(total int64) (add func(int), done func())
}

// summary is what extend did.
type summary struct {
	oldVocab, newVocab, rows int
	added                    []spPiece
	duplicates               int
	sources                  [][]int  // old ids averaged for each added piece
	unreachable              []string // added pieces the merged model never produces whole
	skipped                  map[string]string
}

// extend writes the extended model; see the package comment.
func extend(o options) (*summary, error) {
	if o.padTo < 0 {
		return nil, fmt.Errorf("--pad-to-multiple-of %d: want ≥ 0", o.padTo)
	}
	if o.init != "mean" && o.init != "normal" {
		return nil, fmt.Errorf("--init %q: want mean or normal", o.init)
	}
	if err := checkOutputDir(o.modelDir, o.outputDir, o.force); err != nil {
		return nil, err
	}
	m, err := hf.ReadConfig(o.modelDir)
	if err != nil {
		return nil, fmt.Errorf("--model-dir: %w", err)
	}
	if m.Family != hf.Llama && m.Family != hf.Mistral {
		return nil, fmt.Errorf("--model-dir %s: model_type %q; only the Llama family (llama, mistral: SentencePiece tokenizers) is supported", o.modelDir, m.Family)
	}
	spPath := filepath.Join(o.modelDir, "tokenizer.model")
	spBytes, err := os.ReadFile(spPath)
	if err != nil {
		return nil, fmt.Errorf("--model-dir: the SentencePiece tokenizer is needed: %w", err)
	}
	old, err := parseModelProto(spBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spPath, err)
	}
	if _, err := tokenizer.ParseSentencePiece(spBytes); err != nil {
		return nil, fmt.Errorf("%s: %w", spPath, err)
	}
	s := &summary{oldVocab: len(old.pieces), skipped: map[string]string{}}
	if m.Config.VocabSize != s.oldVocab {
		return nil, fmt.Errorf("%s: vocab_size %d differs from the %d pieces of %s; the appended ids must follow the model's rows directly",
			filepath.Join(o.modelDir, "config.json"), m.Config.VocabSize, s.oldVocab, spPath)
	}
	if err := checkAddedIDs(o.modelDir, s.oldVocab); err != nil {
		return nil, err
	}

	cands, err := readNewPieces(o.newPieces)
	if err != nil {
		return nil, err
	}
	s.added, s.duplicates = selectNew(old.pieces, cands)
	merged := old.withPieces(s.added)
	if _, err := tokenizer.ParseSentencePiece(merged); err != nil {
		return nil, fmt.Errorf("internal: the merged tokenizer.model does not load: %w", err)
	}
	if s.sources, err = pieceIDs(old, s.added); err != nil {
		return nil, err
	}
	mergedProto, err := parseModelProto(merged)
	if err != nil {
		return nil, fmt.Errorf("internal: %w", err)
	}
	newIDs, err := pieceIDs(mergedProto, s.added)
	if err != nil {
		return nil, err
	}
	for k, ids := range newIDs {
		if len(ids) != 1 || ids[0] != s.oldVocab+k {
			s.unreachable = append(s.unreachable, s.added[k].Piece)
		}
	}
	s.newVocab = s.oldVocab + len(s.added)
	s.rows = s.newVocab
	if o.padTo > 0 {
		s.rows = (s.newVocab + o.padTo - 1) / o.padTo * o.padTo
	}
	rs := &resizer{oldRows: s.oldVocab, newVocab: s.newVocab, newRows: s.rows, sources: s.sources, init: o.init, seed: o.seed}

	if err := os.MkdirAll(o.outputDir, 0o755); err != nil {
		return nil, fmt.Errorf("--output-dir: %w", err)
	}
	if o.force {
		// Leftovers of an earlier run would contradict what is written now (a stale
		// tokenizer.json wins over tokenizer.model; a stale index or shard over the weights).
		stale, _ := filepath.Glob(filepath.Join(o.outputDir, "*.safetensors"))
		stale = append(stale, filepath.Join(o.outputDir, "tokenizer.json"), filepath.Join(o.outputDir, "config.json"),
			filepath.Join(o.outputDir, safetensors.IndexFile))
		for _, p := range stale {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("--force: %w", err)
			}
		}
	}
	written, err := writeWeights(o, m.Config.UntieEmbeddingsAndOutputWeights, rs, s)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(o.outputDir, "tokenizer.model"), merged); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(o.modelDir)
	if err != nil {
		return nil, fmt.Errorf("--model-dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || written[name] || name == "config.json" || name == "tokenizer.model" {
			if !e.Type().IsRegular() {
				s.skipped[name] = "not a regular file"
			}
			continue
		}
		if why := skippedFile(name); why != "" {
			s.skipped[name] = why
			continue
		}
		if err := copyFileAtomic(filepath.Join(o.outputDir, name), filepath.Join(o.modelDir, name), func(int) {}); err != nil {
			return nil, err
		}
	}
	// config.json last: a folder without it is visibly incomplete.
	cfgPath := filepath.Join(o.modelDir, "config.json")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	if cfg, err = setTopLevelInt(cfg, "vocab_size", s.rows); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	if err := writeFileAtomic(filepath.Join(o.outputDir, "config.json"), cfg); err != nil {
		return nil, err
	}
	s.report(o)
	return s, nil
}

// checkOutputDir refuses an output folder that is the model folder, or that is not empty
// without --force.
func checkOutputDir(modelDir, outDir string, force bool) error {
	if modelDir == "" || outDir == "" {
		return fmt.Errorf("--model-dir and --output-dir are required")
	}
	if a, err := os.Stat(modelDir); err != nil {
		return fmt.Errorf("--model-dir: %w", err)
	} else if b, err := os.Stat(outDir); err == nil && os.SameFile(a, b) {
		return fmt.Errorf("--output-dir %s is --model-dir; write the extended model elsewhere", outDir)
	}
	ents, err := os.ReadDir(outDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--output-dir: %w", err)
	case len(ents) > 0 && !force:
		return fmt.Errorf("--output-dir %s is not empty (%d entries); pass --force to write into it", outDir, len(ents))
	}
	return nil
}

// pieceIDs returns, for each piece, the ids the model m gives the piece's own text ("▁"
// read as a space) with add_dummy_prefix and remove_extra_whitespaces off: its
// segmentation under m. An old tokenizer gives the ids a new piece's row is averaged
// from; the merged one tells whether the piece is produced whole.
func pieceIDs(m *spModelProto, pieces []spPiece) ([][]int, error) {
	raw, err := m.pieceLevel()
	if err != nil {
		return nil, fmt.Errorf("tokenizer.model: %w", err)
	}
	sp, err := tokenizer.ParseSentencePiece(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.model without dummy prefix: %w", err)
	}
	out := make([][]int, len(pieces))
	for k, p := range pieces {
		out[k] = sp.Encode(strings.ReplaceAll(p.Piece, "\u2581", " "))
	}
	return out, nil
}

// writeWeights writes the safetensors files: the shards holding the vocabulary matrices
// are rewritten with the resized tensors, the others copied byte for byte, and the index
// gets the new total_size. It returns the names of the files written.
func writeWeights(o options, untied bool, rs *resizer, s *summary) (map[string]bool, error) {
	set, err := safetensors.OpenDir(o.modelDir)
	if err != nil {
		return nil, fmt.Errorf("--model-dir: %w", err)
	}
	defer set.Close()
	if _, ok := set.Info(embedName); !ok {
		return nil, fmt.Errorf("--model-dir %s: no tensor %s", o.modelDir, embedName)
	}
	_, hasHead := set.Info(lmHeadName)
	if untied && !hasHead {
		return nil, fmt.Errorf("--model-dir %s: tie_word_embeddings is false but there is no %s", o.modelDir, lmHeadName)
	}
	var total int64
	for _, f := range set.Files() {
		st, err := os.Stat(f.Path())
		if err != nil {
			return nil, err
		}
		total += st.Size()
	}
	add, done := o.progress(total)
	defer done()
	written := map[string]bool{}
	var delta int64
	for _, f := range set.Files() {
		name := filepath.Base(f.Path())
		dst := filepath.Join(o.outputDir, name)
		names := f.Names()
		if !slices.Contains(names, embedName) && !slices.Contains(names, lmHeadName) {
			if err := copyFileAtomic(dst, f.Path(), add); err != nil {
				return nil, err
			}
			written[name] = true
			continue
		}
		var ts []safetensors.Named
		for _, n := range names {
			t, err := f.Tensor(n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Path(), err)
			}
			if n == embedName || n == lmHeadName {
				old := t
				if t, err = rs.resize(n, t); err != nil {
					return nil, fmt.Errorf("%s: %w", f.Path(), err)
				}
				delta += int64(t.Bytes() - old.Bytes())
			}
			ts = append(ts, safetensors.Named{Name: n, T: t})
		}
		if err := safetensors.Write(dst, ts, f.Metadata()); err != nil {
			return nil, err
		}
		if st, err := os.Stat(f.Path()); err == nil {
			add(int(st.Size()))
		}
		written[name] = true
	}
	idxPath := filepath.Join(o.modelDir, safetensors.IndexFile)
	if b, err := os.ReadFile(idxPath); err == nil {
		out, err := updateIndex(b, delta)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", idxPath, err)
		}
		if err := writeFileAtomic(filepath.Join(o.outputDir, safetensors.IndexFile), out); err != nil {
			return nil, err
		}
		written[safetensors.IndexFile] = true
	}
	return written, nil
}

// updateIndex adds delta to metadata.total_size of model.safetensors.index.json and
// writes it as save_pretrained does (json.dumps(indent=2, sort_keys=True) + "\n").
func updateIndex(b []byte, delta int64) ([]byte, error) {
	var idx struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, err
	}
	if idx.Metadata == nil {
		idx.Metadata = map[string]any{}
	}
	if ts, ok := idx.Metadata["total_size"].(float64); ok {
		idx.Metadata["total_size"] = int64(ts) + delta
	}
	out, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func (s *summary) report(o options) {
	if o.log == nil {
		return
	}
	fmt.Fprintf(o.log, "vocabext: %d pieces in %s, %d new pieces added (%d already present), vocab %d → %d",
		s.oldVocab, filepath.Join(o.modelDir, "tokenizer.model"), len(s.added), s.duplicates, s.oldVocab, s.newVocab)
	if s.rows != s.newVocab {
		fmt.Fprintf(o.log, ", %d embedding rows (padded to a multiple of %d)", s.rows, o.padTo)
	}
	fmt.Fprintf(o.log, "; new rows initialised by %s\n", o.init)
	if n := len(s.unreachable); n > 0 {
		show := s.unreachable[:min(n, 10)]
		fmt.Fprintf(o.log, "vocabext: warning: %d added pieces are never produced whole by the merged model (with BPE: no split of the piece into two pieces), e.g. %q\n", n, show)
	}
	names := make([]string, 0, len(s.skipped))
	for n := range s.skipped {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(o.log, "vocabext: not copied: %s (%s)\n", n, s.skipped[n])
	}
	fmt.Fprintf(o.log, "vocabext: wrote %s\n", o.outputDir)
}
