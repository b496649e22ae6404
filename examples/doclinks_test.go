package examples

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/staplerkit/ocsp/examples/internal/docblocks"
)

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	notInSlug = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
)

// anchors are the fragment names of a markdown file's headings, as GitHub
// makes them.
func anchors(text string) map[string]bool {
	names := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(withoutBlocks(text), -1) {
		slug := strings.ReplaceAll(notInSlug.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
		names[slug] = true
	}
	return names
}

// withoutBlocks is text with its fenced blocks left out.
func withoutBlocks(text string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, " \t"), "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line)
		}
	}
	return b.String()
}

// Every relative link of README.md and docs/*.md reaches a file of the
// repository, and a heading of it when it names one.
func TestDocLinksResolve(t *testing.T) {
	root := repoRoot(t)
	files, err := docblocks.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(withoutBlocks(string(data)), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, fragment, _ := strings.Cut(link, "#")
			path := filepath.Join(root, filepath.FromSlash(f))
			if target != "" {
				path = filepath.Join(filepath.Dir(path), filepath.FromSlash(target))
			}
			text, err := os.ReadFile(path)
			if err != nil {
				if _, statErr := os.Stat(path); statErr == nil {
					continue // a directory
				}
				t.Errorf("%s: the link %s reaches no file", f, link)
				continue
			}
			if fragment != "" && strings.HasSuffix(path, ".md") && !anchors(string(text))[fragment] {
				t.Errorf("%s: the link %s names no heading of %s", f, link, target)
			}
		}
	}
}
