package metrics_test

import (
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/metrics"
	"github.com/staplerkit/ocsp/stapler"
)

// A Stapler's metrics on /metrics (docs/operations.md shows this body).
func ExampleNew() {
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	prometheus.MustRegister(metrics.New(s, metrics.Options{})) // Options{PerCertificateLimit: n}: per-certificate series up to n certificates (100)
	http.Handle("/metrics", promhttp.Handler())
}
