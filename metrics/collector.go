// Package metrics exports a Stapler's metrics to Prometheus. It is a
// module of its own, so that the core keeps its two dependencies:
//
//	prometheus.MustRegister(metrics.New(s, metrics.Options{}))
//
// Series (all prefixed staplerkit_ocsp_):
//
//	handshakes_total{outcome="stapled|unstapled|refused"}    counter
//	retired_total                                             counter
//	queries_total{result="good|revoked"}                      counter
//	query_failures_total{kind="http_status|content_type|timeout|invalid_response|rate_limited|responder_status|unknown|dns|connection|other"}  counter
//	query_duration_seconds                                    histogram
//	certificates{state="good|revoked|unknown|failed|none|expired|disabled|not_applicable"}  gauge
//	staple_expires_in_seconds{id,subject,serial}              gauge, per certificate
//	last_success_age_seconds{id,subject,serial}               gauge, per certificate
//	certificate_state{id,subject,serial,state}                gauge (1), per certificate
//	stapled{id,subject,serial}                                gauge (0 or 1), per certificate
//	response_this_update_timestamp_seconds{id,subject,serial} gauge (Unix time), per certificate
//	response_next_update_timestamp_seconds{id,subject,serial} gauge (Unix time), per certificate
//	staple_expiry_timestamp_seconds{id,subject,serial}        gauge (Unix time), per certificate
//	last_success_timestamp_seconds{id,subject,serial}         gauge (Unix time), per certificate
//	get_fallbacks_total                                       counter
//	store_up                                                  gauge (with a store)
//	store_errors_total{op="read|write|lease|delete"}          counter (with a store)
//
// Options.ConstLabels are added to every series (two Staplers in one
// registry need them, or registration fails as a duplicate).
//
// Labels are bounded: the per-certificate series are exported only while
// the Stapler manages at most Options.PerCertificateLimit certificates
// (100 by default; a negative limit turns them off), so that 100,000
// certificates never become 100,000 series unless asked for. The aggregate
// series always are.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/staplerkit/ocsp/stapler"
)

// DefaultPerCertificateLimit is how many certificates the per-certificate
// series cover by default.
const DefaultPerCertificateLimit = 100

// Options tune a Collector; the zero value is the default, as with
// prometheus.CounterOpts.
type Options struct {
	// PerCertificateLimit exports the per-certificate series while the
	// Stapler manages at most this many certificates. Zero means
	// DefaultPerCertificateLimit; a negative value means never.
	PerCertificateLimit int
	// ConstLabels are added to every series, as prometheus.Opts's are:
	// two Staplers in one process (one per policy, say) register in one
	// registry with a label that tells them apart, {"stapler": "strict"}.
	ConstLabels prometheus.Labels
}

// Collector is a prometheus.Collector for one Stapler.
type Collector struct {
	s     *stapler.Stapler
	limit int
	now   func() time.Time

	handshakes, queries, failures, duration, certificates, retired *prometheus.Desc
	getFallbacks, storeUp, storeErrors                             *prometheus.Desc
	expiresIn, successAge, state                                   *prometheus.Desc
	stapled, thisUpdate, nextUpdate, stapleExpiry, lastSuccess     *prometheus.Desc
}

// New returns a Collector for s.
func New(s *stapler.Stapler, opts Options) *Collector {
	const ns = "staplerkit_ocsp_"
	perCert := []string{"id", "subject", "serial"}
	c := &Collector{
		s: s, limit: DefaultPerCertificateLimit, now: time.Now,
		handshakes:   prometheus.NewDesc(ns+"handshakes_total", "TLS handshakes served, by outcome: stapled, unstapled (no valid staple, served anyway), refused (by the policy).", []string{"outcome"}, opts.ConstLabels),
		queries:      prometheus.NewDesc(ns+"queries_total", "Responder queries answered good or revoked.", []string{"result"}, opts.ConstLabels),
		retired:      prometheus.NewDesc(ns+"retired_total", "Certificates retired for want of handshakes, or by the bound on managed certificates.", nil, opts.ConstLabels),
		failures:     prometheus.NewDesc(ns+"query_failures_total", "Responder queries that failed, by kind.", []string{"kind"}, opts.ConstLabels),
		getFallbacks: prometheus.NewDesc(ns+"get_fallbacks_total", "Requests sent again by POST because the responder refused the GET (a 4xx, an answer that is not an OCSP response, or malformedRequest); such a responder is then asked by POST alone for an hour.", nil, opts.ConstLabels),
		storeUp:      prometheus.NewDesc(ns+"store_up", "1 while the store (WithStore) answered at its last use, for every certificate's keys; 0 otherwise (absent without a store).", nil, opts.ConstLabels),
		storeErrors:  prometheus.NewDesc(ns+"store_errors_total", "Failed store operations, by operation (absent without a store).", []string{"op"}, opts.ConstLabels),
		duration:     prometheus.NewDesc(ns+"query_duration_seconds", "Latency of responder queries, successful or not.", nil, opts.ConstLabels),
		certificates: prometheus.NewDesc(ns+"certificates", "Managed certificates, by state.", []string{"state"}, opts.ConstLabels),
		expiresIn:    prometheus.NewDesc(ns+"staple_expires_in_seconds", "Seconds until the certificate's staple stops being served (absent: no staple).", perCert, opts.ConstLabels),
		successAge:   prometheus.NewDesc(ns+"last_success_age_seconds", "Seconds since the certificate's last successful query (absent: none yet).", perCert, opts.ConstLabels),
		state:        prometheus.NewDesc(ns+"certificate_state", "The certificate's state (the series with value 1).", append(perCert, "state"), opts.ConstLabels),
		stapled:      prometheus.NewDesc(ns+"stapled", "1 while handshakes are stapled for the certificate, 0 otherwise.", perCert, opts.ConstLabels),
		thisUpdate:   prometheus.NewDesc(ns+"response_this_update_timestamp_seconds", "thisUpdate of the certificate's latest response (Unix time).", perCert, opts.ConstLabels),
		nextUpdate:   prometheus.NewDesc(ns+"response_next_update_timestamp_seconds", "nextUpdate of the certificate's latest response (Unix time; absent when it has none).", perCert, opts.ConstLabels),
		stapleExpiry: prometheus.NewDesc(ns+"staple_expiry_timestamp_seconds", "When the certificate's staple stops being served unless refreshed (Unix time; absent: no staple).", perCert, opts.ConstLabels),
		lastSuccess:  prometheus.NewDesc(ns+"last_success_timestamp_seconds", "When the certificate's last successful query was made (Unix time; absent: none yet).", perCert, opts.ConstLabels),
	}
	switch {
	case opts.PerCertificateLimit > 0:
		c.limit = opts.PerCertificateLimit
	case opts.PerCertificateLimit < 0:
		c.limit = 0
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.handshakes, c.retired, c.getFallbacks, c.storeUp, c.storeErrors, c.queries, c.failures, c.duration, c.certificates, c.expiresIn, c.successAge, c.state,
		c.stapled, c.thisUpdate, c.nextUpdate, c.stapleExpiry, c.lastSuccess} {
		ch <- d
	}
}

// allStates are the states counted by the certificates gauge, present
// even at zero.
var allStates = []stapler.State{stapler.StateGood, stapler.StateRevoked, stapler.StateUnknown, stapler.StateFailed, stapler.StateNone, stapler.StateExpired, stapler.StateDisabled, stapler.StateNotApplicable}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.Metrics()
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	counter(c.handshakes, m.HandshakesStapled, "stapled")
	counter(c.handshakes, m.HandshakesUnstapled, "unstapled")
	counter(c.handshakes, m.HandshakesRefused, "refused")
	ch <- prometheus.MustNewConstMetric(c.retired, prometheus.CounterValue, float64(m.Retired))
	ch <- prometheus.MustNewConstMetric(c.getFallbacks, prometheus.CounterValue, float64(m.GETFallbacks))
	if m.Store.Configured {
		up := 0.0
		if m.Store.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.storeUp, prometheus.GaugeValue, up)
		for op, n := range m.Store.Errors {
			counter(c.storeErrors, n, string(op))
		}
	}
	counter(c.queries, m.QueriesGood, "good")
	counter(c.queries, m.QueriesRevoked, "revoked")
	for kind, v := range m.QueryFailures {
		counter(c.failures, v, string(kind))
	}
	buckets := make(map[float64]uint64, len(m.QueryLatency.Bounds))
	var cumulative uint64
	for i, b := range m.QueryLatency.Bounds {
		cumulative += m.QueryLatency.Counts[i]
		buckets[b.Seconds()] = cumulative
	}
	ch <- prometheus.MustNewConstHistogram(c.duration, m.QueryLatency.Count, m.QueryLatency.Sum.Seconds(), buckets)

	statuses := c.s.Status()
	byState := make(map[stapler.State]int, len(allStates))
	for _, st := range statuses {
		byState[st.State]++
	}
	for _, state := range allStates {
		ch <- prometheus.MustNewConstMetric(c.certificates, prometheus.GaugeValue, float64(byState[state]), string(state))
	}
	if len(statuses) > c.limit {
		return
	}
	now := c.now()
	for _, st := range statuses {
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{st.ID, st.Subject, st.Serial}, extra...)...)
		}
		timestamp := func(d *prometheus.Desc, t time.Time) {
			if !t.IsZero() {
				gauge(d, float64(t.Unix()))
			}
		}
		gauge(c.state, 1, string(st.State))
		stapled := 0.0
		if st.Stapled {
			stapled = 1
		}
		gauge(c.stapled, stapled)
		timestamp(c.thisUpdate, st.ThisUpdate.Time)
		timestamp(c.nextUpdate, st.NextUpdate.Time)
		timestamp(c.lastSuccess, st.LastSuccess.Time)
		if st.Stapled && !st.StapleExpires.IsZero() {
			gauge(c.expiresIn, st.StapleExpires.Sub(now).Seconds())
			timestamp(c.stapleExpiry, st.StapleExpires.Time)
		}
		if !st.LastSuccess.IsZero() {
			gauge(c.successAge, now.Sub(st.LastSuccess.Time).Seconds())
		}
	}
}
