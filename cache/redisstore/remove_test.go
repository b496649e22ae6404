package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/cache"
	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
	"github.com/staplerkit/ocsp/stapler/clock"
)

// TestRemoveDeletesTheSharedValues: Remove means forget, in a fleet too:
// the certificate's shared response and fleet state are deleted before
// Remove returns; the other certificates' values stay, and a node still
// serving the removed certificate keeps its staple.
func TestRemoveDeletesTheSharedValues(t *testing.T) {
	f := newFleet(t, 2, 2)
	f.settle("every node to staple", 500*time.Millisecond, func() bool { return f.allStapledSince(f.clock.Now().Add(-time.Hour)) })
	ctx := context.Background()
	raw := New(f.redis.Client(), "fleet:")
	id0, id1 := stapler.CertificateID(f.leaves[0].Cert.Raw), stapler.CertificateID(f.leaves[1].Cert.Raw)
	keys := []string{id0, id0 + ".state", id1, id1 + ".state"}
	for _, key := range keys {
		if _, err := raw.Get(ctx, key); err != nil {
			t.Fatalf("%s before Remove: %v", key, err)
		}
	}
	if err := f.nodes[0].Remove(id0); err != nil {
		t.Fatal(err)
	}
	for _, key := range keys[:2] {
		if _, err := raw.Get(ctx, key); !errors.Is(err, cache.ErrCacheMiss) {
			t.Errorf("%s after Remove: %v, want ErrCacheMiss", key, err)
		}
	}
	for _, key := range keys[2:] {
		if _, err := raw.Get(ctx, key); err != nil {
			t.Errorf("%s, another certificate's, after Remove: %v", key, err)
		}
	}
	if f.staple(1, 0) == nil {
		t.Fatal("the other node stopped stapling the removed certificate")
	}
}

// A query in flight when Remove runs (a Test from the admin API here; a
// lease holder's scheduled refresh the same way) writes nothing to Redis
// once it ends: Remove deletes the certificate's shared response and fleet
// state before it returns, and they stay deleted ("Remove means forget";
// the keys have no TTL). Found when the query was applied after Remove and
// wrote both keys back (writeShared never looked at whether the
// certificate was removed).
func TestAQueryInFlightAtRemoveWritesNothingToRedis(t *testing.T) {
	rs := redistest.Start(t)
	clk := clock.NewManual(time.Now().Truncate(time.Second))
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(ca)
	r.SetClock(clk.Now)
	var n atomic.Int64
	held := make(chan struct{}, 10)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if n.Add(1) > 1 { // the first query passes; the next is held
			held <- struct{}{}
			<-gate
		}
		r.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { release(); srv.Close() })
	leaf, err := ca.Issue(responder.LeafOptions{OCSPServer: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	r.SetStatus(leaf.Cert.SerialNumber, responder.Good())

	s, err := stapler.New(config.OCSP{OCSPFunctionality: true},
		stapler.WithClock(clk), stapler.WithLogger(testLogger()),
		stapler.WithStore(New(rs.Client(), "fleet:")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Wrap(&tls.Config{Certificates: []tls.Certificate{leaf.Certificate}})
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx := context.Background()
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	raw := New(rs.Client(), "fleet:")
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := raw.Get(ctx, id); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the response never reached Redis")
		}
		time.Sleep(5 * time.Millisecond)
	}

	testDone := make(chan error, 1)
	go func() {
		_, err := s.Test(ctx, id)
		testDone <- err
	}()
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("the Test's query never reached the responder")
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{id, id + ".state"} {
		if _, err := raw.Get(ctx, key); !errors.Is(err, cache.ErrCacheMiss) {
			t.Fatalf("%s right after Remove: %v, want ErrCacheMiss", key, err)
		}
	}
	release()
	select {
	case err := <-testDone:
		t.Logf("Test returned %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Test hung")
	}
	s.Close()
	for _, key := range []string{id, id + ".state"} {
		if _, err := raw.Get(ctx, key); !errors.Is(err, cache.ErrCacheMiss) {
			t.Errorf("%s of the removed certificate is back in Redis (no TTL: for good): %v, want ErrCacheMiss", key, err)
		}
	}
}

// A status hook that removes a certificate once it is revoked ("stop
// serving it") leaves no Redis values behind, although it runs inside
// apply, before the fleet writes that very response. Found when the
// fleet's write (writeShared, after apply) put back both keys that Remove
// had deleted.
func TestRemoveFromTheStatusHookLeavesNoRedisValues(t *testing.T) {
	rs := redistest.Start(t)
	clk := clock.NewManual(time.Now().Truncate(time.Second))
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := responder.New(ca)
	r.SetClock(clk.Now)
	srv := responder.NewServer(r)
	t.Cleanup(srv.Close)
	leaf, err := srv.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var s *stapler.Stapler
	removed := make(chan error, 1)
	s, err = stapler.New(config.OCSP{OCSPFunctionality: true},
		stapler.WithClock(clk), stapler.WithLogger(testLogger()),
		stapler.WithStore(New(rs.Client(), "fleet:")),
		stapler.WithStatusHook(func(c stapler.StatusChange) {
			if c.To == stapler.StateRevoked {
				removed <- s.Remove(c.ID)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	id, err := s.Add(&leaf.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	r.SetStatus(leaf.Cert.SerialNumber, responder.Revoked(clk.Now().Add(-time.Minute), 1))
	if _, err := s.Test(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-removed:
		if err != nil {
			t.Fatalf("Remove from the hook: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the hook never saw the revocation")
	}
	raw := New(rs.Client(), "fleet:")
	for _, key := range []string{id, id + ".state"} {
		if _, err := raw.Get(ctx, key); !errors.Is(err, cache.ErrCacheMiss) {
			t.Errorf("%s of the certificate removed from the status hook is in Redis: %v, want ErrCacheMiss", key, err)
		}
	}
}
