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

	"github.com/staplerkit/ocsp/examples/internal/docblocks"
)

// docBlocks are the blocks of the docs marked <!-- run: name -->, in order.
type docBlocks struct {
	t      *testing.T
	blocks []docblocks.Block
	used   []bool
}

func readDocBlocks(t *testing.T, root, name string) *docBlocks {
	t.Helper()
	blocks, err := docblocks.Marked(root, "run", name)
	if err != nil {
		t.Fatal(err)
	}
	return &docBlocks{t: t, blocks: blocks, used: make([]bool, len(blocks))}
}

// with is the block that contains marker.
func (d *docBlocks) with(marker string) string {
	d.t.Helper()
	for i, b := range d.blocks {
		if strings.Contains(b.Text, marker) {
			d.used[i] = true
			return b.Text
		}
	}
	d.t.Fatalf("no block of the docs marked for %s contains %q: the test and the docs disagree", d.t.Name(), marker)
	return ""
}

// allUsed fails the test when a block marked for it was not run.
func (d *docBlocks) allUsed() {
	d.t.Helper()
	for i, b := range d.blocks {
		if !d.used[i] {
			d.t.Errorf("%s is marked for %s, which does not run it:\n%s", b, d.t.Name(), b.Text)
		}
	}
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
		t.Fatalf("the documented commands failed: %v\n%s\n--- script ---\n%s", err, out.String(), script)
	}
	return out.String()
}

// walkthroughPorts are the ports the walkthroughs of docs/operations.md listen on.
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
				t.Fatalf("port %s, which the walkthrough uses, stays taken: %v", port, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// The walkthroughs of docs/operations.md, extracted from it by their
// markers and run as they are written (with go run, on the ports they
// name, from the repository's root): a newcomer who pastes them gets a
// stapled handshake that examples/check finds OK, sees a revocation reach
// it, and uses the admin API. The test fails when the docs change and
// break, and when a block marked for it is not run.
func TestTheWalkthroughsRunAsWritten(t *testing.T) {
	needOpenSSL(t)
	needTool(t, "curl", "curl")
	waitPortsFree(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readDocBlocks(t, root, t.Name())
	os.RemoveAll("/tmp/demo")
	t.Cleanup(func() { os.RemoveAll("/tmp/demo") })

	first := blocks.with("-cert /tmp/demo/rsa-chain.pem")
	check := blocks.with("go run ./examples/check ")
	out := runScript(t, root, first+check)
	for _, want := range []string{
		"OCSP Response Status: successful", // openssl s_client -status
		"OCSP OK",                          // examples/check
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("the first walkthrough's output lacks %q:\n%s", want, out)
		}
	}
	waitPortsFree(t) // the first walkthrough's servers, killed, are gone

	admin := blocks.with("-admin-addr :9000 &")
	revoke := blocks.with("8888/revoke")
	cluster := blocks.with(`"query_frequency": 3800`)
	perCert := blocks.with(`"ocsp_stapling": {"cache_ttl": 600}`)
	blocks.allUsed()
	out = runScript(t, root, admin+revoke+cluster+perCert)
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
