package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
)

// A minimal protobuf wire-format reader for SentencePiece's ModelProto
// (sentencepiece_model.proto), reading only the fields encoding and decoding need.

type protoReader struct {
	b   []byte
	err error
}

func (r *protoReader) varint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad varint")
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// next returns the next field number and wire type; ok is false at the end or on error.
func (r *protoReader) next() (field int, wire int, ok bool) {
	if len(r.b) == 0 || r.err != nil {
		return 0, 0, false
	}
	tag := r.varint()
	if r.err != nil {
		return 0, 0, false
	}
	return int(tag >> 3), int(tag & 7), true
}

func (r *protoReader) bytes() []byte {
	n := r.varint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("length %d past the end", n)
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *protoReader) fixed32() uint32 {
	if len(r.b) < 4 {
		r.err = fmt.Errorf("truncated fixed32")
		r.b = nil
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *protoReader) skip(wire int) {
	switch wire {
	case 0:
		r.varint()
	case 1:
		if len(r.b) < 8 {
			r.err = fmt.Errorf("truncated fixed64")
			r.b = nil
			return
		}
		r.b = r.b[8:]
	case 2:
		r.bytes()
	case 5:
		r.fixed32()
	default:
		r.err = fmt.Errorf("unsupported wire type %d", wire)
		r.b = nil
	}
}

// Piece types of ModelProto.SentencePiece.Type.
const (
	pieceNormal      = 1
	pieceUnknown     = 2
	pieceControl     = 3
	pieceUserDefined = 4
	pieceUnused      = 5
	pieceByte        = 6
)

type spPiece struct {
	piece string
	score float32
	typ   int
}

// spModel is the decoded ModelProto.
type spModel struct {
	pieces                 []spPiece
	modelType              int // 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
	byteFallback           bool
	treatWSAsSuffix        bool
	unkSurface             string
	unkPiece, bosPiece     string
	eosPiece, padPiece     string
	normName               string
	charsmap               []byte
	addDummyPrefix         bool
	removeExtraWhitespaces bool
	escapeWhitespaces      bool
}

func parseSPModel(b []byte) (*spModel, error) {
	m := &spModel{modelType: 1, unkSurface: " \u2047 ", unkPiece: "<unk>", bosPiece: "<s>",
		eosPiece: "</s>", padPiece: "<pad>", addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true}
	r := &protoReader{b: b}
	for {
		f, w, ok := r.next()
		if !ok {
			break
		}
		switch {
		case f == 1 && w == 2:
			p, err := parseSPPiece(r.bytes())
			if err != nil {
				return nil, fmt.Errorf("pieces[%d]: %w", len(m.pieces), err)
			}
			m.pieces = append(m.pieces, p)
		case f == 2 && w == 2:
			if err := m.parseTrainerSpec(r.bytes()); err != nil {
				return nil, fmt.Errorf("trainer_spec: %w", err)
			}
		case f == 3 && w == 2:
			if err := m.parseNormalizerSpec(r.bytes()); err != nil {
				return nil, fmt.Errorf("normalizer_spec: %w", err)
			}
		default:
			r.skip(w)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(m.pieces) == 0 {
		return nil, fmt.Errorf("no pieces (not a SentencePiece model?)")
	}
	return m, nil
}

func parseSPPiece(b []byte) (spPiece, error) {
	p := spPiece{typ: pieceNormal}
	r := &protoReader{b: b}
	for {
		f, w, ok := r.next()
		if !ok {
			break
		}
		switch {
		case f == 1 && w == 2:
			p.piece = string(r.bytes())
		case f == 2 && w == 5:
			p.score = math.Float32frombits(r.fixed32())
		case f == 3 && w == 0:
			p.typ = int(r.varint())
		default:
			r.skip(w)
		}
	}
	return p, r.err
}

func (m *spModel) parseTrainerSpec(b []byte) error {
	r := &protoReader{b: b}
	for {
		f, w, ok := r.next()
		if !ok {
			break
		}
		switch {
		case f == 3 && w == 0:
			m.modelType = int(r.varint())
		case f == 24 && w == 0:
			m.treatWSAsSuffix = r.varint() != 0
		case f == 35 && w == 0:
			m.byteFallback = r.varint() != 0
		case f == 44 && w == 2:
			m.unkSurface = string(r.bytes())
		case f == 45 && w == 2:
			m.unkPiece = string(r.bytes())
		case f == 46 && w == 2:
			m.bosPiece = string(r.bytes())
		case f == 47 && w == 2:
			m.eosPiece = string(r.bytes())
		case f == 48 && w == 2:
			m.padPiece = string(r.bytes())
		default:
			r.skip(w)
		}
	}
	return r.err
}

func (m *spModel) parseNormalizerSpec(b []byte) error {
	r := &protoReader{b: b}
	for {
		f, w, ok := r.next()
		if !ok {
			break
		}
		switch {
		case f == 1 && w == 2:
			m.normName = string(r.bytes())
		case f == 2 && w == 2:
			m.charsmap = r.bytes()
		case f == 3 && w == 0:
			m.addDummyPrefix = r.varint() != 0
		case f == 4 && w == 0:
			m.removeExtraWhitespaces = r.varint() != 0
		case f == 5 && w == 0:
			m.escapeWhitespaces = r.varint() != 0
		default:
			r.skip(w)
		}
	}
	return r.err
}
