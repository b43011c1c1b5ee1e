package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// inputFile is one file named by --input, in the order its records are read.
type inputFile struct {
	path string
	size int64 // bytes on disk, for the progress total
}

// knownExt reports whether a file in an --input folder is one preprocess reads: .jsonl,
// .json, optionally compressed with .gz, .zst or .zstd (Pai's lm_dataformat .jsonl.zst).
func knownExt(name string) bool {
	n := strings.ToLower(name)
	for _, c := range []string{".gz", ".zst", ".zstd"} {
		n = strings.TrimSuffix(n, c)
	}
	return strings.HasSuffix(n, ".jsonl") || strings.HasSuffix(n, ".json")
}

// expandInput turns --input into files: a file is read as given (whatever its name); a
// folder gives its files with a known extension (not recursive, hidden files skipped),
// sorted by name; anything else is a glob, whose matches are sorted. Megatron reads a single
// file, or with --partitions a glob in os.listdir order; sorting makes the order
// reproducible.
func expandInput(input string) ([]inputFile, error) {
	if input == "" {
		return nil, errors.New("--input is empty")
	}
	var paths []string
	if st, err := os.Stat(input); err == nil {
		if !st.IsDir() {
			return []inputFile{{path: input, size: st.Size()}}, nil
		}
		ents, err := os.ReadDir(input)
		if err != nil {
			return nil, fmt.Errorf("--input %s: %w", input, err)
		}
		for _, e := range ents {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") && knownExt(e.Name()) {
				paths = append(paths, filepath.Join(input, e.Name()))
			}
		}
		if len(paths) == 0 {
			return nil, fmt.Errorf("--input %s: the folder has no .jsonl, .json, .jsonl.zst or .gz files", input)
		}
	} else {
		m, gerr := filepath.Glob(input)
		if gerr != nil {
			return nil, fmt.Errorf("--input %q: bad glob pattern: %w", input, gerr)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("--input %s: no such file or folder, and no file matches it as a glob", input)
		}
		paths = m
	}
	sort.Strings(paths)
	files := make([]inputFile, 0, len(paths))
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("--input: %w", err)
		}
		if st.IsDir() {
			continue
		}
		files = append(files, inputFile{path: p, size: st.Size()})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("--input %s matches only folders", input)
	}
	return files, nil
}

// countingReader counts the bytes read from the file on disk (before decompression), which
// is what the progress bar measures against the total size.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// openDecompressed wraps r in the decompressor its name asks for.
func openDecompressed(name string, r io.Reader) (io.ReadCloser, error) {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".gz"):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip header: %w", err)
		}
		return zr, nil
	case strings.HasSuffix(n, ".zst"), strings.HasSuffix(n, ".zstd"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// recordSink receives the records of a file in order. pos is the 1-based line number for
// JSON lines, the 0-based element index for a JSON array (array is true). data is only
// valid during the call.
type recordSink interface {
	record(pos int64, array bool, data []byte) error
	blank()
}

// posError is a problem with the file's bytes at a record position; reading the file stops
// there but everything before it has been delivered.
type posError struct {
	pos   int64
	array bool
	err   error
}

func (e *posError) Error() string { return e.err.Error() }

// readFile streams the records of one input file to sink. A file whose first non-blank byte
// is '[' is one JSON array of records (.json, WuDao); anything else is JSON lines (one record
// per line, as Megatron reads it). A UTF-8 byte-order mark is skipped.
func readFile(f inputFile, consumed *int64, sink recordSink) error {
	fh, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer fh.Close()
	zr, err := openDecompressed(f.path, countingReader{fh, consumed})
	if err != nil {
		return err
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, 1<<20)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	first, err := firstNonSpace(br)
	if err != nil {
		if err == io.EOF {
			return nil // empty file: no records
		}
		return err
	}
	if first == '[' {
		return readArray(br, sink)
	}
	return readLines(br, sink)
}

// firstNonSpace peeks at the first byte that is not JSON whitespace without consuming it.
func firstNonSpace(br *bufio.Reader) (byte, error) {
	for i := 1; ; i++ {
		b, err := br.Peek(i)
		if len(b) < i {
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		if c := b[i-1]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c, nil
		}
		if i >= br.Size() {
			return 0, errors.New("more than 1 MiB of leading whitespace")
		}
	}
}

// readLines delivers each line (without its line ending) of a JSON-lines stream. Lines of
// any length are accepted. Blank lines are counted, not delivered.
func readLines(br *bufio.Reader, sink recordSink) error {
	var long []byte
	var line int64
	for {
		chunk, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, chunk...)
			continue
		}
		if err != nil && err != io.EOF {
			return &posError{pos: line + 1, err: err}
		}
		if len(chunk) == 0 && len(long) == 0 && err == io.EOF {
			return nil
		}
		data := chunk
		if len(long) > 0 {
			long = append(long, chunk...)
			data = long
		}
		line++
		data = bytes.TrimRight(data, "\r\n")
		if len(bytes.TrimSpace(data)) == 0 {
			sink.blank()
		} else if serr := sink.record(line, false, data); serr != nil {
			return serr
		}
		if long = long[:0]; cap(long) > 16<<20 {
			long = nil // do not keep one huge line's buffer for the rest of the file
		}
		if err == io.EOF {
			return nil
		}
	}
}

// readArray delivers each element of a JSON array. It only finds where each element begins
// and ends (nesting depth outside strings), which is much faster than decoding; each element
// is parsed later by a worker, so a malformed element that is still bracket-balanced is
// reported as one bad record and the elements after it are kept. Damage to the structure (an
// unterminated string or object, a missing comma) stops the file at the element where it
// occurs; the elements before it have been delivered.
func readArray(br *bufio.Reader, sink recordSink) error {
	c, err := br.ReadByte()
	for err == nil && isSpace(c) {
		c, err = br.ReadByte()
	}
	if err != nil || c != '[' { // firstNonSpace saw the '['
		return &posError{pos: 0, array: true, err: errors.New("the JSON array does not start with '['")}
	}
	var (
		sp      arraySplitter
		idx     int64
		buf     = make([]byte, 1<<20)
		emitErr error
	)
	emit := func(elem []byte) bool {
		if emitErr = sink.record(idx, true, elem); emitErr != nil {
			return false
		}
		idx++
		return true
	}
	for {
		n, rerr := br.Read(buf)
		if n > 0 {
			if err := sp.feed(buf[:n], emit); err != nil {
				if emitErr != nil {
					return emitErr
				}
				return &posError{pos: idx, array: true, err: err}
			}
		}
		if rerr == io.EOF {
			if !sp.done {
				return &posError{pos: idx, array: true, err: errors.New("the JSON array ends before its closing ']'")}
			}
			return nil
		}
		if rerr != nil {
			return &posError{pos: idx, array: true, err: rerr}
		}
	}
}

// arraySplitter is the state of readArray's scan, carried across buffer refills.
type arraySplitter struct {
	carry     []byte // the current element's bytes from earlier buffers, when carried
	carried   bool
	in        bool // inside an element
	scalar    bool // the element is a number or literal (ends at ',' ']' or space)
	depth     int  // open '{' and '[' inside the element
	inStr     bool
	esc       bool
	wantComma bool // an element just ended: ',' or ']' must follow
	sawComma  bool // a ',' was consumed and no element has started since
	done      bool // the closing ']' was seen
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// feed scans p, calling emit with each complete element (valid only during the call);
// emit returning false stops the scan with an error.
func (s *arraySplitter) feed(p []byte, emit func([]byte) bool) error {
	start := 0                 // where the current element starts in p (0 when it was carried in)
	end := func(i int) error { // the element ends just before p[i]
		e := p[start:i]
		if s.carried {
			e = append(s.carry, e...)
			s.carry, s.carried = e[:0], false
			if cap(s.carry) > 16<<20 {
				s.carry = nil // do not keep one huge element's buffer
			}
		}
		s.in, s.scalar, s.wantComma, s.sawComma = false, false, true, false
		if !emit(e) {
			return errors.New("stopped")
		}
		return nil
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if s.in {
			switch {
			case s.inStr:
				if s.esc {
					s.esc = false
				} else if c != '"' && c != '\\' {
					// skip the plain run of the string in one step
					j := bytes.IndexAny(p[i:], "\"\\")
					if j < 0 {
						i = len(p) - 1
					} else {
						i += j - 1
					}
				} else if c == '\\' {
					s.esc = true
				} else if c == '"' {
					s.inStr = false
					if s.depth == 0 {
						if err := end(i + 1); err != nil {
							return err
						}
					}
				}
			case s.scalar:
				if c == ',' || c == ']' || isSpace(c) {
					if err := end(i); err != nil {
						return err
					}
					i-- // look at c again between elements
				}
			case c == '"':
				s.inStr = true
			case c == '{' || c == '[':
				s.depth++
			case c == '}' || c == ']':
				s.depth--
				if s.depth == 0 {
					if err := end(i + 1); err != nil {
						return err
					}
				}
			}
			continue
		}
		switch {
		case isSpace(c):
		case s.done:
			return errors.New("unexpected data after the JSON array")
		case s.wantComma:
			switch c {
			case ',':
				s.wantComma, s.sawComma = false, true
			case ']':
				s.done = true
			default:
				return fmt.Errorf("want ',' or ']' after an element, found %q", c)
			}
		case c == ']':
			if s.sawComma {
				return errors.New("trailing ',' before ']'")
			}
			s.done = true
		case c == ',':
			return errors.New("unexpected ','")
		default:
			s.in, start = true, i
			switch c {
			case '"':
				s.inStr = true
			case '{', '[':
				s.depth = 1
			default:
				s.scalar = true
			}
		}
	}
	if s.in { // carry the partial element into the next buffer
		if !s.carried {
			s.carry, s.carried = s.carry[:0], true
		}
		s.carry = append(s.carry, p[start:]...)
	}
	return nil
}
