package redisstore

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// go-redis's own log lines reach the slog handler given, and nothing else.
func TestLoggerRoutesGoRedisLinesToSlog(t *testing.T) {
	var buf bytes.Buffer
	redis.SetLogger(Logger{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	defer redis.SetLogger(quietRedis)
	// Nothing listens on port 1: the pool logs its failed dials.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	c.Ping(context.Background())
	deadline := time.Now().Add(hangLimit)
	for !strings.Contains(buf.String(), "level=WARN") {
		if time.Now().After(deadline) {
			t.Fatalf("go-redis logged nothing through slog: %q", buf.String())
		}
		c.Ping(context.Background())
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(buf.String(), `msg="redis: `) {
		t.Fatalf("log line %q", buf.String())
	}
}
