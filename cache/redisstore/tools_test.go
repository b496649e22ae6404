package redisstore

import (
	"testing"

	"github.com/staplerkit/ocsp/internal/testtools"
)

// TestMain says, in one line, which tests are skipped for want of a tool.
func TestMain(m *testing.M) {
	testtools.Main(m, "cache/redisstore", testtools.Tool{Name: "redis-server", Tests: "the store and fleet tests"})
}
