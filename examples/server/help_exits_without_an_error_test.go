package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// server -help prints the usage and exits 0, as ocspfiles -help does: a
// help request is not a failure (scripts and packaging checks run -help).
// run returns flag.ErrHelp, which main prints as "server: flag: help
// requested" and exits 1.
func TestServerHelpExitsWithoutAnError(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	bin := filepath.Join(t.TempDir(), "server")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-help").CombinedOutput()
	if !strings.Contains(string(out), "-responder-override") {
		t.Fatalf("no usage printed:\n%s", out)
	}
	if err != nil || strings.Contains(string(out), "help requested") {
		t.Fatalf("server -help: %v; output ends:\n%s", err, tail(string(out)))
	}
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], "\n")
}
