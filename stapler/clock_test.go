package stapler

import (
	"context"
	"testing"
)

// A certificate removed while its query was in flight is never put back
// on the scheduler by that query's outcome (which plans the next query).
func TestARemovedCertificateIsNeverScheduledAgain(t *testing.T) {
	e := newEnv(t, on)
	e.wrapAndServe(e.leaf.Certificate)
	e.waitStapled(e.leaf)
	m, err := e.s.lookup(CertificateID(e.leaf.Cert.Raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Remove(m.ID()); err != nil {
		t.Fatal(err)
	}
	// What a refresh in flight does when its outcome lands after Remove.
	e.s.sched.Schedule(m, e.clock.Now())
	if due := e.s.sched.DueAt(m); !due.IsZero() {
		t.Fatalf("a removed certificate was scheduled again, due %v", due)
	}
	o := e.s.query(context.Background(), m)
	e.s.record(m, o)
	if due := e.s.sched.DueAt(m); !due.IsZero() {
		t.Fatalf("a query's outcome scheduled a removed certificate again, due %v", due)
	}
}
