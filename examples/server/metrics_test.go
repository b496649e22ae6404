package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/responder"
)

// TestMetricsThroughAnOutageAndARevocation scrapes -metrics-addr over real
// HTTP, parsed with Prometheus's own parser, while the responder fails and
// then revokes the certificate.
func TestMetricsThroughAnOutageAndARevocation(t *testing.T) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(ca)
	ocspServer := responder.NewServer(r)
	defer ocspServer.Close()
	leaf, err := ocspServer.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, leaf.CertPEM, 0o600)
	os.WriteFile(keyPath, leaf.KeyPEM, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-cert", certPath, "-key", keyPath, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-admin-key", "k", "-metrics-addr", "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
	}()
	var addr, admin, metricsURL string
	br := bufio.NewReader(pr)
	for addr == "" {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("server output ended: %v", err)
		}
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "admin API on "); ok {
			admin = rest
		}
		if rest, ok := strings.CutPrefix(line, "metrics on "); ok {
			metricsURL = rest
		}
		if rest, ok := strings.CutPrefix(line, "listening on "); ok {
			addr = rest
		}
	}
	go io.Copy(io.Discard, br)
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") {
		t.Fatalf("metrics at %q", metricsURL)
	}
	scrape := func() map[string]*dto.MetricFamily {
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		f, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("the exposition does not parse: %v", err)
		}
		return f
	}
	get := func(f map[string]*dto.MetricFamily, family, label, value string) float64 {
		for _, m := range f[family].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	f := scrape()
	if get(f, "staplerkit_ocsp_handshakes_total", "outcome", "stapled") != 1 || get(f, "staplerkit_ocsp_queries_total", "result", "good") != 1 {
		t.Fatalf("after one stapled handshake: %v", f["staplerkit_ocsp_handshakes_total"])
	}

	r.SetFault(responder.Fault{Kind: responder.FaultHTTP500})
	adminGet(t, "POST", admin+"/v1/ocsp/test", "k")
	if got := get(scrape(), "staplerkit_ocsp_query_failures_total", "kind", "http_status"); got != 1 {
		t.Fatalf("http_status failures during the outage: %v", got)
	}
	r.SetFault(responder.Fault{})
	r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Minute), ocsp.KeyCompromise))
	adminGet(t, "POST", admin+"/v1/ocsp/test", "k")
	f = scrape()
	if get(f, "staplerkit_ocsp_queries_total", "result", "revoked") != 1 || get(f, "staplerkit_ocsp_certificates", "state", "revoked") != 1 {
		t.Fatalf("after the revocation: %v %v", f["staplerkit_ocsp_queries_total"], f["staplerkit_ocsp_certificates"])
	}
	cancel()
	<-done
}
