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

// Get returns the value under key, or cache.ErrCacheMiss. It reads at most
// cache.MaxValueBytes+1 bytes (GETRANGE), so a huge value written by anyone
// costs nothing; such a value is cache.ErrValueTooLarge.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.client.GetRange(ctx, s.prefix+key, 0, cache.MaxValueBytes).Bytes()
	if errors.Is(err, redis.Nil) || err == nil && len(v) == 0 {
		return nil, cache.ErrCacheMiss // GETRANGE answers "" for a missing key
	}
	if err != nil {
		return nil, err
	}
	if len(v) > cache.MaxValueBytes {
		return nil, fmt.Errorf("%w: %s%s", cache.ErrValueTooLarge, s.prefix, key)
	}
	return v, nil
}

// Put stores value under key and announces the change to the other users.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	if len(value) > cache.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes", cache.ErrValueTooLarge, len(value))
	}
	if err := s.client.Set(ctx, s.prefix+key, value, 0).Err(); err != nil {
		return err
	}
	return s.client.Publish(ctx, s.channel(), s.self+" "+key).Err()
}

// Delete removes key.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.client.Del(ctx, s.prefix+key).Err()
}

// Lease takes key's lease with SET NX PX: atomic, with an expiry, and a
// random owner token.
func (s *Store) Lease(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	token := randomToken()
	ok, err := s.client.SetNX(ctx, s.prefix+key+":lease", token, ttl).Result()
	if err != nil {
		return "", false, err
	}
	return token, ok, nil
}

// release deletes the lease only if the token still holds it.
var release = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// Release ends key's lease if token still holds it.
func (s *Store) Release(ctx context.Context, key, token string) error {
	return release.Run(ctx, s.client, []string{s.prefix + key + ":lease"}, token).Err()
}

// Subscribe calls f with every key another Store Put, until ctx ends. The
// client reconnects and subscribes again by itself after a failure.
func (s *Store) Subscribe(ctx context.Context, f func(key string)) error {
	sub := s.client.Subscribe(ctx, s.channel())
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg, ok := <-ch:
			if !ok {
				return errors.New("redisstore: subscription closed")
			}
			from, key, found := strings.Cut(msg.Payload, " ")
			if found && from != s.self {
				f(key)
			}
		}
	}
}
