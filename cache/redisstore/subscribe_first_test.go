package redisstore

import (
	"context"
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"github.com/staplerkit/ocsp/stapler"
)

// gatedStore is a Store whose subscription starts only when gate is
// closed: the window between a server's first reads and its subscription
// being live, held open.
type gatedStore struct {
	*Store
	gate chan struct{}
}

func (g gatedStore) Subscribe(ctx context.Context, f func(key string)) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.Subscribe(ctx, f)
}

// A server that starts while another holds a certificate's lease waits
// for the response the holder will store. When the holder stores and
// announces it before the new server's subscription is live, the
// announcement is not heard; the subscription, once live, says so, and the
// server reads the store again and staples the response with its clock
// standing still (it does not wait for its planned look).
func TestAResponseAnnouncedBeforeTheSubscriptionIsLiveIsAdopted(t *testing.T) {
	f := newFleet(t, 0, 1)
	ctx := context.Background()
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	raw := New(f.redis.Client(), "fleet:")

	// Another server holds the lease: it is asking the responder.
	if err := f.redis.Client().Set(ctx, raw.leaseKey(id), "another server", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	logs := newLogCounter(testLogger().Handler())
	s, err := stapler.New(fleetConfig,
		stapler.WithClock(f.clock),
		stapler.WithLogger(slog.New(logs)),
		stapler.WithStore(gatedStore{New(f.redis.Client(), "fleet:"), gate}),
		stapler.WithColdWait(10*time.Millisecond),
		stapler.WithRateLimit(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	waitFor(t, "the new server to find the lease and wait", func() bool {
		st, err := s.StatusOf(id)
		return err == nil && st.Queries == 0 && st.NextRefresh.After(f.clock.Now())
	})

	// The holder stores its response and announces it: nobody hears.
	der, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Put(ctx, id, record.Encode(der, f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	f.redis.Client().Del(ctx, raw.leaseKey(id))

	close(gate)
	waitFor(t, "the response to be stapled with the clock standing still", func() bool {
		st, err := s.StatusOf(id)
		return err == nil && st.Stapled
	})
	if st, _ := s.StatusOf(id); st.Queries != 0 {
		t.Fatalf("the server queried the responder %d time(s); it should have adopted the stored response", st.Queries)
	}
	if n := logs.count("ocsp: notifications from the fleet may have been missed"); n != 0 {
		t.Fatalf("a subscription made at the start was logged as missed notifications %d time(s)", n)
	}
}
