package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlocks returns the README's ```sh blocks, in order.
func readmeBlocks(t *testing.T) (root string, blocks []string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rest := string(data)
	for {
		start := strings.Index(rest, "\n```sh\n")
		if start < 0 {
			return root, blocks
		}
		rest = rest[start+len("\n```sh\n"):]
		end := strings.Index(rest, "\n```")
		if end < 0 {
			t.Fatal("an unterminated ```sh block in README.md")
		}
		blocks = append(blocks, rest[:end+1])
		rest = rest[end:]
	}
}

// blockWith is the README block that contains marker.
func blockWith(t *testing.T, blocks []string, marker string) string {
	t.Helper()
	for _, b := range blocks {
		if strings.Contains(b, marker) {
			return b
		}
	}
	t.Fatalf("no ```sh block of README.md contains %q: the test and the README disagree", marker)
	return ""
}

// runScript runs script with bash from root, in a process group of its own
// that is killed when it ends (the servers it started in the background
// with it), and returns what it printed.
func runScript(t *testing.T, root, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // only a hang: go run builds first
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -e\n"+script)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The servers the script left running in the background hold its
	// output open: once bash has exited, Wait stops waiting for them.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	t.Cleanup(func() { waitPortsFree(t) })
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil {
		t.Fatalf("the README's commands failed: %v\n%s\n--- script ---\n%s", err, out.String(), script)
	}
	return out.String()
}

// walkthroughPorts are the ports the README's walkthroughs listen on.
var walkthroughPorts = []string{"8443", "8888", "9000"}

// waitPortsFree waits until the walkthrough's ports can be listened on
// (servers killed a moment ago release them once they are gone).
func waitPortsFree(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // only a hang
	for _, port := range walkthroughPorts {
		for {
			l, err := net.Listen("tcp", "127.0.0.1:"+port)
			if err == nil {
				l.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("port %s, which the README's walkthrough uses, stays taken: %v", port, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// The README's walkthroughs, extracted from README.md and run as they are
// written (with go run, on the ports they name): a newcomer who pastes
// them gets a stapled handshake, sees a revocation reach it, and uses the
// admin API. The test fails when the README changes and breaks.
func TestTheREADMEWalkthroughRunsAsWritten(t *testing.T) {
	needOpenSSL(t)
	needTool(t, "curl", "curl")
	waitPortsFree(t)
	root, blocks := readmeBlocks(t)
	os.RemoveAll("/tmp/demo")
	t.Cleanup(func() { os.RemoveAll("/tmp/demo") })

	first := blockWith(t, blocks, "-cert /tmp/demo/rsa-chain.pem")
	if out := runScript(t, root, first); !strings.Contains(out, "OCSP Response Status: successful") {
		t.Fatalf("the first walkthrough staples nothing:\n%s", out)
	}
	waitPortsFree(t) // the first walkthrough's servers, killed, are gone

	admin := blockWith(t, blocks, "-admin-addr :9000 &")
	revoke := blockWith(t, blocks, "8888/revoke")
	cluster := blockWith(t, blocks, `"query_frequency": 3800`)
	perCert := blockWith(t, blocks, `"ocsp_stapling": {"cache_ttl": 600}`)
	out := runScript(t, root, admin+revoke+cluster+perCert)
	for _, want := range []string{
		`"cert_status": "REVOKED"`,         // POST /v1/ocsp/test after the revocation
		"Cert Status: revoked",             // and the next handshake
		`"query_frequency": 3800`,          // the PUT of the cluster object
		`"cache_ttl": 600`,                 // the PATCH of the certificate's object
		"OCSP Response Status: successful", // still stapled at the end
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("the admin walkthrough's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"error_code"`) {
		t.Fatalf("a command of the admin walkthrough was refused:\n%s", out)
	}
}
