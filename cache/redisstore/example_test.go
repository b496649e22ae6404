package redisstore_test

import (
	"log"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/staplerkit/ocsp/cache/redisstore"
	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/stapler"
)

// Servers that share their staples through Redis (docs/fleets.md shows
// this body; compiled, not run, as it needs a Redis).
func ExampleNew() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"10.0.0.5:6379"}}) // single node, Sentinel or Cluster
	s, err := stapler.New(config.OCSP{OCSPFunctionality: true}, stapler.WithStore(redisstore.New(client, "myapp:ocsp:")))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
}

// go-redis's own log lines, to log/slog at WARN (docs/fleets.md).
func ExampleLogger() {
	redis.SetLogger(redisstore.Logger{Logger: slog.Default()}) // once, before making clients
}
