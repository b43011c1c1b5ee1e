package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// candidate is a piece offered for addition, with the type it will have.
type candidate struct {
	piece string
	typ   int
}

// readNewPieces reads --new-pieces: a SentencePiece .model (its NORMAL pieces, and its
// USER_DEFINED pieces which stay USER_DEFINED; CONTROL, UNKNOWN, BYTE and UNUSED pieces
// are special to that model and skipped), or a UTF-8 text file with one piece per line
// (a SentencePiece .vocab file works too: what follows a tab is ignored; spaces are
// written as "▁"; empty lines are skipped). A file is read as a .model when its name ends
// in .model or it is not valid UTF-8.
func readNewPieces(path string) ([]candidate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--new-pieces: %w", err)
	}
	if strings.HasSuffix(path, ".model") || !utf8.Valid(data) {
		m, err := parseModelProto(data)
		if err != nil {
			return nil, fmt.Errorf("--new-pieces %s: not a SentencePiece model: %w", path, err)
		}
		var out []candidate
		for _, p := range m.pieces {
			switch p.Type {
			case typeNormal, typeUserDefined:
				out = append(out, candidate{p.Piece, p.Type})
			}
		}
		return out, nil
	}
	var out []candidate
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSuffix(sc.Text(), "\r")
		if i := strings.IndexByte(s, '\t'); i >= 0 {
			s = s[:i]
		}
		if s == "" {
			continue
		}
		if strings.ContainsRune(s, 0) {
			return nil, fmt.Errorf("--new-pieces %s:%d: piece contains a NUL byte", path, line)
		}
		out = append(out, candidate{strings.ReplaceAll(s, " ", "\u2581"), typeNormal})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--new-pieces %s: %w", path, err)
	}
	return out, nil
}

// selectNew returns the candidates not already in the vocabulary, first occurrence
// first, as Chinese-LLaMA's merge script appends them: NORMAL (or USER_DEFINED) with
// score 0, after the existing pieces so every existing id stays the same.
func selectNew(old []spPiece, cands []candidate) (added []spPiece, dup int) {
	have := make(map[string]bool, len(old)+len(cands))
	for _, p := range old {
		have[p.Piece] = true
	}
	for _, c := range cands {
		if have[c.piece] {
			dup++
			continue
		}
		have[c.piece] = true
		added = append(added, spPiece{Piece: c.piece, Score: 0, Type: c.typ})
	}
	return added, dup
}
