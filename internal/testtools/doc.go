// Package testtools is what the test binaries of the modules share about
// the outside tools some tests need (openssl, redis-server): where to find
// them and when to skip. For tests only; it knows nothing of OCSP.
package testtools
