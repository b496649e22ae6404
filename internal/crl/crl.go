package crl

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Options are what a CRL is checked against besides its issuer.
type Options struct {
	// URL is the distribution point the CRL was fetched from; an issuing
	// distribution point that names other URLs only refuses the CRL.
	URL string
	// Now is the time the CRL must be current at.
	Now time.Time
	// Skew is how far thisUpdate may be ahead of Now (zero: none).
	Skew time.Duration
	// AllowSHA1 accepts a CRL signed with SHA-1.
	AllowSHA1 bool
}

// CRL is a verified CRL: its times, its number and the index of the
// serials it lists. It is immutable and safe for concurrent use.
type CRL struct {
	// Number is the cRLNumber, nil when the CRL has none.
	Number *big.Int
	// ThisUpdate and NextUpdate are the CRL's own times.
	ThisUpdate, NextUpdate time.Time
	// Size is the length of the DER it was parsed from.
	Size int

	// Scope, from the issuing distribution point.
	onlyUser, onlyCA bool

	// The index: entry i's serial (the content octets of its DER
	// INTEGER) is keys[ends[i-1]:ends[i]], sorted by bytes.Compare.
	keys    []byte
	ends    []uint32
	times   []int64 // revocation times, Unix seconds
	reasons []int16 // RFC 5280 reason codes
}

// Entry is what a CRL says of a certificate it lists.
type Entry struct {
	RevokedAt time.Time
	// Reason is the RFC 5280 CRLReason (0, unspecified, when the entry
	// has none).
	Reason int
}

var (
	oidCRLNumber         = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDP         = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidFreshestCRL       = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidCertificateIssuer = asn1.ObjectIdentifier{2, 5, 29, 29}
	oidCRLDistPoints     = asn1.ObjectIdentifier{2, 5, 29, 31}
)

// Parse verifies der, a CRL (DER, or one PEM "X509 CRL" block), as the CRL
// of the certificates issuer issued at opts.URL, current at opts.Now, and
// returns its index. Whether it covers a given certificate (user or CA
// certificates only) is Covers.
func Parse(der []byte, issuer *x509.Certificate, opts Options) (*CRL, error) {
	if bytes.HasPrefix(bytes.TrimSpace(der), []byte("-----BEGIN")) {
		block, rest := pem.Decode(der)
		if block == nil || block.Type != "X509 CRL" || len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: not one PEM X509 CRL block", ErrMalformed)
		}
		der = block.Bytes
	}
	header, revoked, err := split(der)
	if err != nil {
		return nil, err
	}
	// The header (the CRL without its entries) is crypto/x509's to parse;
	// the entries are read below into the index without a big.Int or an
	// x509.RevocationListEntry each, which would cost about a kilobyte of
	// garbage per entry (100 MB for a 10 MiB CRL). The signature is
	// checked over the original, whole TBSCertList.
	rl, err := x509.ParseRevocationList(header.stripped)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	rl.RawTBSRevocationList = header.tbs
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("%w: the CRL's issuer is %q, the certificate's %q", ErrWrongIssuer, rl.Issuer, issuer.Subject)
	}
	switch rl.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		if !opts.AllowSHA1 {
			return nil, ErrSHA1
		}
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWrongIssuer, err)
	}
	c := &CRL{Number: rl.Number, ThisUpdate: rl.ThisUpdate, NextUpdate: rl.NextUpdate, Size: len(der)}
	// cRLNumber ::= INTEGER (0..MAX), at most 20 octets (RFC 5280 5.2.3):
	// it orders a point's CRLs for good, so a bogus one is refused.
	// 20 octets of DER hold a non-negative integer of at most 159 bits.
	if c.Number != nil && (c.Number.Sign() < 0 || c.Number.BitLen() > 159) {
		return nil, fmt.Errorf("%w: cRLNumber %v out of range (0 to 20 octets)", ErrMalformed, c.Number)
	}
	if !c.NextUpdate.IsZero() && !c.NextUpdate.After(c.ThisUpdate) {
		return nil, fmt.Errorf("%w: nextUpdate %s is not after thisUpdate", ErrMalformed, c.NextUpdate.UTC().Format(time.RFC3339))
	}
	if err := c.CurrentAt(opts.Now, opts.Skew); err != nil {
		return nil, err
	}
	if err := c.readExtensions(rl, opts.URL); err != nil {
		return nil, err
	}
	if err := c.index(revoked); err != nil {
		return nil, err
	}
	return c, nil
}

// CurrentAt reports why c may not be relied on at now (nil when it may):
// its thisUpdate is more than skew ahead, it has no nextUpdate, or its
// nextUpdate has passed.
func (c *CRL) CurrentAt(now time.Time, skew time.Duration) error {
	switch {
	case c.ThisUpdate.After(now.Add(skew)):
		return fmt.Errorf("%w: thisUpdate %s is ahead of the clock", ErrNotYetValid, c.ThisUpdate.UTC().Format(time.RFC3339))
	case c.NextUpdate.IsZero():
		return ErrNoNextUpdate
	case !c.NextUpdate.After(now):
		return fmt.Errorf("%w: nextUpdate %s has passed", ErrExpired, c.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// readExtensions checks the CRL's extensions: no delta CRL, no unknown
// critical one, no extension twice, and an issuing distribution point, if
// any, that covers url.
func (c *CRL) readExtensions(rl *x509.RevocationList, url string) error {
	seen := map[string]bool{}
	for _, ext := range rl.Extensions {
		id := ext.Id.String()
		if seen[id] {
			return fmt.Errorf("%w: extension %s twice", ErrMalformed, id)
		}
		seen[id] = true
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			return ErrDelta
		case ext.Id.Equal(oidIssuingDP):
			if err := c.readIssuingDP(ext.Value, url); err != nil {
				return err
			}
		case ext.Critical:
			// cRLNumber, authorityKeyIdentifier, freshestCRL and
			// authorityInfoAccess must be non-critical (RFC 5280 5.2); a
			// CRL that marks one critical asks for something this package
			// does not do.
			return fmt.Errorf("%w: %s", ErrCriticalExtension, id)
		}
	}
	return nil
}

// readIssuingDP reads an issuingDistributionPoint (RFC 5280 5.2.5):
//
//	IssuingDistributionPoint ::= SEQUENCE {
//	  distributionPoint          [0] DistributionPointName OPTIONAL,
//	  onlyContainsUserCerts      [1] BOOLEAN DEFAULT FALSE,
//	  onlyContainsCACerts        [2] BOOLEAN DEFAULT FALSE,
//	  onlySomeReasons            [3] ReasonFlags OPTIONAL,
//	  indirectCRL                [4] BOOLEAN DEFAULT FALSE,
//	  onlyContainsAttributeCerts [5] BOOLEAN DEFAULT FALSE }
//
// Any encoding of true counts as true: each flag only narrows what the CRL
// is relied on for.
func (c *CRL) readIssuingDP(value []byte, url string) error {
	in := cryptobyte.String(value)
	var idp cryptobyte.String
	if !in.ReadASN1(&idp, cbasn1.SEQUENCE) || !in.Empty() {
		return fmt.Errorf("%w: issuing distribution point", ErrMalformed)
	}
	var dp cryptobyte.String
	var hasDP bool
	if !idp.ReadOptionalASN1(&dp, &hasDP, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return fmt.Errorf("%w: issuing distribution point name", ErrMalformed)
	}
	flag := func(n uint8) (bool, error) {
		var v cryptobyte.String
		var present bool
		if !idp.ReadOptionalASN1(&v, &present, cbasn1.Tag(n).ContextSpecific()) || present && len(v) != 1 {
			return false, fmt.Errorf("%w: issuing distribution point flag [%d]", ErrMalformed, n)
		}
		return present && v[0] != 0, nil
	}
	var err error
	if c.onlyUser, err = flag(1); err != nil {
		return err
	}
	if c.onlyCA, err = flag(2); err != nil {
		return err
	}
	var reasons cryptobyte.String
	var someReasons bool
	if !idp.ReadOptionalASN1(&reasons, &someReasons, cbasn1.Tag(3).ContextSpecific()) {
		return fmt.Errorf("%w: issuing distribution point reasons", ErrMalformed)
	}
	indirect, err := flag(4)
	if err != nil {
		return err
	}
	attrOnly, err := flag(5)
	if err != nil {
		return err
	}
	if !idp.Empty() {
		return fmt.Errorf("%w: issuing distribution point", ErrMalformed)
	}
	switch {
	case indirect:
		return fmt.Errorf("%w: the issuing distribution point says indirectCRL", ErrIndirect)
	case someReasons:
		return fmt.Errorf("%w: it lists only some revocation reasons (onlySomeReasons)", ErrScope)
	case attrOnly:
		return fmt.Errorf("%w: it lists attribute certificates only", ErrScope)
	case c.onlyUser && c.onlyCA:
		return fmt.Errorf("%w: both onlyContainsUserCerts and onlyContainsCACerts", ErrMalformed)
	case !hasDP:
		return nil
	}
	// DistributionPointName ::= CHOICE { fullName [0] GeneralNames,
	//   nameRelativeToCRLIssuer [1] RelativeDistinguishedName }
	var names cryptobyte.String
	if !dp.ReadASN1(&names, cbasn1.Tag(0).Constructed().ContextSpecific()) || !dp.Empty() {
		return fmt.Errorf("%w: the issuing distribution point is not a full name (nameRelativeToCRLIssuer is not supported)", ErrScope)
	}
	uris, err := readURIs(names)
	if err != nil {
		return err
	}
	if !slices.Contains(uris, url) {
		return fmt.Errorf("%w: its issuing distribution point names %q, not %q", ErrScope, uris, url)
	}
	return nil
}

// readURIs returns the uniformResourceIdentifier names of GeneralNames'
// contents.
func readURIs(names cryptobyte.String) ([]string, error) {
	var uris []string
	for !names.Empty() {
		var name cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&name, &tag) {
			return nil, fmt.Errorf("%w: general name", ErrMalformed)
		}
		if tag == cbasn1.Tag(6).ContextSpecific() {
			uris = append(uris, string(name))
		}
	}
	return uris, nil
}

// parts are a CRL's whole TBSCertList and the CRL without its entries.
type parts struct {
	tbs, stripped []byte
}

// split cuts der into the CRL without its revokedCertificates and the
// contents of that SEQUENCE (empty when there is none):
//
//	CertificateList ::= SEQUENCE { tbsCertList TBSCertList,
//	  signatureAlgorithm AlgorithmIdentifier, signatureValue BIT STRING }
//	TBSCertList ::= SEQUENCE { version Version OPTIONAL, signature
//	  AlgorithmIdentifier, issuer Name, thisUpdate Time, nextUpdate Time
//	  OPTIONAL, revokedCertificates SEQUENCE OF ... OPTIONAL,
//	  crlExtensions [0] EXPLICIT Extensions OPTIONAL }
func split(der []byte) (parts, cryptobyte.String, error) {
	malformed := func(what string) (parts, cryptobyte.String, error) {
		return parts{}, nil, fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	in := cryptobyte.String(der)
	var list, tbsElem cryptobyte.String
	// Bytes after the CRL are not signed: refused (crypto/x509 ignores them).
	if !in.ReadASN1(&list, cbasn1.SEQUENCE) || !in.Empty() {
		return malformed("not one DER SEQUENCE")
	}
	if !list.ReadASN1Element(&tbsElem, cbasn1.SEQUENCE) {
		return malformed("TBSCertList")
	}
	tbs := tbsElem
	var version, sigAI, issuer, thisUpdate, nextUpdate, revoked, exts cryptobyte.String
	var tag cbasn1.Tag
	if !tbs.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		tbs.PeekASN1Tag(cbasn1.INTEGER) && !tbs.ReadASN1Element(&version, cbasn1.INTEGER) ||
		!tbs.ReadASN1Element(&sigAI, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
		!tbs.ReadAnyASN1Element(&thisUpdate, &tag) || tag != cbasn1.UTCTime && tag != cbasn1.GeneralizedTime {
		return malformed("TBSCertList header")
	}
	if tbs.PeekASN1Tag(cbasn1.UTCTime) || tbs.PeekASN1Tag(cbasn1.GeneralizedTime) {
		tbs.ReadAnyASN1Element(&nextUpdate, &tag)
	}
	if tbs.PeekASN1Tag(cbasn1.SEQUENCE) && !tbs.ReadASN1(&revoked, cbasn1.SEQUENCE) {
		return malformed("revokedCertificates")
	}
	if extsTag := cbasn1.Tag(0).Constructed().ContextSpecific(); tbs.PeekASN1Tag(extsTag) && !tbs.ReadASN1Element(&exts, extsTag) || !tbs.Empty() {
		return malformed("crlExtensions")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, part := range [][]byte{version, sigAI, issuer, thisUpdate, nextUpdate, exts} {
				b.AddBytes(part)
			}
		})
		b.AddBytes(list) // signatureAlgorithm and signatureValue, as they are
	})
	stripped, err := b.Bytes()
	if err != nil {
		return malformed(err.Error())
	}
	return parts{tbs: tbsElem, stripped: stripped}, revoked, nil
}

// DER encodings of the entry extensions' OIDs.
var (
	derReasonCode        = []byte{0x55, 0x1d, 0x15}
	derCertificateIssuer = []byte{0x55, 0x1d, 0x1d}
)

// pending is an entry read, before sorting.
type pending struct {
	serial []byte
	at     int64
	reason int16
	pos    int32
}

// index builds the sorted serial index of the entries in revoked (the
// contents of revokedCertificates), refusing entries that make the CRL
// indirect or carry an unknown critical extension:
//
//	SEQUENCE { userCertificate CertificateSerialNumber,
//	  revocationDate Time, crlEntryExtensions Extensions OPTIONAL }
func (c *CRL) index(revoked cryptobyte.String) error {
	var list []pending
	size := 0
	for !revoked.Empty() {
		var entry, serial, exts cryptobyte.String
		var hasExts bool
		if !revoked.ReadASN1(&entry, cbasn1.SEQUENCE) || !entry.ReadASN1(&serial, cbasn1.INTEGER) || !minimalInteger(serial) {
			return fmt.Errorf("%w: entry %d serial", ErrMalformed, len(list))
		}
		var when cryptobyte.String
		var tag cbasn1.Tag
		at, ok := int64(0), entry.ReadAnyASN1(&when, &tag)
		if ok {
			at, ok = readTime(when, tag)
		}
		if !ok {
			return fmt.Errorf("%w: entry %d revocationDate", ErrMalformed, len(list))
		}
		if !entry.ReadOptionalASN1(&exts, &hasExts, cbasn1.SEQUENCE) || !entry.Empty() {
			return fmt.Errorf("%w: entry %d", ErrMalformed, len(list))
		}
		reason, err := readEntryExtensions(exts)
		if err != nil {
			return fmt.Errorf("entry %d: %w", len(list), err)
		}
		list = append(list, pending{serial: serial, at: at, reason: reason, pos: int32(len(list))})
		size += len(serial)
	}
	slices.SortFunc(list, func(a, b pending) int {
		if c := bytes.Compare(a.serial, b.serial); c != 0 {
			return c
		}
		return int(a.pos - b.pos)
	})
	c.keys = make([]byte, 0, size)
	c.ends = make([]uint32, 0, len(list))
	c.times = make([]int64, 0, len(list))
	c.reasons = make([]int16, 0, len(list))
	for i, p := range list {
		if i > 0 && bytes.Equal(list[i-1].serial, p.serial) {
			// Listed twice: the first listing stands (revoked either way).
			continue
		}
		c.keys = append(c.keys, p.serial...)
		c.ends = append(c.ends, uint32(len(c.keys)))
		c.times = append(c.times, p.at)
		c.reasons = append(c.reasons, p.reason)
	}
	return nil
}

// readEntryExtensions returns an entry's reasonCode (0 when it has none),
// refusing a certificateIssuer (an indirect CRL), an unknown critical
// extension and an extension listed twice.
func readEntryExtensions(exts cryptobyte.String) (int16, error) {
	var reason int16
	var seen [][]byte
	for !exts.Empty() {
		var ext, oid, value cryptobyte.String
		var critical bool
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
			ext.PeekASN1Tag(cbasn1.BOOLEAN) && !ext.ReadASN1Boolean(&critical) ||
			!ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return 0, fmt.Errorf("%w: entry extension", ErrMalformed)
		}
		for _, s := range seen {
			if bytes.Equal(s, oid) {
				return 0, fmt.Errorf("%w: entry extension twice", ErrMalformed)
			}
		}
		seen = append(seen, oid)
		switch {
		case bytes.Equal(oid, derCertificateIssuer):
			return 0, fmt.Errorf("%w: an entry has a certificateIssuer extension", ErrIndirect)
		case bytes.Equal(oid, derReasonCode):
			var r int
			if !value.ReadASN1Enum(&r) || !value.Empty() {
				return 0, fmt.Errorf("%w: reasonCode", ErrMalformed)
			}
			if r >= 0 && r <= 10 {
				reason = int16(r)
			} // else not a CRLReason: listed is revoked all the same
		case critical:
			var id asn1.ObjectIdentifier
			asn1.Unmarshal(append([]byte{6, byte(len(oid))}, oid...), &id)
			return 0, fmt.Errorf("%w: entry extension %s", ErrCriticalExtension, id)
		}
	}
	return reason, nil
}

// readTime reads a Time (RFC 5280 4.1.2.5) as Unix seconds, without
// allocating: UTCTime YYMMDDHHMMSSZ (years 1950 to 2049) or
// GeneralizedTime YYYYMMDDHHMMSSZ, nothing else.
func readTime(b []byte, tag cbasn1.Tag) (int64, bool) {
	var year int
	switch {
	case tag == cbasn1.UTCTime && len(b) == 13:
		// digits is -1 for a non-digit: checked before the century is
		// added, which would make it a year.
		if year = digits(b[:2]); year >= 0 {
			year += 1900
			if year < 1950 {
				year += 100
			}
		}
		b = b[2:]
	case tag == cbasn1.GeneralizedTime && len(b) == 15:
		year = digits(b[:4])
		b = b[4:]
	default:
		return 0, false
	}
	if year < 0 || b[10] != 'Z' {
		return 0, false
	}
	month, day, hour, minute, second := digits(b[0:2]), digits(b[2:4]), digits(b[4:6]), digits(b[6:8]), digits(b[8:10])
	t := time.Date(year, time.Month(month), day, hour, minute, second, 0, time.UTC)
	// time.Date normalises out-of-range fields; a round trip refuses them.
	if month < 1 || day < 1 || hour < 0 || minute < 0 || second < 0 ||
		t.Year() != year || int(t.Month()) != month || t.Day() != day || t.Hour() != hour || t.Minute() != minute || t.Second() != second {
		return 0, false
	}
	return t.Unix(), true
}

// digits is the decimal value of b, or -1 when b is not all digits.
func digits(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// minimalInteger reports whether b is the content of a DER INTEGER:
// present and minimally encoded.
func minimalInteger(b []byte) bool {
	return len(b) > 0 && (len(b) == 1 || !(b[0] == 0 && b[1]&0x80 == 0) && !(b[0] == 0xff && b[1]&0x80 != 0))
}
