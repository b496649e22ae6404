package cli

import "testing"

// -responder-override AIA=URL is split "at the = that starts the
// replacement URL, so either URL may carry a query". The split takes the
// last = followed by http:// or https://, so a replacement whose query
// carries a URL (a fetching proxy: ?upstream=http://...) is cut inside its
// own query: the "AIA" becomes a string no certificate names, the override
// silently matches nothing, and the responder the operator meant to avoid
// is asked.
func TestResponderOverrideReplacementMayCarryAURLInItsQuery(t *testing.T) {
	in := "http://ocsp.internal/=http://proxy.test/fetch?upstream=http://ocsp.internal/"
	from, to, ok := splitOverride(in)
	if !ok || from != "http://ocsp.internal/" || to != "http://proxy.test/fetch?upstream=http://ocsp.internal/" {
		t.Fatalf("%q: got AIA %q, URL %q, %v", in, from, to, ok)
	}
}
