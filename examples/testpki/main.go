// Command testpki writes a test CA and two server certificates for one
// name, ECDSA and RSA (each a chain: leaf, then CA), with their keys into a
// folder, and runs an OCSP responder for them on loopback until
// interrupted, so that examples/server can be tried without a PKI of one's
// own:
//
//	go run ./examples/testpki -dir /tmp/demo
//	go run ./examples/server -cert /tmp/demo/chain.pem -key /tmp/demo/key.pem \
//	    -cert /tmp/demo/rsa-chain.pem -key /tmp/demo/rsa-key.pem
//	openssl s_client -status -CAfile /tmp/demo/ca.pem -connect 127.0.0.1:8443 -servername example.com
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

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
	addr := fs.String("addr", "127.0.0.1:8888", "address of the OCSP responder")
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
	srv, err := responder.Listen(*addr, responder.New(ca))
	if err != nil {
		return err
	}
	defer srv.Close()
	leaf, err := srv.Issue(responder.LeafOptions{DNSNames: []string{*name}})
	if err != nil {
		return err
	}
	rsaLeaf, err := srv.Issue(responder.LeafOptions{DNSNames: []string{*name}, KeyType: responder.RSA})
	if err != nil {
		return err
	}
	for file, data := range map[string][]byte{
		"ca.pem":    ca.CertPEM,
		"chain.pem": leaf.CertPEM, "key.pem": leaf.KeyPEM,
		"rsa-chain.pem": rsaLeaf.CertPEM, "rsa-key.pem": rsaLeaf.KeyPEM,
	} {
		if err := os.WriteFile(filepath.Join(*dir, file), data, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "wrote %s/{ca,chain,key,rsa-chain,rsa-key}.pem for %s; OCSP responder at %s (Ctrl-C to stop)\n", *dir, *name, srv.URL)
	<-ctx.Done()
	return nil
}
