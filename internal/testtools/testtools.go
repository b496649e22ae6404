package testtools

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Tool is an outside program some tests of a package need.
type Tool struct {
	Name  string // the program, as on $PATH; also its Debian package
	Tests string // what is skipped without it, e.g. "the interoperability tests"
}

// Main runs m, first saying in one line per missing tool which tests of
// pkg are skipped for want of it: go test shows a passing package's output
// only with -v, so without -v the line goes to the terminal, when there is
// one. (In CI, where $CI is set, a missing tool fails its tests instead:
// .ci/run installs it.) Call it from the package's TestMain.
func Main(m *testing.M, pkg string, tools ...Tool) {
	flag.Parse()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool.Name); err != nil && os.Getenv("CI") == "" {
			note(fmt.Sprintf("%s: %s not installed: %s skipped (Debian: sudo apt-get install %s)", pkg, tool.Name, tool.Tests, tool.Name))
		}
	}
	os.Exit(m.Run())
}

// note prints msg where whoever runs go test sees it.
func note(msg string) {
	if !testing.Verbose() {
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			fmt.Fprintln(tty, msg)
			tty.Close()
			return
		}
	}
	fmt.Fprintln(os.Stderr, msg)
}
