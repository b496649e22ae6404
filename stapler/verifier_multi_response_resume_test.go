package stapler

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

// AttackResumedSessionWithAMultiResponseStaple: on a resumed session whose
// restored staple has expired, the Verifier accepts the session when the
// staple "was a valid good answer when the session began"
// (checkedWhenSessionBegan). That check first parses the staple with
// x/crypto's ocsp.ParseResponse(raw, nil), which refuses any response
// carrying more than one SingleResponse when no certificate is given
// ("bad number of responses"), although RFC 6960 allows several and the
// Verifier's own parser accepts them on a full handshake. So for a server
// whose responder answers with several SingleResponses (batch-signed
// responses, the whole chain's status), every HardFail or must-staple
// client is refused on resumption once the first staple has expired.
// Expected: the same as with a one-answer staple (the control subtest).
func TestResumedSessionWithAMultiResponseStaple(t *testing.T) {
	for _, tc := range []struct {
		name  string
		multi bool
	}{{"one answer (control)", false}, {"two answers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, on)
			other, err := e.ca.Issue(responder.LeafOptions{})
			if err != nil {
				t.Fatal(err)
			}
			staple := mustFetchRaw(t, e, e.leaf)
			staple = resign(t, staple, e.ca.Key, func(tbs *derNode) {
				if !tc.multi {
					return
				}
				for _, c := range tbs.children {
					if c.tag == single(tbs).tag && len(c.children) > 0 && c.children[0] == single(tbs) {
						second := parseDER(t, single(tbs).bytes(t))
						second.children[0].children[3] = parseDER(t, serialDER(t, other))
						c.children = append(c.children, second)
					}
				}
			})
			// The full handshake accepts it: the Verifier's parser allows
			// several answers.
			if _, err := (&Verifier{}).verify(t.Context(), staple, e.leaf.Cert, e.ca.Cert, e.clock.Now()); err != nil {
				t.Fatalf("the staple does not verify: %v", err)
			}
			cert := e.leaf.Certificate
			cert.OCSPStaple = staple
			addr := e.serveGreeting(&tls.Config{Certificates: []tls.Certificate{cert}})
			client := e.sessionClient(&Verifier{HardFail: true, Time: e.clock.Now}, tls.VersionTLS13)
			if resumed, err := dialSession(addr, client); err != nil || resumed {
				t.Fatalf("first connection: resumed %v, %v", resumed, err)
			}
			e.clock.Advance(25 * time.Hour) // the session's staple has expired
			resumed, err := dialSession(addr, client)
			if err != nil {
				t.Fatalf("resumed session refused (resumed %v): %v", resumed, err)
			}
		})
	}
}

func serialDER(t testing.TB, l *responder.Leaf) []byte {
	t.Helper()
	var n derNode
	n.tag = 0x02
	b := l.Cert.SerialNumber.Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	n.content = b
	return n.bytes(t)
}
