package main

import (
	"testing"

	"github.com/staplerkit/ocsp/internal/testtools"
)

// TestMain says, in one line, which tests are skipped for want of a tool.
func TestMain(m *testing.M) {
	testtools.Main(m, "examples/server", testtools.Tool{Name: "openssl", Tests: "the interoperability tests"},
		testtools.Tool{Name: "redis-server", Tests: "the two-server Redis test"})
}
