// Package prune bounds the caches of what is known about peers, signers
// and responders: it makes room in a map, the stale entries first and
// revocations last. It knows nothing of what the entries mean.
package prune
