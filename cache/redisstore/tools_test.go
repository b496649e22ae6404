package redisstore

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/staplerkit/ocsp/internal/testtools"
)

// quietRedis drops go-redis's own log lines (dials refused while the tests
// kill and restart servers): a passing run prints only what go test does.
var quietRedis = Logger{}

// TestMain says, in one line, which tests are skipped for want of a tool,
// and keeps go-redis quiet.
func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis)
	testtools.Main(m, "cache/redisstore", testtools.Tool{Name: "redis-server", Tests: "the store and fleet tests"})
}
