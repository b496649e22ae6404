package redisstore

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestMain says, in one line, which tests are skipped for want of a tool:
// go test shows a passing package's output only with -v, so without -v the
// line goes to the terminal, when there is one. (In CI, where $CI is set,
// a missing tool fails its tests instead: .ci/run installs it.)
func TestMain(m *testing.M) {
	flag.Parse()
	for _, tool := range []struct{ name, tests string }{
		{"redis-server", "the store and fleet tests"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil && os.Getenv("CI") == "" {
			note(fmt.Sprintf("cache/redisstore: %s not installed: %s skipped (Debian: sudo apt-get install %s)", tool.name, tool.tests, tool.name))
		}
	}
	m.Run()
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
