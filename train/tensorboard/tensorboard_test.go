package tensorboard

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// reader is an independent TFRecord + Event decoder in Python (CRC-32C written out from
// its definition), so the test does not trust the Go encoder to check itself.
const reader = `
import struct, sys, json
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xFFFFFFFF
def varint(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1; r |= (x & 0x7f) << s; s += 7
        if x < 0x80: return r, i
def fields(b):
    i, out = 0, []
    while i < len(b):
        k, i = varint(b, i); f, t = k >> 3, k & 7
        if t == 0: v, i = varint(b, i)
        elif t == 1: v = b[i:i+8]; i += 8
        elif t == 5: v = b[i:i+4]; i += 4
        elif t == 2: n, i = varint(b, i); v = b[i:i+n]; i += n
        out.append((f, v))
    return out
data = open(sys.argv[1], 'rb').read(); i = 0; events = []
while i < len(data):
    hdr = data[i:i+8]; n = struct.unpack('<Q', hdr)[0]
    assert struct.unpack('<I', data[i+8:i+12])[0] == masked(hdr), 'length crc'
    p = data[i+12:i+12+n]
    assert struct.unpack('<I', data[i+12+n:i+16+n])[0] == masked(p), 'payload crc'
    i += 16 + n
    ev = {}
    for f, v in fields(p):
        if f == 1: ev['wall'] = struct.unpack('<d', v)[0]
        if f == 2: ev['step'] = v
        if f == 3: ev['version'] = v.decode()
        if f == 5:
            for f2, val in fields(v):
                d = dict(fields(val))
                ev['tag'] = d[1].decode(); ev['value'] = struct.unpack('<f', d[2])[0]
    events.append(ev)
print(json.dumps(events))
`

func TestEventsDecodeIndependently(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir)
	require.NoError(t, err)
	require.NoError(t, w.Scalar("lm loss", 6.25, 1))
	require.NoError(t, w.Scalar("learning-rate", 1.5e-4, 2))
	require.NoError(t, w.Scalar("grad-norm", 0.5, 300))
	require.NoError(t, w.Close())
	if _, err := exec.LookPath("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3 to decode the file independently")
	}
	out, err := exec.Command("/usr/bin/python3", "-c", reader, w.Path()).CombinedOutput()
	require.NoError(t, err, string(out))
	var evs []map[string]any
	require.NoError(t, json.Unmarshal(out, &evs))
	require.Len(t, evs, 4)
	require.Equal(t, "brain.Event:2", evs[0]["version"])
	want := []struct {
		tag  string
		v    float64
		step float64
	}{{"lm loss", 6.25, 1}, {"learning-rate", float64(float32(1.5e-4)), 2}, {"grad-norm", 0.5, 300}}
	for i, w := range want {
		e := evs[i+1]
		require.Equal(t, w.tag, e["tag"])
		require.InDelta(t, w.v, e["value"], 1e-12)
		require.Equal(t, w.step, e["step"])
		require.Greater(t, e["wall"], 1.7e9)
	}
}
