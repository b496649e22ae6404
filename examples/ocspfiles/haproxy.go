package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// haproxyUpdated is HAProxy's answer to a "set ssl ocsp-response" it
// applied (src/ssl_sock.c, cli_parse_set_ocspresponse, in 2.0 to 2.8).
// Every other answer is an error; HAProxy 2.6.12 answers, for instance,
// "OCSP single response: Certificate ID does not match any certificate or
// issuer." (a response for a certificate it does not serve) and "Unable to
// parse OCSP response." (not DER), both tested against it; the source also
// has "'set ssl ocsp-response' received invalid base64 encoded response.",
// "OCSP single response: missing nextupdate" and "Permission denied" (a
// socket below level admin).
const haproxyUpdated = "OCSP Response updated!"

// maxHAProxyAnswer bounds what is read of an answer.
const maxHAProxyAnswer = 4 << 10

// errHAProxy is an answer other than success.
var errHAProxy = errors.New("haproxy refused the OCSP response")

// dialHAProxy connects to an admin socket: a host:port is TCP, anything
// else (a path) a unix socket.
func dialHAProxy(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	if !strings.Contains(addr, "/") {
		if _, _, err := net.SplitHostPort(addr); err == nil {
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	return d.DialContext(ctx, "unix", addr)
}

// setOCSPResponse sends der to HAProxy's admin socket at addr with "set ssl
// ocsp-response" (in the payload form, "<<" then the base64 on lines of 64
// and an empty line, which HAProxy 2.2 and later read) and checks the answer.
// HAProxy finds the certificate by the response's own CertID.
func setOCSPResponse(ctx context.Context, addr string, der []byte) error {
	conn, err := dialHAProxy(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	var b strings.Builder
	b.WriteString("set ssl ocsp-response <<\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return err
	}
	// In its default (non-interactive) mode HAProxy answers and closes the
	// connection; an answer ends with an empty line.
	answer, err := readHAProxyAnswer(conn)
	if err != nil {
		return err
	}
	return parseHAProxyAnswer(answer)
}

// readHAProxyAnswer reads up to the empty line that ends an answer, or
// the end of the connection.
func readHAProxyAnswer(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxHAProxyAnswer))
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if line == "\n" || (err == io.EOF && b.Len() > 0) {
			return b.String(), nil
		}
		if err == io.EOF {
			return "", errors.New("haproxy closed the connection without an answer")
		}
		if err != nil {
			return b.String(), err
		}
	}
}

// parseHAProxyAnswer returns nil for HAProxy's success answer and an error
// quoting anything else.
func parseHAProxyAnswer(answer string) error {
	a := strings.TrimSpace(answer)
	if a == haproxyUpdated {
		return nil
	}
	if a == "" {
		return fmt.Errorf("%w: empty answer", errHAProxy)
	}
	return fmt.Errorf("%w: %q", errHAProxy, a)
}

// haproxyNotifier tells HAProxy about new responses, in order, one socket
// at a time, retrying a failed update with backoff until it succeeds, a
// newer response replaces it or the response expires.
type haproxyNotifier struct {
	sockets []string
	timeout time.Duration
	log     *slog.Logger
	send    func(ctx context.Context, addr string, der []byte) error
	onSend  func(error)
	// retryMin and retryMax bound the backoff of failed updates.
	retryMin, retryMax time.Duration

	started bool
	mu      sync.Mutex
	pending map[pendingKey]*pendingUpdate
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

type pendingKey struct{ socket, file string }

type pendingUpdate struct {
	der     []byte
	expires time.Time
	due     time.Time
	tries   int
}

func newHAProxyNotifier(sockets []string, timeout time.Duration, log *slog.Logger) *haproxyNotifier {
	return &haproxyNotifier{sockets: sockets, timeout: timeout, log: log, send: setOCSPResponse,
		retryMin: 5 * time.Second, retryMax: 5 * time.Minute,
		pending: map[pendingKey]*pendingUpdate{}, wake: make(chan struct{}, 1),
		done: make(chan struct{}), stopped: make(chan struct{})}
}

// start starts sending; close stops.
func (n *haproxyNotifier) start() {
	n.started = true
	go n.loop()
}

// update queues der, the response now in file, for every socket.
func (n *haproxyNotifier) update(file string, der []byte, expires time.Time) {
	if n == nil {
		return
	}
	n.mu.Lock()
	for _, s := range n.sockets {
		n.pending[pendingKey{s, file}] = &pendingUpdate{der: der, expires: expires}
	}
	n.mu.Unlock()
	n.poke()
}

// forget drops what is queued for file (its response was removed: an
// update that failed must not be retried with it). HAProxy 2.6 has no
// command to withdraw a response; it stops stapling one by itself 5 minutes
// before its nextUpdate.
func (n *haproxyNotifier) forget(file string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	for _, s := range n.sockets {
		delete(n.pending, pendingKey{s, file})
	}
	n.mu.Unlock()
}

func (n *haproxyNotifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *haproxyNotifier) close() {
	if n == nil {
		return
	}
	close(n.done)
	if n.started {
		<-n.stopped
	}
}

func (n *haproxyNotifier) loop() {
	defer close(n.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := n.sendDue()
		timer.Reset(time.Until(next))
		select {
		case <-n.done:
			return
		case <-n.wake:
		case <-timer.C:
		}
	}
}

// sendDue sends every update that is due and returns when the next one is.
func (n *haproxyNotifier) sendDue() time.Time {
	next := time.Now().Add(time.Hour)
	for {
		n.mu.Lock()
		now := time.Now()
		var key pendingKey
		var p *pendingUpdate
		for k, u := range n.pending {
			if !now.Before(u.expires) {
				delete(n.pending, k)
				continue
			}
			if !u.due.After(now) {
				key, p = k, u
				break
			}
			if u.due.Before(next) {
				next = u.due
			}
		}
		n.mu.Unlock()
		if p == nil {
			return next
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
		err := n.send(ctx, key.socket, p.der)
		cancel()
		if n.onSend != nil {
			n.onSend(err)
		}
		n.mu.Lock()
		if n.pending[key] == p { // not replaced or forgotten meanwhile
			if err == nil {
				delete(n.pending, key)
			} else {
				p.tries++
				backoff := min(n.retryMin<<min(p.tries-1, 16), n.retryMax)
				p.due = time.Now().Add(backoff)
				n.log.Error("haproxy: OCSP response not applied; retrying", "socket", key.socket, "file", key.file, "err", err, "retry_in", backoff.String())
			}
		}
		n.mu.Unlock()
		if err == nil {
			n.log.Info("haproxy: OCSP response applied", "socket", key.socket, "file", key.file)
		}
		select {
		case <-n.done:
			return next
		default:
		}
	}
}
