package redisstore

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/responder"
	"github.com/staplerkit/ocsp/stapler"
)

// TestAnUnverifiedResponseIsNeverSharedWithTheFleet protects "an unverified
// answer is neither stored nor shared" (stapler/apply.go) on the path of a
// response waiting to be shared outside a refresh.
//
// A node gets a pushed (verified) response while another server holds the
// certificate's lease: the push waits to be shared (retries from 1 s).
// Meanwhile skip_verify is turned on for the certificate and a Test brings
// a newer answer from a signer the node cannot verify, installed
// unverified (and, as apply says, neither stored nor shared). When the lease is free, the
// waiting share must not write the unverified staple to the store: the
// share takes whatever the certificate holds then, verified or not.
func TestAnUnverifiedResponseIsNeverSharedWithTheFleet(t *testing.T) {
	f := newFleet(t, 0, 1)
	leaf := f.leaves[0]
	id := stapler.CertificateID(leaf.Cert.Raw)
	ctx := context.Background()
	s := f.addNode()
	f.waitFor("the node to staple", func() bool { return f.staple(0, 0) != nil })

	store := New(f.redis.Client(), "fleet:")
	key := store.redisKey(id)
	// Another server holds the lease (it is querying).
	var token string
	f.waitFor("the node's first refresh to release the lease", func() bool {
		tok, ok, err := store.Lease(ctx, id, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		token = tok
		return ok
	})
	// A verified response is pushed: it waits for the lease.
	f.clock.Advance(time.Minute)
	pushed, _, err := fetchDirect(f, leaf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(ctx, id, pushed); err != nil {
		t.Fatal(err)
	}
	// skip_verify is turned on, and a Test's answer, newer, signed by a
	// signer the node cannot verify, is installed unverified, neither
	// stored nor shared.
	if err := s.SetStapling(id, config.Stapling{Enabled: true, SkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.r.SetFault(responder.Fault{Kind: responder.FaultUnauthorizedSigner})
	if _, err := s.Test(ctx, id); err != nil {
		t.Fatal(err)
	}
	unverified := f.staple(0, 0)
	if bytes.Equal(unverified, pushed) {
		t.Fatal("the Test's unverified answer was not installed")
	}
	// The other server is done.
	if err := store.Release(ctx, id, token); err != nil {
		t.Fatal(err)
	}
	// The share waiting since the push retries within a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		value, err := f.redis.Client().Get(ctx, key).Bytes()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		if bytes.Contains(value, unverified) {
			t.Fatalf("the unverified staple (installed under skip_verify by a Test) was written to the fleet's store by the share of the response pushed before it")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
