// Package docblocks reads the fenced code blocks of the repository's
// documentation (README.md and docs/*.md) with the marker line before each:
//
//	<!-- example: ExampleName -->   a ```go block: the body of that Example
//	<!-- run: TestName -->          a block that test runs (or checks) as written
//	<!-- output: TestName -->       an output or configuration sample that test asserts
//
// A test that runs or asserts blocks reads them with Marked, by its own
// name, so a block is what its test extracts; examples/docs_test.go holds
// every block to this convention.
package docblocks

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Block is one fenced code block of a documentation file.
type Block struct {
	File string // relative to the repository's root, with slashes
	Line int    // of the opening fence, from 1
	Lang string // after the opening fence: "go", "sh", ...
	Kind string // of the marker: "example", "run" or "output"; "" for none
	Name string // the Example or test the marker names
	Text string // the lines between the fences, each ending in a newline
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

var marker = regexp.MustCompile(`^\s*<!-- (example|run|output): ([A-Za-z0-9_./]+) -->$`)

// Files are the documentation files, relative to the repository's root.
func Files(root string) ([]string, error) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	files := []string{"README.md"}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		files = append(files, filepath.ToSlash(rel))
	}
	return files, nil
}

// All returns every fenced block of every documentation file, in order.
func All(root string) ([]Block, error) {
	files, err := Files(root)
	if err != nil {
		return nil, err
	}
	var blocks []Block
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		bs, err := Parse(f, string(data))
		if err != nil {
			return nil, err
		}
		blocks = append(blocks, bs...)
	}
	return blocks, nil
}

// Parse returns the fenced blocks of one file's text. A fence may be
// indented (a block in a list item): its indentation is taken off the
// block's lines. A marker that is not the line just before a fence, or a
// line that starts like a marker and is not one, is an error, so that a
// block is never left unmarked by a typo.
func Parse(file, text string) ([]Block, error) {
	lines := strings.Split(text, "\n")
	var blocks []Block
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimLeft(line, " \t")
		if strings.HasPrefix(trimmed, "<!-- example:") || strings.HasPrefix(trimmed, "<!-- run:") || strings.HasPrefix(trimmed, "<!-- output:") {
			if !marker.MatchString(line) {
				return nil, fmt.Errorf("%s:%d: %q is not a marker: want <!-- example|run|output: Name --> alone on its line", file, i+1, line)
			}
			if i+1 == len(lines) || !strings.HasPrefix(strings.TrimLeft(lines[i+1], " \t"), "```") {
				return nil, fmt.Errorf("%s:%d: a marker that is not just before a fenced block", file, i+1)
			}
			continue
		}
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		indent := line[:len(line)-len(trimmed)]
		b := Block{File: file, Line: i + 1, Lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))}
		if i > 0 {
			if m := marker.FindStringSubmatch(strings.TrimLeft(lines[i-1], " \t")); m != nil {
				b.Kind, b.Name = m[1], m[2]
			}
		}
		var body strings.Builder
		for i++; ; i++ {
			if i == len(lines) {
				return nil, fmt.Errorf("%s: an unterminated block", b)
			}
			if strings.HasPrefix(strings.TrimLeft(lines[i], " \t"), "```") {
				break
			}
			body.WriteString(strings.TrimPrefix(lines[i], indent) + "\n")
		}
		b.Text = body.String()
		blocks = append(blocks, b)
	}
	return blocks, nil
}

// Marked returns the blocks whose marker is kind and names name, in the
// order of Files.
func Marked(root, kind, name string) ([]Block, error) {
	all, err := All(root)
	if err != nil {
		return nil, err
	}
	var blocks []Block
	for _, b := range all {
		if b.Kind == kind && b.Name == name {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no block of the docs is marked <!-- %s: %s -->", kind, name)
	}
	return blocks, nil
}
