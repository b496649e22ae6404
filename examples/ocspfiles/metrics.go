package main

import "github.com/prometheus/client_golang/prometheus"

// fileMetrics counts what the daemon did with files, reloads and HAProxy,
// beside the Stapler's own series (staplerkit_ocsp_*).
type fileMetrics struct {
	writes, removals, writeErrors, checks prometheus.Counter
	reloads, haproxyUpdates               *prometheus.CounterVec
}

func newFileMetrics() *fileMetrics {
	return &fileMetrics{
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "staplerkit_ocspfiles_writes_total",
			Help: "Response files (and nginx includes) written because their content changed."}),
		removals: prometheus.NewCounter(prometheus.CounterOpts{Name: "staplerkit_ocspfiles_removals_total",
			Help: "Response files removed for want of a valid response."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "staplerkit_ocspfiles_write_errors_total",
			Help: "Failed writes or removals of files (retried at the next check)."}),
		checks: prometheus.NewCounter(prometheus.CounterOpts{Name: "staplerkit_ocspfiles_checks_total",
			Help: "Periodic checks of every file (-check-interval)."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "staplerkit_ocspfiles_reloads_total",
			Help: "Runs of the -reload command, by result."}, []string{"result"}),
		haproxyUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "staplerkit_ocspfiles_haproxy_updates_total",
			Help: "set ssl ocsp-response commands sent to HAProxy, by result."}, []string{"result"}),
	}
}

func (m *fileMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.writes, m.removals, m.writeErrors, m.checks, m.reloads, m.haproxyUpdates}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
