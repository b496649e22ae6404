package metrics

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// scrape fetches url over HTTP and parses the exposition with Prometheus's
// own parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return families
}

// value is the value of the series of family whose labels include want.
func value(families map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	f := families[family]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestScrapeThroughAnOutageAndARevocation(t *testing.T) {
	ca, _ := responder.NewCA(responder.CAOptions{})
	r := responder.New(ca)
	ocspServer := responder.NewServer(r)
	defer ocspServer.Close()
	leaf, _ := ocspServer.Issue(responder.LeafOptions{})
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	if err := s.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(s, Options{}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	cfg.GetCertificate(hello)

	f := scrape(t, srv.URL)
	for _, c := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"staplerkit_ocsp_handshakes_total", map[string]string{"outcome": "stapled"}, 1},
		{"staplerkit_ocsp_queries_total", map[string]string{"result": "good"}, 1},
		{"staplerkit_ocsp_query_duration_seconds", nil, 1},
		{"staplerkit_ocsp_certificates", map[string]string{"state": "good"}, 1},
		{"staplerkit_ocsp_certificate_state", map[string]string{"state": "good"}, 1},
	} {
		if got, ok := value(f, c.family, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.family, c.labels, got, ok, c.want)
		}
	}
	if left, ok := value(f, "staplerkit_ocsp_staple_expires_in_seconds", nil); !ok || left < 3600 {
		t.Errorf("staple_expires_in_seconds = %v (present %v)", left, ok)
	}
	// Absolute times, comparable across servers and scrapes, on series
	// that tell certificates apart by serial too.
	st, _ := s.StatusOf(stapler.CertificateID(leaf.Cert.Raw))
	mine := map[string]string{"serial": st.Serial, "id": st.ID}
	for family, want := range map[string]float64{
		"staplerkit_ocsp_stapled":                                1,
		"staplerkit_ocsp_response_this_update_timestamp_seconds": float64(st.ThisUpdate.Unix()),
		"staplerkit_ocsp_response_next_update_timestamp_seconds": float64(st.NextUpdate.Unix()),
		"staplerkit_ocsp_staple_expiry_timestamp_seconds":        float64(st.StapleExpires.Unix()),
		"staplerkit_ocsp_last_success_timestamp_seconds":         float64(st.LastSuccess.Unix()),
	} {
		if got, ok := value(f, family, mine); !ok || got != want {
			t.Errorf("%s%v = %v (present %v), want %v", family, mine, got, ok, want)
		}
	}

	// An outage: the query fails, and says how.
	id := stapler.CertificateID(leaf.Cert.Raw)
	r.SetFault(responder.Fault{Kind: responder.FaultHTTP503HTML})
	s.Test(t.Context(), id)
	f = scrape(t, srv.URL)
	if got, _ := value(f, "staplerkit_ocsp_query_failures_total", map[string]string{"kind": "http_status"}); got != 1 {
		t.Errorf("http_status failures = %v, want 1", got)
	}
	// Back, and revoked.
	r.SetFault(responder.Fault{})
	r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(time.Now().Add(-time.Minute), ocsp.KeyCompromise))
	if _, err := s.Test(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	f = scrape(t, srv.URL)
	if got, _ := value(f, "staplerkit_ocsp_queries_total", map[string]string{"result": "revoked"}); got != 1 {
		t.Errorf("revoked answers = %v, want 1", got)
	}
	if got, _ := value(f, "staplerkit_ocsp_certificates", map[string]string{"state": "revoked"}); got != 1 {
		t.Errorf("revoked certificates = %v, want 1", got)
	}
	// Turned off for the certificate: stapled 0, no staple expiry.
	if err := s.SetStapling(id, config.Stapling{Enabled: false}); err != nil {
		t.Fatal(err)
	}
	f = scrape(t, srv.URL)
	if got, ok := value(f, "staplerkit_ocsp_stapled", map[string]string{"id": id}); !ok || got != 0 {
		t.Errorf("stapled with stapling off = %v (present %v), want 0", got, ok)
	}
	if _, ok := value(f, "staplerkit_ocsp_staple_expiry_timestamp_seconds", map[string]string{"id": id}); ok {
		t.Error("a staple expiry exported with stapling off")
	}
}

// TestPerCertificateSeriesAreBounded: past the limit, no per-certificate
// series; the aggregates stay.
func TestPerCertificateSeriesAreBounded(t *testing.T) {
	ca, _ := responder.NewCA(responder.CAOptions{})
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var certs []tls.Certificate
	for _, name := range []string{"a.test", "b.test", "c.test"} {
		l, _ := ocspServer.Issue(responder.LeafOptions{DNSNames: []string{name}})
		certs = append(certs, l.Certificate)
	}
	s.Wrap(&tls.Config{Certificates: certs})
	s.Ready(t.Context())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(s, Options{PerCertificateLimit: 2}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	f := scrape(t, srv.URL)
	for name := range f {
		if strings.Contains(name, "certificate_state") || strings.Contains(name, "expires_in") {
			t.Fatalf("per-certificate series %s past the limit", name)
		}
	}
	if got, _ := value(f, "staplerkit_ocsp_certificates", map[string]string{"state": "good"}); got != 3 {
		t.Fatalf("good certificates = %v, want 3", got)
	}
}

// Two Staplers in one process register in one registry, told apart by a
// constant label on every series.
func TestTwoStaplersShareARegistryWithConstantLabels(t *testing.T) {
	ca, _ := responder.NewCA(responder.CAOptions{})
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	reg := prometheus.NewPedanticRegistry()
	for i, name := range []string{"lenient", "strict"} {
		s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var certs []tls.Certificate
		for j := range i + 1 {
			l, _ := ocspServer.Issue(responder.LeafOptions{DNSNames: []string{fmt.Sprintf("%s%d.test", name, j)}})
			certs = append(certs, l.Certificate)
		}
		s.Wrap(&tls.Config{Certificates: certs})
		s.Ready(t.Context())
		if err := reg.Register(New(s, Options{ConstLabels: prometheus.Labels{"stapler": name}})); err != nil {
			t.Fatalf("registering the %s Stapler's collector: %v", name, err)
		}
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	f := scrape(t, srv.URL)
	for name, want := range map[string]float64{"lenient": 1, "strict": 2} {
		if got, _ := value(f, "staplerkit_ocsp_certificates", map[string]string{"state": "good", "stapler": name}); got != want {
			t.Fatalf("%s: good certificates = %v, want %v", name, got, want)
		}
	}
}
