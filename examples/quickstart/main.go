// Command quickstart shows the whole job on loopback, with no files: it
// mints a test PKI, runs an OCSP responder and a TLS server wrapped by a
// Stapler, connects a Go TLS client, verifies the staple the client received
// on its own, and prints the status object.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

func main() {
	if err := run(os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(out io.Writer) error {
	// A test PKI: a root CA, an OCSP responder for it on 127.0.0.1, and a
	// server certificate whose AIA points at that responder.
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		return err
	}
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	leaf, err := ocspServer.Issue(responder.LeafOptions{})
	if err != nil {
		return err
	}

	// The lines a server adds: wrap, then wait until the certificates have
	// had their first fetch before taking traffic, so that the first
	// handshake is stapled however busy the machine.
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true},
		stapler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return err
	}
	defer s.Close()
	serverConfig := s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	readyCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Ready(readyCtx); err != nil {
		return err
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverConfig)
	if err != nil {
		return err
	}
	defer ln.Close()
	go serve(ln)
	fmt.Fprintf(out, "OCSP responder at %s, TLS server at %s\n", ocspServer.URL, ln.Addr())

	// A Go client that asks for the staple and checks it independently.
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		return err
	}
	state := conn.ConnectionState()
	conn.Close()
	if state.OCSPResponse == nil {
		return fmt.Errorf("the server stapled nothing")
	}
	resp, err := ocsp.ParseResponseForCert(state.OCSPResponse, state.PeerCertificates[0], ca.Cert)
	if err != nil {
		return fmt.Errorf("the staple does not verify: %w", err)
	}
	fmt.Fprintf(out, "client got a %d-byte staple, signed by the CA, status %s, valid until %s\n",
		len(state.OCSPResponse), map[int]string{ocsp.Good: "good", ocsp.Revoked: "revoked", ocsp.Unknown: "unknown"}[resp.Status], resp.NextUpdate.UTC().Format(config.HTTPDateFormat))

	st, err := s.StatusOf("")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "status object (GET /v1/ocsp/status):")
	enc := json.NewEncoder(out)
	enc.SetIndent("", "    ")
	return enc.Encode(st)
}

func serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			conn.(*tls.Conn).Handshake()
		}()
	}
}
