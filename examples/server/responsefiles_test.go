package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// signOffline makes openssl sign the response about name's certificate
// from the CA's database, with no responder running, into file.
func (c *opensslCA) signOffline(name, file string) {
	c.t.Helper()
	c.run("ocsp", "-index", "index.txt", "-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-issuer", "ca.pem",
		"-cert", name+".pem", "-respout", file, "-ndays", "1")
}

// A server that cannot reach its responder staples the responses kept
// beside its certificates (<certfile>.ocsp): read at start, and again on
// SIGHUP.
func TestServerStaplesResponseFilesAtStartAndOnSIGHUP(t *testing.T) {
	openssl := needOpenSSL(t)
	port := freePort(t) // nothing listens there: the responder is out of reach
	ca := newOpenSSLCA(t, openssl, port)
	ca.signOffline("good", "good-chain.pem.ocsp")
	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", ":0", "-admin-key", "k", "-response-timeout", "1"}
	for _, name := range []string{"good", "revoked"} {
		args = append(args, "-cert", filepath.Join(ca.dir, name+"-chain.pem"), "-key", filepath.Join(ca.dir, name+".key"))
	}
	addr, _, stop := startServer(t, args)
	if out := ca.sClient(addr, "good.test", "-tls1_3"); !strings.Contains(out, "Cert Status: good") {
		t.Fatalf("the response file was not stapled:\n%s", out)
	}
	if out := ca.sClient(addr, "revoked.test", "-tls1_3"); !strings.Contains(out, "OCSP response: no response sent") {
		t.Fatalf("stapled with no response file and no responder:\n%s", out)
	}

	ca.signOffline("revoked", "revoked-chain.pem.ocsp")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute) // only a hang
	for out := ""; !strings.Contains(out, "Cert Status: revoked"); out = ca.sClient(addr, "revoked.test", "-tls1_2") {
		if time.Now().After(deadline) {
			t.Fatalf("the response file read on SIGHUP was not stapled:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
}

// -responder-override rewrites a certificate's responder by its AIA URL.
func TestServerResponderOverride(t *testing.T) {
	openssl := needOpenSSL(t)
	unreachable := freePort(t)
	ca := newOpenSSLCA(t, openssl, unreachable)
	port := freePort(t)
	ca.startResponderWith(port, "-nmin", "60")
	aia := "http://127.0.0.1:" + itoa(unreachable)
	args := []string{"-addr", "127.0.0.1:0", "-admin-addr", ":0", "-admin-key", "k", "-response-timeout", "5",
		"-responder-override", aia + "=http://127.0.0.1:" + itoa(port),
		"-cert", filepath.Join(ca.dir, "good-chain.pem"), "-key", filepath.Join(ca.dir, "good.key")}
	_, admin, stop := startServer(t, args)
	st := waitQueried(t, admin, 1)[0]
	if st["cert_status"] != "GOOD" || st["aia_responder_url"] != aia || st["responder_url"] != "http://127.0.0.1:"+itoa(port) {
		t.Fatalf("status %v", st)
	}
	stop()
	if err := run(context.Background(), []string{"-cert", "a", "-key", "b", "-responder-override", "no-equals-sign"}, io.Discard, io.Discard); err == nil {
		t.Fatal("a -responder-override without = was accepted")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
