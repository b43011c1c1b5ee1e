// Command corpus writes a jsonl corpus ({"text": …} per line) from the Go files under a
// directory — by default the Go standard library sources, which every Go install has — so
// the demo needs no download.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

func main() {
	root := flag.String("root", filepath.Join(runtime.GOROOT(), "src"), "directory to read .go files from")
	out := flag.String("out", "corpus.jsonl", "output jsonl file")
	maxMB := flag.Int("max-mb", 8, "stop after this many megabytes of source")
	flag.Parse()
	var files []string
	err := filepath.WalkDir(*root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "corpus:", err)
		os.Exit(1)
	}
	sort.Strings(files)
	f, err := os.Create(*out + ".tmp")
	if err != nil {
		fmt.Fprintln(os.Stderr, "corpus:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	total, docs := 0, 0
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if err := enc.Encode(map[string]string{"text": string(b)}); err != nil {
			fmt.Fprintln(os.Stderr, "corpus:", err)
			os.Exit(1)
		}
		total += len(b)
		docs++
		if total >= *maxMB<<20 {
			break
		}
	}
	if err := w.Flush(); err != nil || f.Close() != nil || os.Rename(*out+".tmp", *out) != nil {
		fmt.Fprintln(os.Stderr, "corpus: writing", *out, "failed")
		os.Exit(1)
	}
	fmt.Printf("corpus: %d Go files, %.1f MB from %s → %s\n", docs, float64(total)/(1<<20), *root, *out)
}
