package main

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// tbScalars reads the scalar events of a TensorBoard file (TFRecord frames of Event protos:
// step is field 2, the summary field 5, its value's tag field 1 and simple_value field 2)
// into tag → step → value.
func tbScalars(t *testing.T, dir string) map[string]map[int64]float32 {
	files, err := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	data, err := os.ReadFile(files[0])
	require.NoError(t, err)
	varint := func(b []byte, i int) (uint64, int) {
		v, n := binary.Uvarint(b[i:])
		require.Positive(t, n)
		return v, i + n
	}
	// fields calls f for each field of a protobuf message: number, varint value or bytes.
	fields := func(b []byte, f func(num int, v uint64, raw []byte)) {
		for i := 0; i < len(b); {
			k, j := varint(b, i)
			switch k & 7 {
			case 0:
				v, j2 := varint(b, j)
				f(int(k>>3), v, nil)
				i = j2
			case 1:
				f(int(k>>3), 0, b[j:j+8])
				i = j + 8
			case 5:
				f(int(k>>3), 0, b[j:j+4])
				i = j + 4
			case 2:
				n, j2 := varint(b, j)
				f(int(k>>3), 0, b[j2:j2+int(n)])
				i = j2 + int(n)
			default:
				t.Fatalf("wire type %d", k&7)
			}
		}
	}
	out := map[string]map[int64]float32{}
	for i := 0; i < len(data); {
		n := int(binary.LittleEndian.Uint64(data[i:]))
		payload := data[i+12 : i+12+n]
		i += 16 + n
		var step int64
		fields(payload, func(num int, v uint64, raw []byte) {
			switch num {
			case 2:
				step = int64(v)
			case 5:
				fields(raw, func(_ int, _ uint64, value []byte) {
					var tag string
					var val float32
					fields(value, func(num int, _ uint64, raw []byte) {
						switch num {
						case 1:
							tag = string(raw)
						case 2:
							val = math.Float32frombits(binary.LittleEndian.Uint32(raw))
						}
					})
					if out[tag] == nil {
						out[tag] = map[int64]float32{}
					}
					out[tag][step] = val
				})
			}
		})
	}
	return out
}

// TestTensorBoardScalars: Megatron's training_log scalars, each against the iteration and
// as "<tag> vs samples" against the consumed samples (global batch 8), the validation
// loss likewise, the iteration time with --log-timers-to-tensorboard, the world size with
// --log-world-size-to-tensorboard, and no learning rate or loss scale with Megatron's
// --no-log-learnig-rate-to-tensorboard and --no-log-loss-scale-to-tensorboard.
func TestTensorBoardScalars(t *testing.T) {
	dir := t.TempDir()
	prefix := writeCorpus(t, dir)
	tb := filepath.Join(dir, "tb")
	runGolaunch(t, append([]string{"--standalone"}, append(pretrainArgs(prefix, tb), "--log-timers-to-tensorboard",
		"--log-validation-ppl-to-tensorboard", "--log-world-size-to-tensorboard", "--log-batch-size-to-tensorboard")...)...)
	sc := tbScalars(t, tb)
	for _, tag := range []string{"learning-rate", "batch-size", "lm loss", "loss-scale", "world-size", "grad-norm"} {
		require.Len(t, sc[tag], 12, tag)
		require.Len(t, sc[tag+" vs samples"], 12, tag)
		for it := int64(1); it <= 12; it++ {
			require.Equal(t, sc[tag][it], sc[tag+" vs samples"][8*it], "%s at iteration %d", tag, it)
		}
	}
	require.Equal(t, float32(1), sc["world-size"][5])
	require.Equal(t, float32(8), sc["batch-size"][5])
	require.Len(t, sc["iteration-time"], 12)
	for _, tag := range []string{"lm loss validation", "lm loss validation ppl"} {
		require.Contains(t, sc[tag], int64(6), tag)
		require.Equal(t, sc[tag][6], sc[tag+" vs samples"][48], tag)
	}
	require.InEpsilon(t, math.Exp(float64(sc["lm loss validation"][6])), float64(sc["lm loss validation ppl"][6]), 1e-5)

	quiet := filepath.Join(dir, "quiet")
	runGolaunch(t, append([]string{"--standalone"}, append(pretrainArgs(prefix, quiet),
		"--no-log-learnig-rate-to-tensorboard", "--no-log-loss-scale-to-tensorboard")...)...)
	q := tbScalars(t, quiet)
	for _, tag := range []string{"learning-rate", "loss-scale", "world-size", "iteration-time", "lm loss validation ppl"} {
		require.NotContains(t, q, tag)
	}
	require.Equal(t, sc["lm loss"], q["lm loss"], "the same run")
}
