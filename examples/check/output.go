package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// report is the verdict on all handshakes.
type report struct {
	Exit    int
	Verdict string
	Reason  string
	Results []result
	Perf    []perfDatum
}

// perfDatum is one Nagios performance data item. Warn and Crit are Nagios
// ranges: "1800:" alerts when the value is below 1800.
type perfDatum struct {
	Label string `json:"label"`
	Value int64  `json:"value"`
	Unit  string `json:"unit"`
	Warn  string `json:"warn,omitempty"`
	Crit  string `json:"crit,omitempty"`
}

func (d perfDatum) String() string {
	s := fmt.Sprintf("%s=%d%s", d.Label, d.Value, d.Unit)
	if d.Warn != "" || d.Crit != "" {
		s += ";" + d.Warn + ";" + d.Crit
	}
	return s
}

// summarize makes one verdict of the handshakes. A version that did not
// handshake is no verdict when another did (the server need not speak
// both); when none did, the server is CRITICAL if it answered in TLS and
// refused, else UNKNOWN (unreachable, silent, not TLS). Otherwise the
// verdict is the worst handshake's, and its reason names the TLS version
// when the versions disagree.
func summarize(results []result) report {
	rep := report{Exit: -1, Results: results}
	var worst *result
	agree := true
	for i := range results {
		r := &results[i]
		if !r.Handshake {
			continue
		}
		if worst != nil && r.Exit != worst.Exit {
			agree = false
		}
		if worst == nil || r.Exit > worst.Exit {
			worst = r
		}
	}
	switch {
	case worst != nil:
		rep.Exit, rep.Reason = worst.Exit, worst.Reason
		if !agree {
			rep.Reason = worst.Version + ": " + worst.Reason
		}
	default:
		rep.Exit, rep.Reason = exitUnknown, results[0].Reason
		var failed []string // each version's failure, when they differ
		for _, r := range results {
			if !r.spokeTLS {
				continue
			}
			if rep.Exit != exitCritical {
				rep.Exit, rep.Reason = exitCritical, r.Reason
			}
			failed = append(failed, r.Version+": "+r.Reason)
		}
		if len(failed) > 1 && results[0].Reason != results[1].Reason {
			rep.Reason = strings.Join(failed, "; ")
		}
	}
	rep.Verdict = verdictWord(rep.Exit)
	rep.Perf = perfData(results)
	return rep
}

// perfData is staple_ttl and response_age of the staple with the least
// time left (the one the verdict rests on), then the same per TLS version
// (staple_ttl_tls13, response_age_tls13, ...), for each handshake whose
// staple verified. staple_ttl carries the thresholds it was judged by.
// A handshake with no valid staple has no figures: a gap in the graph,
// not a made-up zero.
func perfData(results []result) []perfDatum {
	var out []perfDatum
	var least *result
	for i := range results {
		if f := results[i].perf; f != nil && (least == nil || f.ttl < least.perf.ttl) {
			least = &results[i]
		}
	}
	if least == nil {
		return nil
	}
	add := func(suffix string, f *stapleFigures) {
		out = append(out,
			perfDatum{Label: "staple_ttl" + suffix, Value: f.ttl, Unit: "s", Warn: fmt.Sprintf("%d:", f.warn), Crit: fmt.Sprintf("%d:", f.crit)},
			perfDatum{Label: "response_age" + suffix, Value: f.age, Unit: "s"})
	}
	add("", least.perf)
	for _, r := range results {
		if r.perf != nil {
			add("_"+versionLabel(r.Version), r.perf)
		}
	}
	return out
}

// versionLabel is "tls13" for "TLS 1.3".
func versionLabel(v string) string {
	return strings.NewReplacer(" ", "", ".", "").Replace(strings.ToLower(v))
}

func perfString(perf []perfDatum) string {
	s := make([]string, len(perf))
	for i, d := range perf {
		s[i] = d.String()
	}
	return strings.Join(s, " ")
}

// writeText writes the plugin output: the verdict, its reason and the
// performance data on the first line, each handshake's details after it.
func writeText(w io.Writer, rep report) {
	fmt.Fprintf(w, "OCSP %s - %s", rep.Verdict, oneLine(rep.Reason))
	if len(rep.Perf) > 0 {
		fmt.Fprintf(w, " | %s", perfString(rep.Perf))
	}
	fmt.Fprintln(w)
	for _, r := range rep.Results {
		printResult(w, r)
	}
}

// oneLine keeps a reason (which may quote an error) on the first line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ", "|", "/").Replace(s)
}

func printResult(w io.Writer, r result) {
	if r.Handshake {
		fmt.Fprintf(w, "%s %s %s\n", r.Version, r.Verdict, r.Subject)
	} else {
		fmt.Fprintf(w, "%s no handshake\n", r.Version)
	}
	if r.Status != "" {
		fmt.Fprintf(w, "  status %s, thisUpdate %s, nextUpdate %s, expires %s (%s left), %d bytes, signed by %s",
			r.Status, r.ThisUpdate.UTC().Format(time.RFC3339), formatTime(r.NextUpdate), formatTime(r.Expires),
			fmtDuration(time.Duration(r.SecondsLeft)*time.Second), r.Size, r.Signer)
		if !r.SignerExpires.IsZero() {
			fmt.Fprintf(w, " (expires %s)", r.SignerExpires.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
	if t := r.Thresholds; t != nil {
		fmt.Fprintf(w, "  warning below %s (%s), critical below %s (%s)\n",
			fmtDuration(time.Duration(t.WarnSeconds)*time.Second), t.WarnRule,
			fmtDuration(time.Duration(t.CritSeconds)*time.Second), t.CritRule)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// writeJSON writes the report for -json: the verdict word, its reason, the
// performance data (as the plugin line and as values), and each
// handshake with the thresholds its staple was judged by.
func writeJSON(w io.Writer, connect string, rep report) {
	perf := map[string]perfDatum{}
	for _, d := range rep.Perf {
		perf[d.Label] = d
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(struct {
		Connect  string               `json:"connect"`
		Verdict  string               `json:"verdict"`
		Exit     int                  `json:"exit"`
		Reason   string               `json:"reason"`
		PerfData string               `json:"perfdata"`
		Perf     map[string]perfDatum `json:"perf"`
		Results  []result             `json:"results"`
	}{connect, rep.Verdict, rep.Exit, rep.Reason, perfString(rep.Perf), perf, rep.Results})
}
