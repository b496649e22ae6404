package crl

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// What a verified CRL answers: its size, its scope, whether it lists a
// certificate (by serial, without allocating), and where a certificate
// says its CRLs are.

// Len is the number of distinct serials listed.
func (c *CRL) Len() int { return len(c.ends) }

// MemoryBytes is roughly what the index holds in memory.
func (c *CRL) MemoryBytes() int64 {
	const fixed = 256 // the struct, the number, slice headers
	return fixed + int64(cap(c.keys)) + 4*int64(cap(c.ends)) + 8*int64(cap(c.times)) + 2*int64(cap(c.reasons))
}

// Covers reports why c does not cover cert (nil when it does): an issuing
// distribution point that limits it to user or to CA certificates.
func (c *CRL) Covers(cert *x509.Certificate) error {
	isCA := cert.BasicConstraintsValid && cert.IsCA
	switch {
	case c.onlyUser && isCA:
		return fmt.Errorf("%w: it lists user certificates only (onlyContainsUserCerts), and this is a CA certificate", ErrScope)
	case c.onlyCA && !isCA:
		return fmt.Errorf("%w: it lists CA certificates only (onlyContainsCACerts)", ErrScope)
	}
	return nil
}

// Scope is which certificates a CRL covers by its issuing distribution
// point: all (the default), user certificates only, or CA certificates
// only.
type Scope uint8

// The scopes of a CRL.
const (
	// ScopeAll: neither onlyContainsUserCerts nor onlyContainsCACerts.
	ScopeAll Scope = iota
	// ScopeUsers: onlyContainsUserCerts.
	ScopeUsers
	// ScopeCAs: onlyContainsCACerts (an authority revocation list).
	ScopeCAs
	// Scopes is the number of scopes.
	Scopes
)

// Scope returns c's scope.
func (c *CRL) Scope() Scope {
	switch {
	case c.onlyUser:
		return ScopeUsers
	case c.onlyCA:
		return ScopeCAs
	}
	return ScopeAll
}

// CoversKind reports whether a CRL of scope s covers CA certificates (ca)
// or user certificates (!ca).
func (s Scope) CoversKind(ca bool) bool {
	return s == ScopeAll || s == ScopeCAs && ca || s == ScopeUsers && !ca
}

// Lookup returns the entry of the certificate whose serial has the DER
// INTEGER content octets serial. It does not allocate.
func (c *CRL) Lookup(serial []byte) (Entry, bool) {
	lo, hi := 0, len(c.ends)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		start := uint32(0)
		if m > 0 {
			start = c.ends[m-1]
		}
		switch bytes.Compare(c.keys[start:c.ends[m]], serial) {
		case 0:
			return Entry{RevokedAt: time.Unix(c.times[m], 0), Reason: int(c.reasons[m])}, true
		case -1:
			lo = m + 1
		default:
			hi = m
		}
	}
	return Entry{}, false
}

// LookupCert returns cert's entry. It does not allocate for a certificate
// parsed by crypto/x509.
func (c *CRL) LookupCert(cert *x509.Certificate) (Entry, bool) {
	return c.Lookup(SerialBytes(cert))
}

// SerialBytes returns the content octets of cert's serialNumber INTEGER,
// read from its DER without allocating.
func SerialBytes(cert *x509.Certificate) []byte {
	in := cryptobyte.String(cert.RawTBSCertificate)
	var tbs, serial cryptobyte.String
	if in.ReadASN1(&tbs, cbasn1.SEQUENCE) &&
		tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) &&
		tbs.ReadASN1(&serial, cbasn1.INTEGER) && len(serial) > 0 {
		return serial
	}
	if cert.SerialNumber == nil {
		return nil
	}
	return intBytes(cert.SerialNumber)
}

// intBytes is the DER INTEGER content octets of n (two's complement,
// minimal).
func intBytes(n *big.Int) []byte {
	switch n.Sign() {
	case 0:
		return []byte{0}
	case 1:
		b := n.Bytes()
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	m := new(big.Int).Neg(n)
	m.Sub(m, big.NewInt(1))
	b := m.Bytes()
	for i := range b {
		b[i] ^= 0xff
	}
	if len(b) == 0 || b[0]&0x80 == 0 {
		b = append([]byte{0xff}, b...)
	}
	return b
}

// DistributionPoints returns the http and https URLs of cert's CRL
// distribution points (RFC 5280 4.2.1.13) that a direct, full CRL serves:
// a point with a cRLIssuer (an indirect CRL) or limited to some reasons is
// skipped. An error says why there is none.
func DistributionPoints(cert *x509.Certificate) ([]string, error) {
	var urls []string
	err := RangeDistributionPoints(cert, func(u []byte) bool {
		if !slices.Contains(urls, string(u)) {
			urls = append(urls, string(u))
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return urls, nil
}

// RangeDistributionPoints calls yield with each URL DistributionPoints
// returns (a URL named twice, twice), in order, until yield returns false,
// without allocating: the handshake path walks them on every check. The
// bytes are cert's own and must not be modified. The error is
// ErrNoDistributionPoint when there was no URL to yield, or ErrMalformed.
func RangeDistributionPoints(cert *x509.Certificate, yield func(url []byte) bool) error {
	found, skipped := 0, 0
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidCRLDistPoints) {
			continue
		}
		in := cryptobyte.String(ext.Value)
		var dps cryptobyte.String
		if !in.ReadASN1(&dps, cbasn1.SEQUENCE) || !in.Empty() {
			return fmt.Errorf("%w: CRL distribution points extension", ErrMalformed)
		}
		for !dps.Empty() {
			var dp, name, reasons cryptobyte.String
			var hasName, hasReasons bool
			if !dps.ReadASN1(&dp, cbasn1.SEQUENCE) ||
				!dp.ReadOptionalASN1(&name, &hasName, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
				!dp.ReadOptionalASN1(&reasons, &hasReasons, cbasn1.Tag(1).ContextSpecific()) {
				return fmt.Errorf("%w: CRL distribution point", ErrMalformed)
			}
			hasIssuer := dp.PeekASN1Tag(cbasn1.Tag(2).Constructed().ContextSpecific())
			if hasIssuer || hasReasons || !hasName {
				// An indirect CRL's point, or one that lists some reasons
				// only: not the certificate's whole answer.
				skipped++
				continue
			}
			var full cryptobyte.String
			if !name.ReadASN1(&full, cbasn1.Tag(0).Constructed().ContextSpecific()) {
				skipped++ // nameRelativeToCRLIssuer
				continue
			}
			for !full.Empty() {
				var gn cryptobyte.String
				var tag cbasn1.Tag
				if !full.ReadAnyASN1(&gn, &tag) {
					return fmt.Errorf("%w: general name", ErrMalformed)
				}
				if tag != cbasn1.Tag(6).ContextSpecific() || !isHTTP(gn) {
					continue
				}
				found++
				if !yield(gn) {
					return nil
				}
			}
		}
	}
	if found == 0 {
		if skipped > 0 {
			return fmt.Errorf("%w: its %d distribution point(s) name an indirect CRL (cRLIssuer), some reasons only, or no URL", ErrNoDistributionPoint, skipped)
		}
		return ErrNoDistributionPoint
	}
	return nil
}

// isHTTP reports whether u is an http or https URL (the scheme in any
// case), without allocating.
func isHTTP(u []byte) bool {
	return len(u) > 7 && bytes.EqualFold(u[:7], []byte("http://")) || len(u) > 8 && bytes.EqualFold(u[:8], []byte("https://"))
}
