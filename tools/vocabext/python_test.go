package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// crossCheckPy checks an extended folder with python3-sentencepiece 0.1.97 (the C++
// library) and numpy, independently of the Go code:
//   - the written tokenizer.model loads; ids below the old size have the old pieces,
//     scores and types; the added pieces follow with score 0 and no special type;
//   - a ▁-initial added piece's text encodes to exactly its new id unless the tool
//     listed it as unreachable, and to the ids the tool averaged under the old model;
//   - every added piece's ids under the old model without dummy prefix (the model bytes
//     the tool derives) are the tool's source ids;
//   - every corpus line that contains no added piece encodes as before, and every line
//     encodes with the merged model to the ids data/tokenizer gives;
//   - each new embedding / lm_head row is the float64 mean of the old rows, summed in
//     order, rounded to float32 and then to the dtype (bf16/f16 round to nearest even).
const crossCheckPy = `
import json, sys, os, glob, struct
import numpy as np
import sentencepiece as spm

a = json.load(open(sys.argv[1]))
errors = []
old = spm.SentencePieceProcessor(model_file=a["old"])
new = spm.SentencePieceProcessor(model_file=a["merged"])
pl = spm.SentencePieceProcessor(model_proto=open(a["piece_level"], "rb").read())
N = old.get_piece_size()
added, sources, unreach = a["added"], a["sources"], set(a["unreachable"])
if new.get_piece_size() != N + len(added):
    errors.append("size %d, want %d" % (new.get_piece_size(), N + len(added)))
kinds = lambda sp, i: (sp.is_control(i), sp.is_unknown(i), sp.is_unused(i), sp.is_byte(i))
for i in range(N):
    if (new.id_to_piece(i), new.get_score(i), kinds(new, i)) != (old.id_to_piece(i), old.get_score(i), kinds(old, i)):
        errors.append("old id %d changed" % i)
reached = 0
for k, p in enumerate(added):
    i = N + k
    if new.id_to_piece(i) != p or new.get_score(i) != 0.0 or any(kinds(new, i)):
        errors.append("new id %d: %r score %r kinds %r, want %r" % (i, new.id_to_piece(i), new.get_score(i), kinds(new, i), p))
    if pl.encode(p.replace("\u2581", " ")) != sources[k]:
        errors.append("%r: piece-level ids %r, tool averaged %r" % (p, pl.encode(p.replace("\u2581", " ")), sources[k]))
    if p.startswith("\u2581") and a["types"][k] == 1:
        text = p[1:].replace("\u2581", " ")
        ids = new.encode(text)
        if (ids == [i]) != (p not in unreach):
            errors.append("%r encodes to %r; tool says reachable=%r" % (p, ids, p not in unreach))
        reached += ids == [i]
        if old.encode(text) != sources[k]:
            errors.append("%r: old ids %r, tool averaged %r" % (p, old.encode(text), sources[k]))
same = 0
enc = []
for line in open(a["corpus"], encoding="utf-8"):
    d = json.loads(line)
    enc.append(new.encode(d["text"]))
    norm = "\u2581" + d["text"].replace(" ", "\u2581")
    if any(p in norm for p in added):
        continue
    same += 1
    if new.encode(d["text"]) != d["ids"]:
        errors.append("corpus %d changed" % d["idx"])

def load(folder):
    out = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        b = open(f, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        hdr = json.loads(b[8:8 + n])
        for name, info in hdr.items():
            if name == "__metadata__" or name not in ("model.embed_tokens.weight", "lm_head.weight"):
                continue
            s, e = info["data_offsets"]
            raw = b[8 + n + s: 8 + n + e]
            if info["dtype"] == "F32":
                x = np.frombuffer(raw, dtype="<f4")
            elif info["dtype"] == "F16":
                x = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            elif info["dtype"] == "BF16":
                x = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            out[name] = (info["dtype"], x.reshape(info["shape"]))
    return out

def to_dtype(x32, dt):
    if dt == "F32":
        return x32
    if dt == "F16":
        return x32.astype(np.float16).astype(np.float32)
    u = x32.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)
    return (r << 16).view(np.float32)

wi, wo = load(a["in"]), load(a["out"])
rows_checked = 0
for name, (dt, E) in wi.items():
    F = wo[name][1]
    if not np.array_equal(F[:N].view(np.uint32 if dt == "F32" else np.float32), E.view(np.uint32 if dt == "F32" else np.float32)):
        errors.append("%s: old rows changed" % name)
    for k, ids in enumerate(sources):
        acc = np.zeros(E.shape[1], dtype=np.float64)
        for t in ids:
            acc += E[t].astype(np.float64)
        want = to_dtype((acc / len(ids)).astype(np.float32), dt)
        if not np.array_equal(want.view(np.uint32), F[N + k].view(np.uint32)):
            errors.append("%s row %d (%r): not the mean of %r" % (name, N + k, added[k], ids))
        rows_checked += 1
print(json.dumps({"errors": errors[:20], "n_errors": len(errors), "reached": reached, "same": same, "rows": rows_checked, "enc": enc}))
`

func havePython(t *testing.T) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import sentencepiece, numpy").Run(); err != nil {
		t.Skip("python3-sentencepiece and python3-numpy are needed for the cross-check (apt install python3-sentencepiece python3-numpy)")
	}
}

func TestCrossCheckSentencePiecePython(t *testing.T) {
	havePython(t)
	for _, tc := range extendCases {
		if tc.init != "mean" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			in, out, s := runCase(t, tc)
			old, err := parseModelProto(mustRead(t, filepath.Join(in, "tokenizer.model")))
			require.NoError(t, err)
			pl, err := old.pieceLevel()
			require.NoError(t, err)
			tmp := t.TempDir()
			plPath := filepath.Join(tmp, "piece_level.model")
			require.NoError(t, os.WriteFile(plPath, pl, 0o644))
			var added []string
			var types []int
			for _, p := range s.added {
				added = append(added, p.Piece)
				types = append(types, p.Type)
			}
			corpus, err := filepath.Abs(filepath.Join("testdata", "sp-bpe2k.expected.jsonl"))
			require.NoError(t, err)
			args := map[string]any{
				"old": filepath.Join(in, "tokenizer.model"), "merged": filepath.Join(out, "tokenizer.model"),
				"piece_level": plPath, "added": added, "types": types, "sources": s.sources,
				"unreachable": append([]string{}, s.unreachable...), "corpus": corpus, "in": in, "out": out,
			}
			b, err := json.Marshal(args)
			require.NoError(t, err)
			argPath := filepath.Join(tmp, "args.json")
			require.NoError(t, os.WriteFile(argPath, b, 0o644))
			script := filepath.Join(tmp, "check.py")
			require.NoError(t, os.WriteFile(script, []byte(crossCheckPy), 0o644))
			res, err := exec.Command("/usr/bin/python3", script, argPath).CombinedOutput()
			require.NoError(t, err, "%s", res)
			var r struct {
				Errors  []string `json:"errors"`
				N       int      `json:"n_errors"`
				Reached int      `json:"reached"`
				Same    int      `json:"same"`
				Rows    int      `json:"rows"`
				Enc     [][]int  `json:"enc"`
			}
			lines := strings.Split(strings.TrimSpace(string(res)), "\n")
			require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &r), "%s", res)
			assert.Zero(t, r.N, "%v", r.Errors)
			assert.Positive(t, r.Reached)
			assert.Positive(t, r.Same)
			nMat := 2
			if tc.fixture.tied {
				nMat = 1
			}
			assert.Equal(t, nMat*len(s.added), r.Rows)
			// Every corpus line, new pieces or not, encodes with the merged model as the C++ library does.
			sp, err := tokenizer.LoadSentencePiece(filepath.Join(out, "tokenizer.model"))
			require.NoError(t, err)
			corpusLines := loadCorpus(t, corpus)
			require.Len(t, r.Enc, len(corpusLines))
			for i, c := range corpusLines {
				assert.Equal(t, r.Enc[i], sp.Encode(c.Text), "%q", c.Text)
			}
			t.Logf("sentencepiece: %d new pieces encode to their ids, %d corpus lines unchanged, %d rows checked", r.Reached, r.Same, r.Rows)
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
