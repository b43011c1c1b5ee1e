package main

import (
	"encoding/binary"
	"fmt"
	"math"
)

// A SentencePiece ModelProto (sentencepiece_model.proto) kept as its raw top-level
// fields, so that writing it back without changes reproduces the input byte for byte.
// Only the pieces (field 1) are decoded; trainer_spec (2), normalizer_spec (3),
// self_test_data (4) and denormalizer_spec (5) pass through untouched.

// Piece types of ModelProto.SentencePiece.Type.
const (
	typeNormal      = 1
	typeUnknown     = 2
	typeControl     = 3
	typeUserDefined = 4
	typeUnused      = 5
	typeByte        = 6
)

// spPiece is one ModelProto.SentencePiece.
type spPiece struct {
	Piece string
	Score float32
	Type  int // NORMAL when the field is absent (the proto default)
}

// rawField is one top-level field: its number and its complete encoding (tag included).
type rawField struct {
	num int
	raw []byte
}

// spModelProto is a parsed .model file.
type spModelProto struct {
	fields []rawField
	pieces []spPiece // decoded field-1 entries, in order (piece id = index)
	// lastPiece is the index in fields of the last pieces entry: appended pieces go
	// right after it, where protobuf's serializer puts repeated field 1.
	lastPiece int
}

// protoCursor walks protobuf wire format.
type protoCursor struct {
	b   []byte
	off int
}

func (c *protoCursor) varint() (uint64, error) {
	v, n := binary.Uvarint(c.b[c.off:])
	if n <= 0 {
		return 0, fmt.Errorf("bad varint at byte %d", c.off)
	}
	c.off += n
	return v, nil
}

// field reads one field and returns its number, wire type and payload (for wire type 2
// the bytes inside the length prefix; otherwise the value bytes).
func (c *protoCursor) field() (num, wire int, payload []byte, err error) {
	tag, err := c.varint()
	if err != nil {
		return 0, 0, nil, err
	}
	num, wire = int(tag>>3), int(tag&7)
	if num == 0 {
		return 0, 0, nil, fmt.Errorf("field number 0 at byte %d", c.off)
	}
	start := c.off
	switch wire {
	case 0:
		if _, err := c.varint(); err != nil {
			return 0, 0, nil, err
		}
	case 1, 5:
		n := 8
		if wire == 5 {
			n = 4
		}
		if len(c.b)-c.off < n {
			return 0, 0, nil, fmt.Errorf("truncated fixed%d at byte %d", 8*n, c.off)
		}
		c.off += n
	case 2:
		n, err := c.varint()
		if err != nil {
			return 0, 0, nil, err
		}
		if n > uint64(len(c.b)-c.off) {
			return 0, 0, nil, fmt.Errorf("field %d: length %d past the end at byte %d", num, n, c.off)
		}
		start = c.off
		c.off += int(n)
	default:
		return 0, 0, nil, fmt.Errorf("field %d: unsupported wire type %d", num, wire)
	}
	return num, wire, c.b[start:c.off], nil
}

// parseModelProto splits a .model file into its top-level fields and decodes the pieces.
func parseModelProto(b []byte) (*spModelProto, error) {
	m := &spModelProto{lastPiece: -1}
	c := &protoCursor{b: b}
	for c.off < len(b) {
		start := c.off
		num, wire, payload, err := c.field()
		if err != nil {
			return nil, err
		}
		if num == 1 {
			if wire != 2 {
				return nil, fmt.Errorf("pieces[%d]: wire type %d, want 2", len(m.pieces), wire)
			}
			p, err := parsePiece(payload)
			if err != nil {
				return nil, fmt.Errorf("pieces[%d]: %w", len(m.pieces), err)
			}
			m.pieces = append(m.pieces, p)
			m.lastPiece = len(m.fields)
		}
		m.fields = append(m.fields, rawField{num: num, raw: b[start:c.off]})
	}
	if len(m.pieces) == 0 {
		return nil, fmt.Errorf("no pieces (not a SentencePiece model?)")
	}
	return m, nil
}

func parsePiece(b []byte) (spPiece, error) {
	p := spPiece{Type: typeNormal}
	c := &protoCursor{b: b}
	for c.off < len(b) {
		num, wire, payload, err := c.field()
		if err != nil {
			return p, err
		}
		switch {
		case num == 1 && wire == 2:
			p.Piece = string(payload)
		case num == 2 && wire == 5:
			p.Score = math.Float32frombits(binary.LittleEndian.Uint32(payload))
		case num == 3 && wire == 0:
			v, _ := binary.Uvarint(payload)
			p.Type = int(v)
		}
	}
	return p, nil
}

// encodePiece serializes a SentencePiece message as Python protobuf does for a piece
// created as in Chinese-LLaMA's merge script (piece and score set, type set only when
// it is not the default NORMAL): fields in number order.
func encodePiece(p spPiece) []byte {
	var b []byte
	b = append(b, 1<<3|2)
	b = binary.AppendUvarint(b, uint64(len(p.Piece)))
	b = append(b, p.Piece...)
	b = append(b, 2<<3|5)
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(p.Score))
	if p.Type != typeNormal {
		b = append(b, 3<<3|0)
		b = binary.AppendUvarint(b, uint64(p.Type))
	}
	return b
}

// lenField encodes field num with wire type 2 around payload.
func lenField(num int, payload []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(num)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// withPieces returns the model's bytes with extra pieces appended after the existing
// ones; with no extra pieces the result equals the input bytes.
func (m *spModelProto) withPieces(extra []spPiece) []byte {
	var out []byte
	for i, f := range m.fields {
		out = append(out, f.raw...)
		if i == m.lastPiece {
			for _, p := range extra {
				out = append(out, lenField(1, encodePiece(p))...)
			}
		}
	}
	return out
}

// pieceLevel returns the model's bytes with normalizer_spec.add_dummy_prefix and
// remove_extra_whitespaces turned off, so that encoding a piece's text (with "▁" as
// space) yields the model's segmentation of exactly that piece: "国人" gives the pieces of
// "国人", not of "▁国人". Used to find the old ids a new piece is made of.
func (m *spModelProto) pieceLevel() ([]byte, error) {
	off := []byte{3 << 3, 0, 4 << 3, 0} // add_dummy_prefix = false, remove_extra_whitespaces = false
	var out []byte
	found := false
	for _, f := range m.fields {
		if f.num != 3 {
			out = append(out, f.raw...)
			continue
		}
		found = true
		c := &protoCursor{b: f.raw}
		if _, _, payload, err := c.field(); err != nil {
			return nil, fmt.Errorf("normalizer_spec: %w", err)
		} else {
			var kept []byte
			pc := &protoCursor{b: payload}
			for pc.off < len(payload) {
				start := pc.off
				num, _, _, err := pc.field()
				if err != nil {
					return nil, fmt.Errorf("normalizer_spec: %w", err)
				}
				if num != 3 && num != 4 {
					kept = append(kept, payload[start:pc.off]...)
				}
			}
			out = append(out, lenField(3, append(kept, off...))...)
		}
	}
	if !found {
		out = append(out, lenField(3, off)...)
	}
	return out, nil
}
