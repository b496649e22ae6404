// Package ocsptest holds the fixture the tests of OCSP verification share:
// a test CA, a leaf, a delegated responder and signed responses about the
// leaf. For tests only: no production code may import it, and it knows
// nothing of stapling, stores or handshakes.
package ocsptest
