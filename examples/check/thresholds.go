package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/staplerkit/ocsp/stapler"
)

// thresholds are -w and -c; an absent one is relative to each response.
type thresholds struct {
	warn, crit       time.Duration
	warnSet, critSet bool
}

// thresholdsUsed are the thresholds a staple was judged by, for -json.
type thresholdsUsed struct {
	WarnSeconds int64  `json:"warn_seconds"`
	CritSeconds int64  `json:"crit_seconds"`
	WarnRule    string `json:"warn_rule"` // "-w 24h" or "a quarter of its 2h validity"
	CritRule    string `json:"crit_rule"`
	// ValiditySeconds is thisUpdate to expiry, which the default rule divides.
	ValiditySeconds int64 `json:"validity_seconds"`
}

// forResponse returns the warning and critical thresholds for resp. The
// default follows the response's own validity (thisUpdate to Expires): a
// healthy server refreshes at half-life, so less than a quarter left means
// it missed its refresh for a while (WARNING), less than a tenth that the
// staple is about to lapse (CRITICAL). A fixed default would misjudge
// every responder whose lifetime differs from it (1 h responses would
// warn for ever under a 24 h threshold).
func (t thresholds) forResponse(resp *stapler.Response) (warn, crit time.Duration, used *thresholdsUsed) {
	validity := resp.Expires.Sub(resp.ThisUpdate)
	used = &thresholdsUsed{ValiditySeconds: seconds(validity)}
	warn, used.WarnRule = validity/4, fmt.Sprintf("a quarter of its %s validity", fmtDuration(validity))
	if t.warnSet {
		warn, used.WarnRule = t.warn, "-w "+fmtDuration(t.warn)
	}
	crit, used.CritRule = validity/10, fmt.Sprintf("a tenth of its %s validity", fmtDuration(validity))
	if t.critSet {
		crit, used.CritRule = t.crit, "-c "+fmtDuration(t.crit)
	}
	used.WarnSeconds, used.CritSeconds = seconds(warn), seconds(crit)
	return warn, crit, used
}

// seconds is d in whole seconds, rounded down (toward the end of the
// staple's life for a time left).
func seconds(d time.Duration) int64 {
	s := d / time.Second
	if d < 0 && d%time.Second != 0 {
		s--
	}
	return int64(s)
}

// fmtDuration writes d for an operator: "2h", "23h59m", "20m", "45s".
// Durations of ten minutes or more are rounded down to the minute.
func fmtDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	if d >= 10*time.Minute {
		d = d.Truncate(time.Minute)
	} else {
		d = d.Truncate(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if neg {
		s = "-" + s
	}
	return s
}
