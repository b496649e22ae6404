package docblocks

import (
	"strings"
	"testing"
)

func TestParseReadsMarkedBlocks(t *testing.T) {
	text := strings.Join([]string{
		"# A doc",
		"",
		"<!-- example: stapler.ExampleNew -->",
		"```go",
		"s, err := stapler.New(cfg)",
		"```",
		"",
		"1. A step:",
		"   <!-- run: TestSteps -->",
		"   ```sh",
		"   go run ./x",
		"     indented",
		"   ```",
		"```",
		"unmarked",
		"```",
		"",
	}, "\n")
	blocks, err := Parse("doc.md", text)
	if err != nil {
		t.Fatal(err)
	}
	want := []Block{
		{File: "doc.md", Line: 4, Lang: "go", Kind: "example", Name: "stapler.ExampleNew", Text: "s, err := stapler.New(cfg)\n"},
		{File: "doc.md", Line: 10, Lang: "sh", Kind: "run", Name: "TestSteps", Text: "go run ./x\n  indented\n"},
		{File: "doc.md", Line: 14, Lang: "", Text: "unmarked\n"},
	}
	if len(blocks) != len(want) {
		t.Fatalf("got %d blocks, want %d: %+v", len(blocks), len(want), blocks)
	}
	for i := range want {
		if blocks[i] != want[i] {
			t.Errorf("block %d: got %+v, want %+v", i, blocks[i], want[i])
		}
	}
}

func TestParseRefusesWhatWouldLeaveABlockUnchecked(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"a marker before prose", "<!-- run: TestX -->\ntext\n```sh\nls\n```\n", "not just before a fenced block"},
		{"a marker at the end", "text\n<!-- run: TestX -->", "not just before a fenced block"},
		{"a misspelt marker", "<!-- run:TestX -->\n```sh\nls\n```\n", "is not a marker"},
		{"text after a marker", "<!-- example: ExampleX --> trailing\n```go\nx\n```\n", "is not a marker"},
		{"an unterminated block", "<!-- run: TestX -->\n```sh\nls\n", "unterminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("doc.md", tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
