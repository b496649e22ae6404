package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// docs/architecture.md: "Under internal/, each package has one job and
// imports nothing of stapler (stapler/clock's interface apart, for
// internal/schedule)", and each has a doc.go saying what it is for and
// what it must never know about.
func TestNoInternalPackageImportsStapler(t *testing.T) {
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", "./internal/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/staplerkit/ocsp/"
	packages := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := fields[0]
		packages++
		for _, dep := range fields[1:] {
			if dep == module+"stapler" || strings.HasPrefix(dep, module+"stapler/") && dep != module+"stapler/clock" {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
		dir := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(pkg, module)))
		if _, err := os.Stat(filepath.Join(dir, "doc.go")); err != nil {
			t.Errorf("%s has no doc.go", pkg)
		}
	}
	if packages < 10 {
		t.Fatalf("go list found %d internal packages:\n%s", packages, out)
	}
}
