package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Logger routes go-redis's own log lines (a dial that failed, a sentinel
// that switched masters) to a log/slog logger, at WARN, instead of the
// standard library's log package on stderr. Install it once, before making
// clients:
//
//	redis.SetLogger(redisstore.Logger{Logger: slog.Default()})
//
// A nil Logger drops them.
type Logger struct {
	Logger *slog.Logger
}

// Printf implements go-redis's logging interface.
func (l Logger) Printf(ctx context.Context, format string, v ...any) {
	if l.Logger == nil {
		return
	}
	l.Logger.WarnContext(ctx, "redis: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}
