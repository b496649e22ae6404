package stapler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/staplerkit/ocsp/internal/ocspfetch"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// oidTLSFeature is the RFC 7633 TLS feature extension (id-pe-tlsfeature).
var oidTLSFeature = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}

// Add registers a certificate (for example one that a GetConfigForClient
// will serve later) and starts fetching its staple. It returns the
// certificate's ID.
func (s *Stapler) Add(c *tls.Certificate) (string, error) {
	if c == nil || len(c.Certificate) == 0 {
		return "", errors.New("stapler: empty certificate")
	}
	m := s.add(c)
	if m.leaf == nil {
		return m.ID(), fmt.Errorf("stapler: certificate %s does not parse", m.ID())
	}
	return m.ID(), nil
}

// add returns the state of c's leaf, registering it on first sight.
func (s *Stapler) add(c *tls.Certificate) *managed {
	if m := s.index.get(c.Certificate[0]); m != nil {
		return m
	}
	return s.addAll([]*tls.Certificate{c}, nil)[0]
}

// addAll registers certificates in one batch (one pass over the index, not
// one per certificate) and returns the state of each, in order. homes, when
// not nil, are the wrapped config's list entries of certs (which never
// retire): a certificate seen for the first time gets its view made for
// its entry.
func (s *Stapler) addAll(certs []*tls.Certificate, homes []*listEntry) []*managed {
	listed := homes != nil
	out := make([]*managed, len(certs))
	s.mu.Lock()
	defer s.mu.Unlock()
	var fresh []*managed
	batch := map[[32]byte]*managed{} // by ID: the same leaf twice in one batch
	for i, c := range certs {
		der := c.Certificate[0]
		if m := s.index.get(der); m != nil {
			out[i] = m
			continue
		}
		key := sha256.Sum256(der)
		if m := batch[key]; m != nil {
			out[i] = m
			continue
		}
		var home *listEntry
		if homes != nil {
			home = homes[i]
		}
		out[i] = s.newManaged(c, key, home)
		batch[key] = out[i]
		fresh = append(fresh, out[i])
	}
	s.index.putAll(fresh)
	s.order = append(s.order, fresh...)
	for _, m := range fresh {
		m.lastServed.Store(s.clock.Now().Unix())
	}
	if s.byKey != nil {
		for _, m := range fresh {
			s.byKey[m.key()] = m
		}
	}
	if listed { // marked before the bound is applied: listed certificates never retire
		for _, m := range out {
			m.listed.Store(true)
		}
	}
	s.boundLocked(fresh)
	now := s.clock.Now()
	on := s.cfg.Load().OCSPFunctionality
	for _, m := range fresh {
		if m.leaf == nil {
			continue
		}
		if !s.applicable(m) {
			s.log.Info("ocsp: certificate has no OCSP responder URL; not stapled", "id", m.ID(), "subject", m.leaf.Subject.String())
			continue
		}
		if on && m.settings.Load().stapling.Enabled && !s.closed.Load() { // closed: no fetch would open the gate
			m.arm()
			s.sched.Schedule(m, now)
		}
	}
	return out
}

// newManaged makes the state of a certificate seen for the first time, its
// view made for home (nil for an application's GetCertificate's).
// Callers hold s.mu.
func (s *Stapler) newManaged(c *tls.Certificate, key [32]byte, home *listEntry) *managed {
	der := c.Certificate[0]
	m := &managed{keyPrefix: prefixOf(key), der: der}
	m.settings.Store(s.defaultSettings)
	leaf := c.Leaf
	if leaf == nil || !sameBytes(leaf.Raw, der) || !serialMatches(leaf, der) {
		var err error
		if leaf, err = x509.ParseCertificate(der); err != nil {
			s.log.Warn("ocsp: certificate does not parse; serving it without a staple", "id", m.ID(), "err", err)
			leaf = nil
		}
	}
	if leaf != nil {
		m.leaf = leaf
		m.mustStaple = hasMustStaple(leaf)
		m.issuer, m.issuerChecked = s.chainIssuer(c, leaf)
	}
	s.remembered.restore(m, key, &s.revokedCount)
	v := m.viewFromLocked(c, home) // no staple yet; known revoked, perhaps
	if v.revoked {
		s.revokedCount.Add(1)
	}
	m.view.Store(v)
	return m
}

// serialMatches reports whether der's serial number is leaf's. A Leaf
// parsed before the application wrote another certificate over the same
// bytes still has the old certificate's serial, and its staple would be
// asked for: such a Leaf is parsed again. (Reading the serial is a few
// steps into the DER; parsing it all again would cost every registration.)
func serialMatches(leaf *x509.Certificate, der []byte) bool {
	in := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	serial := new(big.Int)
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !tbs.ReadASN1Integer(serial) {
		return false
	}
	return leaf.SerialNumber != nil && leaf.SerialNumber.Cmp(serial) == 0
}

// learnIssuer gives m the issuer c's chain holds, when m has none yet: a
// certificate first wrapped without its issuer is stapled once a config
// lists it with one.
func (s *Stapler) learnIssuer(m *managed, c *tls.Certificate) {
	if m.leaf == nil || len(c.Certificate) < 2 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m.mu.Lock()
	known := m.issuer != nil
	m.mu.Unlock()
	if known {
		return
	}
	issuer, checked := s.chainIssuer(c, m.leaf)
	if issuer == nil {
		return
	}
	m.mu.Lock()
	if m.issuer == nil {
		m.issuer, m.issuerChecked = issuer, checked
	}
	m.mu.Unlock()
}

// chainIssuer picks the leaf's issuer from its chain or the WithIssuer
// certificates by name, and reports whether the match is already certain:
// when the leaf's authority key ID is the issuer's subject key ID. Otherwise
// issuerFor checks the signature later, off the registration path (a
// signature check per certificate would cost seconds at 100,000). Parsed
// issuers are shared: the leaves of one CA hold one *x509.Certificate.
// Callers hold s.mu.
func (s *Stapler) chainIssuer(c *tls.Certificate, leaf *x509.Certificate) (*x509.Certificate, bool) {
	candidates := s.opts.issuers
	if len(c.Certificate) > 1 {
		issuer := s.issuers[string(c.Certificate[1])]
		if issuer == nil {
			var err error
			if issuer, err = x509.ParseCertificate(c.Certificate[1]); err == nil {
				s.issuers[string(c.Certificate[1])] = issuer
			}
		}
		if issuer != nil {
			candidates = append([]*x509.Certificate{issuer}, candidates...)
		}
	}
	for _, issuer := range candidates {
		if bytes.Equal(issuer.RawSubject, leaf.RawIssuer) {
			keyMatch := len(leaf.AuthorityKeyId) > 0 && bytes.Equal(leaf.AuthorityKeyId, issuer.SubjectKeyId)
			return issuer, keyMatch
		}
	}
	return nil, false
}

func hasMustStaple(leaf *x509.Certificate) bool {
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidTLSFeature) {
			// The value is a SEQUENCE of INTEGER features; 5 is status_request.
			var features []int
			if _, err := asn1.Unmarshal(ext.Value, &features); err != nil {
				return false
			}
			for _, f := range features {
				if f == 5 {
					return true
				}
			}
		}
	}
	return false
}

// urlFor is the responder URL in use for m.
func (s *Stapler) urlFor(m *managed) string {
	if m.leaf == nil {
		return s.opts.responderURL
	}
	return ocspfetch.Resolve(m.leaf, s.opts.responderURL, s.opts.overrides)
}

// lookup returns the managed certificate with the given ID; an empty ID
// means the only one. Without a fleet it scans: lookups by ID serve the
// admin API, and a map by ID would cost every certificate its memory. A
// fleet looks certificates up on every change notification, so it keeps
// the map.
func (s *Stapler) lookup(id string) (*managed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" && len(s.order) == 1 {
		return s.order[0], nil
	}
	key, ok := parseID(id)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCertificate, truncateID(id))
	}
	if s.byKey != nil {
		if m := s.byKey[key]; m != nil {
			return m, nil
		}
	}
	prefix := prefixOf(key)
	for _, m := range s.order {
		if m.keyPrefix == prefix && m.key() == key {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownCertificate, id)
}

// Remove stops managing a certificate that is no longer served (after a
// rotation, say): it is no longer refreshed and leaves Status. If a
// handshake serves it again, it is managed afresh, as on first sight.
//
// Remove means forget: with a store (WithStore), the certificate's stored
// values are deleted too, best effort and logged on failure, and from the
// moment Remove is called this server writes nothing of the certificate's
// to the store again: not the result of a query already in flight (a Test,
// a scheduled refresh), nor the response whose status hook called Remove.
// A store of this server's own (a DirStore) has the response deleted in
// the background, after any write still pending for it, and at the latest
// by Close; served again right after Remove, the certificate is fetched
// afresh, not restored from the file being deleted. A shared store (a
// cache.Leaser) has the response and the fleet state deleted before Remove
// returns, within 10 seconds. Other servers of a fleet still serving the
// certificate are not told: they keep their staple and store it anew at
// their next refresh. Certificates retired for want of handshakes
// (WithIdleRetirement) keep their stored values.
//
// Remove works after Close too: the certificate leaves Status and its
// stored values are deleted before Remove returns, within 10 seconds.
func (s *Stapler) Remove(id string) error {
	m, err := s.lookup(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	removed := s.removeLocked(m)
	s.mu.Unlock()
	if removed {
		s.src.forget(m)
	}
	return nil
}

// removeLocked stops managing m. Callers hold s.mu.
func (s *Stapler) removeLocked(m *managed) bool {
	// Under m.mu, which publishLocked holds while it counts revocations:
	// the count stays exact whatever runs at the same time.
	m.mu.Lock()
	if m.removed.Swap(true) {
		m.mu.Unlock()
		return false
	}
	if v := m.view.Load(); v != nil && v.revoked {
		s.revokedCount.Add(-1)
	}
	s.remembered.keep(m, &s.revokedCount)
	if s.staples != nil {
		s.staples.changed(m)
	}
	m.mu.Unlock()
	s.order = slices.DeleteFunc(s.order, func(x *managed) bool { return x == m })
	if s.byKey != nil {
		delete(s.byKey, m.key())
	}
	s.index.remove(m)
	s.sched.Unschedule(m)
	m.disarm()
	return true
}

// managedList returns the managed certificates in the order they were found.
func (s *Stapler) managedList() []*managed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*managed(nil), s.order...)
}

// parseID decodes a certificate ID: exactly 64 lower-case hex digits, the
// form CertificateID makes. Anything else (longer, shorter, upper case,
// not hex) is no ID.
func parseID(id string) ([32]byte, bool) {
	var key [32]byte
	if len(id) != 2*len(key) {
		return key, false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return key, false
		}
	}
	_, err := hex.Decode(key[:], []byte(id))
	return key, err == nil
}

// truncateID shortens an ID from outside for an error message.
func truncateID(id string) string {
	if len(id) > 80 {
		return id[:80] + "..."
	}
	return id
}

// Ready waits until every certificate known so far has had its first
// attempt: stapled, or failed with a reason that Status reports (a
// certificate with OCSP off, stapling disabled or no responder URL has
// nothing to wait for). Call it after Wrap, before taking traffic, so that
// the first handshakes are stapled; bound it with ctx, whose error it
// returns when it ends first.
func (s *Stapler) Ready(ctx context.Context) error {
	for _, m := range s.managedList() {
		g := m.pending.Load()
		if g == nil {
			continue
		}
		select {
		case <-g.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
