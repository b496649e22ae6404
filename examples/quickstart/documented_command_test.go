package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/examples/internal/docblocks"
)

// The README's first command, read from the README by its marker and run
// as written from the repository's root (go run builds the program, as it
// does for a newcomer), prints what the README says it shows: a staple the
// client verified, and the status object.
func TestTheQuickstartCommandRunsAsDocumented(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := docblocks.Marked(root, "run", t.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // only a hang: go run builds first
		cmd := exec.CommandContext(ctx, "bash", "-e", "-c", b.Text)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s\n--- the command ---\n%s", b, err, out, b.Text)
		}
		for _, want := range []string{"client got a", "status good", `"cert_status": "GOOD"`, `"stapled": true`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s: the output lacks %q:\n%s", b, want, out)
			}
		}
	}
}
