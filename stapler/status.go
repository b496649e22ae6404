package stapler

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"github.com/staplerkit/ocsp/internal/record"
)

// State is a certificate's stapling state, as Status reports it. There is
// always an explicit state: "none" is never mistaken for good.
type State string

const (
	// StateNone: no response yet.
	StateNone State = "none"
	// StateGood: the latest response says good.
	StateGood State = "good"
	// StateRevoked: the latest response says revoked.
	StateRevoked State = "revoked"
	// StateUnknown: the latest response says the responder does not know
	// the certificate (never stapled).
	StateUnknown State = "unknown"
	// StateFailed: the latest query and all its recovery tries failed; or
	// no answer was had yet and the latest query failed (nothing is
	// stapled: from the first failure, not after the recovery tries).
	StateFailed State = "failed"
	// StateExpired: the certificate is past its NotAfter and is no longer
	// queried.
	StateExpired State = "expired"
	// StateDisabled: OCSP is off, globally or for this certificate.
	StateDisabled State = "disabled"
	// StateNotApplicable: the certificate has no responder URL, or does not parse.
	StateNotApplicable State = "not_applicable"
)

// CertificateStatus is the documented status object of one certificate
// (its fields first, as documented) plus what an operator needs to see.
type CertificateStatus struct {
	config.Status
	// ID is the hex SHA-256 of the leaf DER.
	ID string `json:"id"`
	// Subject and Serial (hex) name the certificate.
	Subject string `json:"subject"`
	Serial  string `json:"serial"`
	// SNIs are the leaf's DNS names.
	SNIs  []string `json:"snis"`
	State State    `json:"state"`
	// AIAResponderURL is the certificate's own AIA OCSP URL, shown when
	// WithResponderOverrides replaced it (ResponderURL is then the
	// responder asked, empty when the override disables fetching).
	AIAResponderURL string `json:"aia_responder_url,omitempty"`
	// Stapled says a response is being stapled now; StapleExpires is when
	// that stops unless it is refreshed.
	Stapled       bool            `json:"stapled"`
	StapleExpires config.HTTPDate `json:"staple_expires,omitzero"`
	LastAttempt   config.HTTPDate `json:"last_attempt,omitzero"`
	LastSuccess   config.HTTPDate `json:"last_success,omitzero"`
	// LastServed is when a handshake last served the certificate (to the
	// second; its registration until then).
	LastServed  config.HTTPDate `json:"last_served,omitzero"`
	NextRefresh config.HTTPDate `json:"next_refresh,omitzero"`
	// LastError is why the latest query failed; empty after a success.
	LastError string `json:"last_error,omitempty"`
	// Queries counts the queries answered or failed so far.
	Queries int `json:"queries"`
	// Tries counts the failed queries of the current recovery.
	Tries  int    `json:"tries"`
	Policy string `json:"policy"`
	// StoreError says why this certificate's keys in the shared store
	// could not be reached at the last try; while it is set, this server
	// queries the responder on its own for this certificate (the others,
	// whose keys may live elsewhere, as on another Redis Cluster master,
	// go on coordinating). It clears at the next successful store access.
	StoreError string          `json:"store_error,omitempty"`
	Stapling   config.Stapling `json:"ocsp_stapling"`
}

// StatusChange is what the status hook receives.
type StatusChange struct {
	ID       string
	From, To State
	Status   CertificateStatus
}

// Status returns the status of every managed certificate, in the order the
// Stapler found them.
func (s *Stapler) Status() []CertificateStatus {
	list := s.managedList()
	out := make([]CertificateStatus, 0, len(list))
	for _, m := range list {
		out = append(out, s.statusOf(m))
	}
	return out
}

// StatusOf returns the status of one certificate; an empty id means the
// only managed certificate.
func (s *Stapler) StatusOf(id string) (CertificateStatus, error) {
	m, err := s.lookup(id)
	if err != nil {
		return CertificateStatus{}, err
	}
	return s.statusOf(m), nil
}

func (s *Stapler) statusOf(m *managed) CertificateStatus {
	st := m.settings.Load()
	cs := CertificateStatus{
		ID:       m.ID(),
		Policy:   m.policy(s.opts.policy).String(),
		Stapling: st.stapling,
	}
	cs.ResponderURL = s.urlFor(m)
	if m.leaf != nil {
		if own := ocspfetch.ResponderURL(m.leaf); own != cs.ResponderURL && s.overridden(m.leaf) {
			cs.AIAResponderURL = own
		}
		cs.Subject = m.leaf.Subject.String()
		cs.Serial = fmt.Sprintf("%x", m.leaf.SerialNumber)
		cs.SNIs = m.leaf.DNSNames
	}
	now := s.clock.Now()
	m.mu.Lock()
	cs.State = m.stateLocked().State()
	if m.latest != nil {
		fillStatus(&cs.Status, m.latest)
	}
	if m.entry != nil && m.entry.Usable(now) {
		cs.Stapled = true
		cs.StapleExpires = config.Date(m.entry.Expires.Time())
	}
	cs.LastAttempt = config.Date(m.lastAttempt.Time())
	cs.LastSuccess = config.Date(m.lastSuccess.Time())
	cs.LastServed = config.Date(time.Unix(m.lastServed.Load(), 0))
	if m.lastErr != nil {
		cs.LastError = m.lastErr.Error()
	}
	cs.Tries = int(m.tries)
	cs.Queries = int(m.queries)
	m.mu.Unlock()
	if next := s.sched.Next(m); !next.IsZero() {
		// A query due is running now, or about to: never a time past.
		if next.Before(now) {
			next = now
		}
		cs.NextRefresh = config.Date(next)
	}
	if err := s.src.storeError(m); err != nil {
		cs.StoreError = err.Error()
	}
	switch {
	case !s.applicable(m):
		cs.State = StateNotApplicable
	case !s.cfg.Load().OCSPFunctionality || !st.stapling.Enabled:
		cs.State, cs.Stapled, cs.NextRefresh = StateDisabled, false, config.HTTPDate{}
	}
	return cs
}

func fillStatus(st *config.Status, e *record.Entry) {
	st.CertStatus = e.Status.String()
	st.ProducedAt = config.Date(e.ProducedAt.Time())
	st.ThisUpdate = config.Date(e.ThisUpdate.Time())
	st.NextUpdate = config.Date(e.NextUpdate.Time())
	if e.Status == record.Revoked {
		st.RevocationTime = config.Date(e.RevokedAt.Time())
	}
}

// Test queries the responder for one certificate now (an empty id means the
// only one) and returns the status it answered, as POST /v1/ocsp/test does.
// When OCSP is on, the answer is also cached and stapled as a scheduled
// refresh would, and Test never returns an answer it did not cache: a
// valid answer older than the one held (a stale cache, a replay) is
// refused as a scheduled refresh refuses it, and Test returns the status
// as it stands and a *FetchError matching ErrOlderResponse. On failure it
// returns the certificate's status as it stands and an error:
// ErrUnknownCertificate for an unknown id, ErrNoResponderURL (wrapped,
// naming the certificate) for a certificate without a responder and for
// an empty id while no certificate is managed, ErrClosed, ctx's error, or
// the failed query's *FetchError, whose Err matches ErrHTTPStatus,
// ErrWrongCertificate and the package's other sentinels.
func (s *Stapler) Test(ctx context.Context, id string) (CertificateStatus, error) {
	if id == "" && len(s.managedList()) == 0 {
		return CertificateStatus{}, fmt.Errorf("no certificate is managed: %w", ErrNoResponderURL)
	}
	m, err := s.lookup(id)
	if err != nil {
		return CertificateStatus{}, err
	}
	if !s.applicable(m) {
		return s.statusOf(m), fmt.Errorf("certificate %s: %w", m.ID(), ErrNoResponderURL)
	}
	if s.closed.Load() {
		return s.statusOf(m), ErrClosed
	}
	o := s.query(ctx, m)
	e, err := o.e, o.err
	if err != nil {
		return s.statusOf(m), err
	}
	if s.cfg.Load().OCSPFunctionality {
		s.record(m, o)
		held := o.installed.Load()
		// An unknown status is never installed, but it is the latest
		// cached status (Status reports it): it is returned. Any other
		// answer not held now was refused (older than held).
		if !held && e.Status != record.Unknown {
			err := m.fetchError(s.urlFor(m), ErrOlderResponse)
			if o.unverified {
				err = m.fetchError(s.urlFor(m), errUnverified)
			}
			return s.statusOf(m), err
		}
	}
	cs := s.statusOf(m)
	cs.Status = config.Status{ResponderURL: s.urlFor(m)}
	fillStatus(&cs.Status, e)
	return cs, nil
}

// errUnverified: a Test's answer was fetched under skip_verify, turned off
// while it was in flight; its signature was never checked, so it was not
// installed.
var errUnverified = errors.New("response fetched unverified while skip_verify was turned off; not installed")

// overridden reports whether a responder override names one of leaf's AIA
// OCSP URLs.
func (s *Stapler) overridden(leaf *x509.Certificate) bool {
	for _, u := range leaf.OCSPServer {
		if _, ok := s.opts.overrides[u]; ok {
			return true
		}
	}
	return false
}
