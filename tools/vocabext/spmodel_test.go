package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/tokenizer"
)

// TestModelProtoRoundTrip: parsing a .model and writing it back without changes gives the
// same bytes; with appended pieces, the output is the input with the new piece entries
// inserted after the last existing piece, and data/tokenizer reads the old pieces at
// their old ids and the new ones after them.
func TestModelProtoRoundTrip(t *testing.T) {
	for _, name := range []string{"sp_bpe2k.model", "sp_unigram2k.model"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", name))
			require.NoError(t, err)
			m, err := parseModelProto(in)
			require.NoError(t, err)
			require.Len(t, m.pieces, 2000)
			assert.Equal(t, in, m.withPieces(nil))

			extra := []spPiece{{Piece: "▁中国", Type: typeNormal}, {Piece: "<user>", Type: typeUserDefined}}
			out := m.withPieces(extra)
			// The input's bytes are a prefix and a suffix of the output around the new entries.
			var ins []byte
			for _, p := range extra {
				ins = append(ins, lenField(1, encodePiece(p))...)
			}
			cut := 0
			for i := 0; i <= m.lastPiece; i++ {
				cut += len(m.fields[i].raw)
			}
			assert.Equal(t, in[:cut], out[:cut])
			assert.Equal(t, ins, out[cut:cut+len(ins)])
			assert.Equal(t, in[cut:], out[cut+len(ins):])

			m2, err := parseModelProto(out)
			require.NoError(t, err)
			require.Len(t, m2.pieces, 2002)
			assert.Equal(t, m.pieces, m2.pieces[:2000])
			assert.Equal(t, extra, m2.pieces[2000:])
			assert.Equal(t, out, m2.withPieces(nil))

			sp, err := tokenizer.ParseSentencePiece(out)
			require.NoError(t, err)
			assert.Equal(t, 2002, sp.VocabSize())
			ids := sp.Encode("<user>")
			require.Len(t, ids, 2, "the dummy-prefix ▁, then the USER_DEFINED piece matched verbatim")
			assert.Equal(t, 2001, ids[1])
		})
	}
}

// TestEncodePieceWireFormat checks the bytes of one piece against the protobuf encoding
// written out by hand: field 1 (tag 0x0a) length-prefixed UTF-8, field 2 (tag 0x15) the
// float32 little-endian, field 3 (tag 0x18) the type only when it is not NORMAL.
func TestEncodePieceWireFormat(t *testing.T) {
	tests := []struct {
		p    spPiece
		want []byte
	}{
		{spPiece{Piece: "ab", Score: 0, Type: typeNormal}, []byte{0x0a, 2, 'a', 'b', 0x15, 0, 0, 0, 0}},
		{spPiece{Piece: "a", Score: -1, Type: typeUserDefined}, []byte{0x0a, 1, 'a', 0x15, 0, 0, 0x80, 0xbf, 0x18, 4}},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, encodePiece(tc.p))
	}
}

// TestPieceLevel: without the dummy prefix a piece's text is segmented as itself: "天气"
// gives the pieces of "天气", and "▁天气" (space first) those that the normal tokenizer
// gives "天气" (which adds the "▁").
func TestPieceLevel(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "sp_bpe2k.model"))
	require.NoError(t, err)
	m, err := parseModelProto(in)
	require.NoError(t, err)
	ids, err := pieceIDs(m, []spPiece{{Piece: "天气"}, {Piece: "▁天气"}, {Piece: "▁the"}})
	require.NoError(t, err)
	sp, err := tokenizer.ParseSentencePiece(in)
	require.NoError(t, err)
	assert.Equal(t, sp.Encode("天气"), ids[1])
	assert.Equal(t, sp.Encode("the"), ids[2])
	assert.Len(t, ids[2], 1)
	assert.Equal(t, ids[1][len(ids[1])-2:], ids[0], "天气 without ▁: the same last two ids")
	assert.NotContains(t, ids[0], sp.Encode(" ")[0], "no ▁ piece in 天气's ids")
	assert.True(t, bytes.Equal(in, m.withPieces(nil)), "pieceLevel does not modify the model")
}
