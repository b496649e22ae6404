package crlcache

import (
	"math/big"
	"testing"
	"time"
)

// A CRL without a number, after one with a number: ordered by
// thisUpdate, an older one is a rollback.
func TestACRLWithoutANumberIsOrderedByThisUpdate(t *testing.T) {
	a, b := version{big.NewInt(5), time.Unix(1000, 0)}, version{nil, time.Unix(999, 0)}
	if !b.older(a) || a.older(b) {
		t.Fatal("an unnumbered CRL of an earlier thisUpdate is not older")
	}
	if c := (version{nil, time.Unix(1001, 0)}); c.older(a) {
		t.Fatal("an unnumbered CRL of a later thisUpdate is older")
	}
}

// Two numbered CRLs are ordered by their numbers, whatever their
// thisUpdate; at the same number, by thisUpdate.
func TestNumberedCRLsAreOrderedByNumberFirst(t *testing.T) {
	a, b := version{big.NewInt(5), time.Unix(2000, 0)}, version{big.NewInt(6), time.Unix(1000, 0)}
	if !a.older(b) || b.older(a) {
		t.Fatal("a lower number is not older")
	}
	c := version{big.NewInt(6), time.Unix(1001, 0)}
	if !b.older(c) || c.older(b) {
		t.Fatal("at the same number, an earlier thisUpdate is not older")
	}
}
