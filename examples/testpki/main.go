// Command testpki writes a test CA and two server certificates for one
// name, ECDSA and RSA (each a chain: leaf, then CA), with their keys into a
// folder, and runs an OCSP responder for them on loopback until
// interrupted, so that examples/server can be tried without a PKI of one's
// own:
//
//	go run ./examples/testpki -dir /tmp/demo &
//	until [ -s /tmp/demo/ca.pem ]; do sleep 0.2; done   # ca.pem is written last
//	go run ./examples/server -cert /tmp/demo/chain.pem -key /tmp/demo/key.pem \
//	    -cert /tmp/demo/rsa-chain.pem -key /tmp/demo/rsa-key.pem
//	openssl s_client -status -CAfile /tmp/demo/ca.pem -connect 127.0.0.1:8443 -servername example.com
//
// The responder answers good until told otherwise: POST /revoke on its
// address revokes both certificates (keyCompromise, now), POST /unrevoke
// makes them good again, so that a revocation can be watched reach a
// server's staple:
//
//	curl -s -X POST http://127.0.0.1:8888/revoke
//
// Every file is written whole (a temporary file, then a rename), and
// ca.pem last, once the responder listens: a script that waits for ca.pem
// finds every file and a responder that answers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testpki:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("testpki", flag.ContinueOnError)
	dir := fs.String("dir", "", "folder to write ca.pem, chain.pem, key.pem, rsa-chain.pem and rsa-key.pem into (required)")
	addr := fs.String("addr", "127.0.0.1:8888", "address of the OCSP responder (POST /revoke and /unrevoke there change the certificates' status)")
	name := fs.String("name", "example.com", "DNS name of the server certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	r := responder.New(ca)
	var leaves []*responder.Leaf
	for _, kt := range []responder.KeyType{responder.ECDSA, responder.RSA} {
		leaf, err := ca.Issue(responder.LeafOptions{DNSNames: []string{*name}, KeyType: kt, OCSPServer: []string{url}})
		if err != nil {
			ln.Close()
			return err
		}
		r.SetStatus(leaf.Cert.SerialNumber, responder.Good())
		leaves = append(leaves, leaf)
	}
	setAll := func(st func() responder.Status) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			if req.Method != http.MethodPost {
				w.Header().Set("Allow", "POST")
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			for _, l := range leaves {
				r.SetStatus(l.Cert.SerialNumber, st())
			}
			fmt.Fprintf(w, "%d certificates now %s\n", len(leaves), req.URL.Path[1:]+"d")
		}
	}
	revoke := setAll(func() responder.Status { return responder.Revoked(time.Now(), ocsp.KeyCompromise) })
	unrevoke := setAll(responder.Good)
	// Not a ServeMux: it would clean the paths of GET requests whose
	// base64 holds "//", and redirect them mangled.
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/revoke":
			revoke(w, req)
		case "/unrevoke":
			unrevoke(w, req)
		default:
			r.ServeHTTP(w, req)
		}
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stopped := false
	defer func() {
		if !stopped {
			srv.Close()
			<-served
		}
	}()

	// ca.pem last: its presence says every file is there.
	files := []struct {
		name string
		data []byte
	}{
		{"chain.pem", leaves[0].CertPEM}, {"key.pem", leaves[0].KeyPEM},
		{"rsa-chain.pem", leaves[1].CertPEM}, {"rsa-key.pem", leaves[1].KeyPEM},
		{"ca.pem", ca.CertPEM},
	}
	for _, f := range files {
		if err := writeWhole(filepath.Join(*dir, f.name), f.data); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "wrote %s/{chain,key,rsa-chain,rsa-key,ca}.pem for %s; OCSP responder at %s (POST %s/revoke to revoke them; Ctrl-C to stop)\n",
		*dir, *name, url, url)
	select {
	case <-ctx.Done():
		return nil
	case err := <-served:
		stopped = true
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// writeWhole writes data to path through a temporary file and a rename,
// so that a reader never sees it half written.
func writeWhole(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
