package redisstore

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
	"golang.org/x/crypto/ocsp"
)

// TestAForgedStateHidesNoRevocation: the fleet's state is "clamped"
// (plausible: last_attempt at most now+skew, next at most last_attempt +
// the query interval + skew), but nothing stops it being written again and
// again: a writer that keeps the state's next attempt an interval ahead
// makes every server skip every refresh (the fleet "tried" and plans
// later), so no server asks the responder until the staple nears expiry
// (here 24 h). A revocation is stapled as good on every server for six
// refresh intervals and more (README: the store is "never trusted").
// (Control: without the forger the revocation is stapled within the first
// hour; the test then passes in 1.3 s.)
func TestAForgedStateHidesNoRevocation(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	attacker := f.redis.Client()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	forge := func() {
		last := f.clock.Now().Add(4 * time.Minute)
		v, _ := json.Marshal(map[string]any{"tries": 0, "failed": false, "last_attempt": last.UnixNano(), "next": last.Add(time.Hour + 4*time.Minute).UnixNano()})
		attacker.Set(ctx, "fleet:{"+id+"}.state", v, 0)
	}
	forge()
	wg.Go(func() {
		for ctx.Err() == nil {
			forge()
			time.Sleep(2 * time.Millisecond)
		}
	})
	f.r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(f.clock.Now(), ocsp.KeyCompromise))
	revoked := func() bool {
		for i := range f.nodes {
			resp, err := ocsp.ParseResponseForCert(f.staple(i, 0), leaf.Cert, f.ca.Cert)
			if err == nil && resp.Status == ocsp.Revoked {
				return true
			}
		}
		return false
	}
	start := f.clock.Now()
	for f.clock.Now().Sub(start) < 6*time.Hour && !revoked() {
		f.clock.Advance(time.Minute)
		time.Sleep(20 * time.Millisecond)
	}
	if !revoked() {
		t.Fatalf("no server learned the revocation in %v of refreshes every hour: a forged fleet state, rewritten, holds every query off", f.clock.Now().Sub(start))
	}
}
