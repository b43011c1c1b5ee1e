package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gomegatron/gomegatron/data/indexed"
)

// TestOutputMatchesReference checks the documents written for two keys, with and without
// --append-eod, for a uint16 and an int32 vocabulary, against the reference encoding, reading
// them back both with data/indexed and with a numpy reader written from the spec's layout.
func TestOutputMatchesReference(t *testing.T) {
	cases := []struct {
		name      string
		vocab     int
		appendEOD bool
		dtype     string
	}{
		{"uint16 eod", 1000, true, "uint16"},
		{"uint16 no eod", 65499, false, "uint16"},
		{"int32 eod", 65500, true, "int32"},
		{"int32 large vocab", 152000, true, "int32"},
	}
	text, title := corpusText(400, 1), corpusText(400, 2)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeJSONL(t, in, []string{"text", "title"}, text, title)
	var prefixes, dtypes []string
	var wants [][][][]int64
	for _, c := range cases {
		tok := fakeTok{c.vocab}
		out := filepath.Join(t.TempDir(), "out")
		sum := run(t, Config{Input: in, OutputPrefix: out, JSONKeys: []string{"text", "title"}, AppendEOD: c.appendEOD, Workers: 3}, tok)
		assert.EqualValues(t, 400, sum.Documents, c.name)
		assert.Zero(t, sum.Skipped, c.name)
		for k, key := range []string{"text", "title"} {
			prefix := out + "_" + key + "_document"
			want := normDocs(refDocs(tok, [][]any{text, title}[k], c.appendEOD))
			assert.Equal(t, want, normDocs(readDocs(t, prefix)), "%s: data/indexed read-back of %s", c.name, key)
			ds, err := indexed.Open(prefix)
			require.NoError(t, err)
			assert.Equal(t, c.dtype, ds.DType().String(), c.name)
			ds.Close()
			prefixes, dtypes, wants = append(prefixes, prefix), append(dtypes, c.dtype), append(wants, want)
		}
	}
	py, ok := pyDocs(t, prefixes...)
	if !ok {
		t.Skip("python3 with numpy missing: the numpy reader check is skipped")
	}
	for i := range prefixes {
		assert.Equal(t, dtypes[i], py[i].DType, prefixes[i])
		assert.Equal(t, wants[i], normDocs(py[i].Docs), "numpy read-back of %s", prefixes[i])
	}
}

// TestOrderIndependentOfWorkers checks that the bytes written do not depend on --workers,
// and with --keep-sequential-samples not on --partitions either.
func TestOrderIndependentOfWorkers(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	text := corpusText(3000, 3)
	writeJSONL(t, in, []string{"text"}, text)
	tok := fakeTok{32000}
	var first string
	for _, c := range []struct{ workers, parts int }{{1, 1}, {2, 1}, {3, 1}, {8, 1}, {2, 4}, {5, 3}} {
		out := filepath.Join(t.TempDir(), "o")
		run(t, Config{Input: in, OutputPrefix: out, AppendEOD: true, Workers: c.workers, Partitions: c.parts, KeepSequentialSamples: true}, tok)
		h := datasetHash(t, out+"_text_document")
		if first == "" {
			first = h
			assert.Equal(t, normDocs(refDocs(tok, text, true)), normDocs(readDocs(t, out+"_text_document")))
			continue
		}
		assert.Equal(t, first, h, "workers %d partitions %d", c.workers, c.parts)
	}
}

// TestPartitionsRoundRobin checks Megatron's --partitions order without
// --keep-sequential-samples: record i goes to partition i mod P and the partitions are
// merged in order; the partition datasets are removed afterwards.
func TestPartitionsRoundRobin(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	text := corpusText(101, 4)
	writeJSONL(t, in, []string{"text"}, text)
	tok := fakeTok{500}
	ref := refDocs(tok, text, true)
	for _, parts := range []int{2, 3, 7} {
		for _, workers := range []int{1, 4} {
			out := filepath.Join(t.TempDir(), "o")
			run(t, Config{Input: in, OutputPrefix: out, AppendEOD: true, Workers: workers, Partitions: parts}, tok)
			var want [][][]int64
			for p := 0; p < parts; p++ {
				for i := p; i < len(ref); i += parts {
					want = append(want, ref[i])
				}
			}
			assert.Equal(t, normDocs(want), normDocs(readDocs(t, out+"_text_document")), "partitions %d workers %d", parts, workers)
			left, _ := filepath.Glob(out + "_*_text_document.*")
			assert.Empty(t, left, "partition datasets left behind")
		}
	}
}

// TestInputFormats checks that the same records read from .jsonl, a .json array, .jsonl.zst,
// .jsonl.gz, a folder of parts and a glob give byte-identical datasets.
func TestInputFormats(t *testing.T) {
	dir := t.TempDir()
	text := corpusText(300, 5)
	writeJSONL(t, filepath.Join(dir, "all.jsonl"), []string{"text"}, text)
	all, err := os.ReadFile(filepath.Join(dir, "all.jsonl"))
	require.NoError(t, err)
	lines := bytes.SplitAfter(all, []byte("\n"))
	lines = lines[:len(lines)-1]

	// .json array of the same objects (pretty-printed, as convert_json_to_list.py writes)
	var objs []json.RawMessage
	for _, l := range lines {
		objs = append(objs, json.RawMessage(bytes.TrimSpace(l)))
	}
	arr, err := json.MarshalIndent(objs, "", "    ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "all.json"), arr, 0o644))

	var zb bytes.Buffer
	zw, _ := zstd.NewWriter(&zb)
	zw.Write(all)
	zw.Close()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "all.jsonl.zst"), zb.Bytes(), 0o644))
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	gw.Write(all)
	gw.Close()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "all.jsonl.gz"), gb.Bytes(), 0o644))

	// a folder of three parts in name order, mixing formats, with a file it must ignore
	parts := filepath.Join(dir, "parts")
	require.NoError(t, os.Mkdir(parts, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(parts, "00.jsonl"), bytes.Join(lines[:100], nil), 0o644))
	var z2 bytes.Buffer
	zw2, _ := zstd.NewWriter(&z2)
	zw2.Write(bytes.Join(lines[100:200], nil))
	zw2.Close()
	require.NoError(t, os.WriteFile(filepath.Join(parts, "01.jsonl.zst"), z2.Bytes(), 0o644))
	arr2, _ := json.Marshal(objs[200:])
	arr2 = append([]byte("\xef\xbb\xbf \n\t"), arr2...) // a BOM and whitespace before the '['
	require.NoError(t, os.WriteFile(filepath.Join(parts, "02.json"), arr2, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(parts, "README.md"), []byte("not data"), 0o644))

	tok := fakeTok{32000}
	var want string
	for _, input := range []string{"all.jsonl", "all.json", "all.jsonl.zst", "all.jsonl.gz", "parts", "parts/0*"} {
		out := filepath.Join(t.TempDir(), "o")
		sum := run(t, Config{Input: filepath.Join(dir, input), OutputPrefix: out, AppendEOD: true}, tok)
		assert.EqualValues(t, 300, sum.Documents, input)
		assert.Zero(t, sum.Skipped, input)
		h := datasetHash(t, out+"_text_document")
		if want == "" {
			want = h
			assert.Equal(t, normDocs(refDocs(tok, text, true)), normDocs(readDocs(t, out+"_text_document")))
		}
		assert.Equal(t, want, h, input)
	}
}

// TestMalformedRecords checks that bad records are skipped and reported with file and
// line (or element), that everything around them is kept, and that a truncated compressed
// file keeps the records before the damage.
func TestMalformedRecords(t *testing.T) {
	dir := t.TempDir()
	good := func(s string) string { b, _ := json.Marshal(map[string]string{"text": s}); return string(b) }
	a := filepath.Join(dir, "a.jsonl")
	require.NoError(t, os.WriteFile(a, []byte(good("one")+"\n"+
		`{"text": "unterminated`+"\n"+
		good("two")+"\n"+
		`{"title": "no text key"}`+"\n"+
		"\n"+
		`{"text": 42}`+"\n"+
		`{"text": ["ok", 3]}`+"\n"+
		`[1, 2]`+"\n"+
		good("three")+"\n"+
		good("")), 0o644)) // last line without newline, empty text

	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	for i := 0; i < 2000; i++ {
		fmt.Fprintln(gw, good(fmt.Sprintf("gz record %d with some text to make it longer", i)))
	}
	gw.Close()
	trunc := gb.Bytes()[:gb.Len()/2]
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.jsonl.gz"), trunc, 0o644))
	arr := `[{"text": "arr0"}, {"text": null}, {"text": "arr2"}, {"text": "arr3" "oops"}, {"text": "lost"}]`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.json"), []byte(arr), 0o644))
	// a truncated array: the elements before the damage are kept
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c2.json"), []byte(`[{"text": "e0"}, {"text": "e]1"`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "d.jsonl"), []byte(good("after the damage")+"\n"), 0o644))

	tok := fakeTok{1000}
	out := filepath.Join(t.TempDir(), "o")
	sum := run(t, Config{Input: dir, OutputPrefix: out, AppendEOD: true, Workers: 3}, tok)

	docs := readDocs(t, out+"_text_document")
	var gzKept int
	for _, d := range docs {
		if len(d) == 1 && len(d[0]) > 3 && d[0][0] == int64(tok.Encode("g")[0]) {
			gzKept++
		}
	}
	assert.Greater(t, gzKept, 100, "records before the gzip damage are kept")
	assert.Less(t, gzKept, 2000)
	var want []any
	want = append(want, "one", "two", "three", "")
	for i := 0; i < gzKept; i++ {
		want = append(want, fmt.Sprintf("gz record %d with some text to make it longer", i))
	}
	want = append(want, "arr0", "arr2", "lost", "e0", "after the damage")
	assert.Equal(t, normDocs(refDocs(tok, want, true)), normDocs(docs))
	assert.EqualValues(t, len(want), sum.Documents)
	assert.EqualValues(t, 1, sum.Empty)
	assert.EqualValues(t, 1, sum.Blank)

	var got []string
	for _, is := range sum.Issues {
		got = append(got, filepath.Base(is.File)+": "+is.Pos)
	}
	assert.Equal(t, []string{"a.jsonl: line 2", "a.jsonl: line 4", "a.jsonl: line 6", "a.jsonl: line 7", "a.jsonl: line 8",
		"b.jsonl.gz: line " + fmt.Sprint(gzKept+1), "c.json: element 1", "c.json: element 3", "c2.json: element 1"}, got)
	assert.EqualValues(t, len(got), sum.Skipped)
	assert.Contains(t, sum.Issues[1].Reason, `no key "text"`)
	assert.Contains(t, sum.Issues[2].Reason, "is a number")
	assert.Contains(t, sum.Issues[4].Reason, "want a JSON object")
	assert.Contains(t, sum.Issues[5].Reason, "file unreadable from here on")
	assert.Contains(t, sum.Issues[7].Reason, "invalid JSON")
	assert.Contains(t, sum.Issues[8].Reason, "ends before its closing ']'")
}

// panicTok panics on texts containing "boom", standing in for a tokenizer bug.
type panicTok struct{ fakeTok }

func (p panicTok) Encode(text string) []int {
	if strings.Contains(text, "boom") {
		panic("tokenizer bug")
	}
	return p.fakeTok.Encode(text)
}

// TestTokenizerPanicIsReported checks that a panicking tokenizer skips and names the record
// instead of killing the run.
func TestTokenizerPanicIsReported(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeJSONL(t, in, []string{"text"}, []any{"fine", "boom here", "also fine"})
	out := filepath.Join(dir, "o")
	sum, err := Run(context.Background(), Config{Input: in, OutputPrefix: out, JSONKeys: []string{"text"}, Workers: 2, Partitions: 1, LogInterval: 10, Progress: "none"},
		panicTok{fakeTok{1000}}, os.Stderr)
	require.NoError(t, err)
	require.Len(t, sum.Issues, 1)
	assert.Equal(t, "line 2", sum.Issues[0].Pos)
	assert.Contains(t, sum.Issues[0].Reason, "tokenizer bug")
	assert.Equal(t, normDocs(refDocs(fakeTok{1000}, []any{"fine", "also fine"}, false)), normDocs(readDocs(t, out+"_text_document")))
}

// TestPaiMode checks Pai's preprocess_data.py semantics beside Megatron's on the same
// records: Pai drops empty texts and joins a list into one text with "\n\n" (lm_dataformat),
// Megatron keeps an empty document and makes one sequence per non-empty list element.
func TestPaiMode(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	values := []any{"a b", "", []string{"p1", "p2"}, []string{"", ""}, []string{}, "z"}
	writeJSONL(t, in, []string{"text"}, values)
	tok := fakeTok{500}
	pai := filepath.Join(dir, "pai")
	sum := run(t, Config{Input: in, OutputPrefix: pai, AppendEOD: true, Pai: true}, tok)
	assert.EqualValues(t, 2, sum.Dropped)
	assert.Equal(t, normDocs(refDocs(tok, []any{"a b", "p1\n\np2", "\n\n", "z"}, true)), normDocs(readDocs(t, pai+"_text_document")))
	meg := filepath.Join(dir, "megatron")
	sum = run(t, Config{Input: in, OutputPrefix: meg, AppendEOD: true}, tok)
	assert.Zero(t, sum.Dropped)
	assert.EqualValues(t, 3, sum.Empty)
	assert.Equal(t, normDocs(refDocs(tok, values, true)), normDocs(readDocs(t, meg+"_text_document")))
}
