package stapler

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
)

// StapleChange is what the staple hook receives: the staple a certificate
// is served with from now on.
type StapleChange struct {
	ID string
	// Staple is the DER response handshakes are stapled with from now on,
	// verified as every staple is; nil when there is none (withdrawn, or
	// the certificate removed). Shared: do not modify it.
	Staple []byte
	// Expires is when Staple stops being served (zero when Staple is nil):
	// a copy kept elsewhere (a file for another server) must not be used
	// past it. No second call comes when that time passes.
	Expires time.Time
	// Status is the certificate's status when the call is made.
	Status CertificateStatus
}

// WithStapleHook calls f whenever the staple a certificate is served with
// changes: a newer response installed (fetched, pushed, or adopted from a
// store), a staple withdrawn, stapling or OCSP turned off or on, the
// certificate removed. Calls come one at a time, from a goroutine of the
// Stapler's own, in the order the changes were made; changes that follow
// one another before f is called for the first are reported once, with
// the latest staple (f always sees what handshakes are served when it is
// called, never an older staple after a newer one, and its last call about
// a certificate says what is served). f may take its time (write a file,
// reload a server) and may call any of the Stapler's methods, Close
// included; no call is made once Close has returned (but the one that
// called Close). It is how
// examples/ocspfiles keeps response files for nginx and HAProxy. A process
// that keeps staples for other servers serves no handshakes of its own:
// give it WithIdleRetirement(0), or its certificates retire as idle.
func WithStapleHook(f func(StapleChange)) Option {
	return func(o *options) { o.stapleHook = f }
}

// stapleNotifier delivers staple changes to the staple hook, coalesced per
// certificate, on one goroutine. A change is noted on the registration
// that made it, but reported for the certificate's current registration:
// a query that ends on a registration removed meanwhile must not have the
// last word about a certificate served again since.
type stapleNotifier struct {
	hook    func(StapleChange)
	mu      sync.Mutex
	pending [][32]byte            // certificates (by key), in the order of their first change
	queued  map[[32]byte]*managed // a registration of each pending certificate
	wake    chan struct{}         // one token: pending is not empty
	done    chan struct{}         // closed when run returns
	goid    atomic.Uint64         // the goroutine run is on (the hook's)
}

func newStapleNotifier(hook func(StapleChange)) *stapleNotifier {
	return &stapleNotifier{hook: hook, queued: map[[32]byte]*managed{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// changed notes that what m's certificate is served with may have
// changed. It never blocks: it runs under m.mu, on the refresh path.
func (n *stapleNotifier) changed(m *managed) {
	key := m.key()
	n.mu.Lock()
	if _, ok := n.queued[key]; !ok {
		n.pending = append(n.pending, key)
	}
	n.queued[key] = m
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run calls the hook for every change noted, until s closes.
func (n *stapleNotifier) run(s *Stapler) {
	n.goid.Store(goroutineID())
	defer close(n.done)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-n.wake:
		}
		n.mu.Lock()
		batch := make([]*managed, 0, len(n.pending))
		for _, key := range n.pending {
			batch = append(batch, n.queued[key])
		}
		n.pending = nil
		clear(n.queued)
		n.mu.Unlock()
		for _, m := range batch {
			if s.ctx.Err() != nil {
				return
			}
			if cur := s.index.get(m.der); cur != nil {
				m = cur // the certificate's registration now
			}
			n.hook(s.stapleChange(m))
		}
	}
}

// onHookGoroutine reports whether the caller is the hook's goroutine (a
// Stapler method called by the hook).
func (n *stapleNotifier) onHookGoroutine() bool {
	return n.goid.Load() == goroutineID()
}

// goroutineID is the ID of the calling goroutine, read from its stack
// header ("goroutine 123 [running]:"): only Close and the notifier's start
// read it, to tell whether Close runs inside the staple hook.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b, _ = bytes.CutPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

// servedStaple is the staple a handshake for m is served with now: none
// when m is removed, stapling is off for it, or OCSP is off.
func (s *Stapler) servedStaple(m *managed) (raw []byte, expires time.Time, ok bool) {
	v := m.view.Load()
	if v == nil || !v.hasStaple || m.removed.Load() || !m.settings.Load().stapling.Enabled || !s.cfg.Load().OCSPFunctionality || !s.usable(v) {
		return nil, time.Time{}, false
	}
	return v.cert.OCSPStaple, s.servedUntil(v), true
}

// stapleChange is what m is served with now.
func (s *Stapler) stapleChange(m *managed) StapleChange {
	c := StapleChange{ID: m.ID(), Status: s.statusOf(m)}
	if raw, expires, ok := s.servedStaple(m); ok {
		c.Staple, c.Expires = raw, expires
	}
	return c
}

// Staple returns the DER response the certificate with the given ID is
// stapled with now, and when it stops being served; ErrNoStaple when none
// is (none fetched yet, expired, withdrawn, stapling or OCSP turned off),
// ErrUnknownCertificate for an unknown ID. The bytes are shared: do not modify them.
func (s *Stapler) Staple(id string) ([]byte, time.Time, error) {
	m, err := s.lookup(id)
	if err != nil {
		return nil, time.Time{}, err
	}
	raw, expires, ok := s.servedStaple(m)
	if !ok {
		return nil, time.Time{}, fmt.Errorf("certificate %s: %w", m.ID(), ErrNoStaple)
	}
	return raw, expires, nil
}

// Push gives the Stapler a DER OCSP response for the certificate with the
// given ID, obtained some other way (a sidecar or a deploy job, for a
// server that cannot reach its responder; nginx's ssl_stapling_file and
// HAProxy's "set ssl ocsp-response" do the same). It is verified exactly
// as a fetched response is, with the certificate's settings (a delegated
// signer is checked at the responder within ctx, when it can be reached),
// and it is subject to the same rules: an answer older than what is
// known is refused with ErrOlderResponse, an unknown answer with
// ErrUnknownStatus. An accepted response is stapled from the next
// handshake on (while OCSP and the certificate's stapling are on: it is
// kept meanwhile), kept in the store (and shared with a fleet), and the
// next refresh is planned from it, as after a query. A refused one changes
// nothing: it is not a failed query, and starts no recovery.
func (s *Stapler) Push(ctx context.Context, id string, der []byte) (CertificateStatus, error) {
	m, err := s.lookup(id)
	if err != nil {
		return CertificateStatus{}, err
	}
	if s.closed.Load() {
		return s.statusOf(m), ErrClosed
	}
	if m.leaf == nil {
		return s.statusOf(m), fmt.Errorf("certificate %s: the leaf does not parse", m.ID())
	}
	issuer, err := s.issuerFor(ctx, m)
	if err != nil {
		return s.statusOf(m), m.fetchError("", err)
	}
	now := s.clock.Now()
	e, err := s.verifyFor(ctx, m, issuer, der, now, now)
	switch {
	case err != nil:
		return s.statusOf(m), fmt.Errorf("pushed response for %s: %w", m.ID(), err)
	case e.Status == record.Unknown:
		return s.statusOf(m), fmt.Errorf("pushed response for %s: %w", m.ID(), ErrUnknownStatus)
	}
	o := &outcome{e: e, unverified: e.Unverified, pushed: true}
	s.record(m, o)
	if !o.installed.Load() {
		if o.unverified && !m.settings.Load().stapling.SkipVerify {
			return s.statusOf(m), fmt.Errorf("pushed response for %s: %w", m.ID(), errUnverified)
		}
		return s.statusOf(m), fmt.Errorf("pushed response for %s: %w", m.ID(), ErrOlderResponse)
	}
	return s.statusOf(m), nil
}
