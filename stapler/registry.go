package stapler

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
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
		return m.id, fmt.Errorf("stapler: certificate %s does not parse", m.id)
	}
	return m.id, nil
}

// add returns the state of c's leaf, registering it on first sight.
func (s *Stapler) add(c *tls.Certificate) *managed {
	der := c.Certificate[0]
	if m := s.index.get(der); m != nil {
		return m
	}
	id := CertificateID(der)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.byID[id]; m != nil {
		return m
	}
	m := &managed{id: id, der: der, orig: c, index: -1}
	m.settings.Store(&settings{stapling: s.opts.defaultStapling})
	leaf := c.Leaf
	if leaf == nil || !bytes.Equal(leaf.Raw, der) {
		var err error
		if leaf, err = x509.ParseCertificate(der); err != nil {
			s.log.Warn("ocsp: certificate does not parse; serving it without a staple", "id", m.id, "err", err)
			leaf = nil
		}
	}
	if leaf != nil {
		m.leaf = leaf
		m.url = responderURL(leaf)
		m.mustStaple = hasMustStaple(leaf)
		m.issuer = s.chainIssuer(c, leaf)
	}
	m.publishLocked()
	s.index.put(der, m)
	s.byID[m.id] = m
	s.order = append(s.order, m)
	if m.leaf == nil {
		return m
	}
	if s.urlFor(m) == "" {
		s.log.Info("ocsp: certificate has no OCSP responder URL; not stapled", "id", m.id, "subject", leaf.Subject.String())
		return m
	}
	if s.cfg.Load().OCSPFunctionality && m.settings.Load().stapling.Enabled {
		m.arm()
		s.sched.schedule(m, s.clock.Now())
	}
	return m
}

// chainIssuer picks the leaf's likely issuer, by name, from its chain or the
// WithIssuer certificates; issuerFor checks the signature later, off the
// registration path. Parsed issuers are shared: thousands of leaves of one
// CA hold one *x509.Certificate. Callers hold s.mu.
func (s *Stapler) chainIssuer(c *tls.Certificate, leaf *x509.Certificate) *x509.Certificate {
	if len(c.Certificate) > 1 {
		issuer := s.issuers[string(c.Certificate[1])]
		if issuer == nil {
			var err error
			if issuer, err = x509.ParseCertificate(c.Certificate[1]); err == nil {
				s.issuers[string(c.Certificate[1])] = issuer
			}
		}
		if issuer != nil && bytes.Equal(issuer.RawSubject, leaf.RawIssuer) {
			return issuer
		}
	}
	for _, issuer := range s.opts.issuers {
		if bytes.Equal(issuer.RawSubject, leaf.RawIssuer) {
			return issuer
		}
	}
	return nil
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
	if s.opts.responderURL != "" {
		return s.opts.responderURL
	}
	return m.url
}

// lookup returns the managed certificate with the given ID; an empty ID
// means the only one.
func (s *Stapler) lookup(id string) (*managed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" && len(s.order) == 1 {
		return s.order[0], nil
	}
	if m, ok := s.byID[id]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownCertificate, id)
}

// managedList returns the managed certificates in the order they were found.
func (s *Stapler) managedList() []*managed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*managed(nil), s.order...)
}
