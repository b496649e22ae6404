// Package redisstore is a cache.Store in Redis for a fleet of servers that
// serve the same certificates: they share one response per certificate, one
// server at a time queries the responder (cache.Leaser), and a new response
// reaches every server at once through Redis pub/sub (cache.Notifier).
//
// It lives in a module of its own so that the core module keeps its two
// dependencies.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staplerkit/ocsp/cache"
)

// Store keeps values under Prefix+key in Redis. Make it with New.
type Store struct {
	client redis.UniversalClient
	prefix string
	// self tells this Store's own change notifications from others'.
	self string
}

var (
	_ cache.Store    = (*Store)(nil)
	_ cache.Leaser   = (*Store)(nil)
	_ cache.Notifier = (*Store)(nil)
)

// New returns a Store on client (a single node, Sentinel or Cluster client,
// with its own TLS and authentication) that keeps its keys under prefix,
// for example "myapp:ocsp:".
func New(client redis.UniversalClient, prefix string) *Store {
	return &Store{client: client, prefix: prefix, self: randomToken()}
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// channel is where changes are announced.
func (s *Store) channel() string { return s.prefix + "changes" }

// redisKey is where key lives in Redis: under the prefix, with the part of
// the key before its first '.' as a hash tag, so that a certificate's keys
// (its response "ID", its state "ID.state" and its lease) share one Redis
// Cluster slot: a certificate is then on one master, and a fenced write
// (a script over the lease and the value) is one slot's operation.
func (s *Store) redisKey(key string) string {
	base, rest, _ := strings.Cut(key, ".")
	if rest != "" {
		rest = "." + rest
	}
	return s.prefix + "{" + base + "}" + rest
}

// leaseKey is where key's lease lives.
func (s *Store) leaseKey(key string) string { return s.redisKey(key) + ":lease" }

// Get returns the value under key, or cache.ErrCacheMiss. It reads at most
// cache.MaxValueBytes+1 bytes (GETRANGE), so a huge value written by anyone
// costs nothing; such a value is cache.ErrValueTooLarge, and a key of
// another type (a hash, a list) cache.ErrUnusableValue: both are replaced
// at the next Put, and neither is the store being down.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.client.GetRange(ctx, s.redisKey(key), 0, cache.MaxValueBytes).Bytes()
	if errors.Is(err, redis.Nil) || err == nil && len(v) == 0 {
		return nil, cache.ErrCacheMiss // GETRANGE answers "" for a missing key
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
		return nil, fmt.Errorf("%w: %s is not a string (%v)", cache.ErrUnusableValue, s.redisKey(key), err)
	}
	if err != nil {
		return nil, err
	}
	if len(v) > cache.MaxValueBytes {
		return nil, fmt.Errorf("%w: %s", cache.ErrValueTooLarge, s.redisKey(key))
	}
	return v, nil
}

// Put stores value under key and announces the change to the other users.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	if len(value) > cache.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes", cache.ErrValueTooLarge, len(value))
	}
	if err := s.client.Set(ctx, s.redisKey(key), value, 0).Err(); err != nil {
		return err
	}
	return s.publish(ctx, key)
}

// Delete removes key.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.client.Del(ctx, s.redisKey(key)).Err()
}

// lease takes KEYS[1] for ARGV[1] with ARGV[2] ms (SET NX PX). When
// another holds it, a lease without an expiry, or with a longer one than
// asked for, is capped to ARGV[2] ms: no holder, and nobody who can write
// the key, holds a certificate's lease longer than one lease TTL from the
// next server that asks (the store is not trusted).
var lease = redis.NewScript(`
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
	return 1
end
local ttl = redis.call("PTTL", KEYS[1])
if ttl == -1 or ttl > tonumber(ARGV[2]) then
	redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// Lease takes key's lease atomically, with an expiry and a random owner
// token; a lease held by another with no expiry, or a longer one than ttl,
// is made to expire within ttl.
func (s *Store) Lease(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	token := randomToken()
	ms := max(ttl.Milliseconds(), 1)
	n, err := lease.Run(ctx, s.client, []string{s.leaseKey(key)}, token, ms).Int()
	if err != nil {
		return "", false, err
	}
	return token, n == 1, nil
}

// release deletes the lease only if the token still holds it.
var release = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// Release ends key's lease if token still holds it.
func (s *Store) Release(ctx context.Context, key, token string) error {
	return release.Run(ctx, s.client, []string{s.leaseKey(key)}, token).Err()
}

// putLeased sets KEYS[2] only while ARGV[1] holds the lease KEYS[1].
var putLeased = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
	return 0
end
redis.call("SET", KEYS[2], ARGV[2])
return 1`)

// PutLeased stores value under key only while token holds lease's lease
// (one Lua script: the check and the write are atomic), then announces the
// change; otherwise it writes nothing and returns cache.ErrLeaseLost.
func (s *Store) PutLeased(ctx context.Context, lease, token, key string, value []byte) error {
	if len(value) > cache.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes", cache.ErrValueTooLarge, len(value))
	}
	leaseKey, valueKey := s.leaseKey(lease), s.redisKey(key)
	if base, _, _ := strings.Cut(key, "."); base != lease {
		return fmt.Errorf("redisstore: key %q is not fenced by lease %q", key, lease)
	}
	n, err := putLeased.Run(ctx, s.client, []string{leaseKey, valueKey}, token, value).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return cache.ErrLeaseLost
	}
	return s.publish(ctx, key)
}
