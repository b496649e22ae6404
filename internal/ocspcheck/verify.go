package ocspcheck

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"golang.org/x/crypto/ocsp"
)

// MaxResponseBytes is the largest OCSP response verified: a larger one
// fails with ErrResponseTooLarge (stapler.MaxResponseBytes says why 16 KiB).
const MaxResponseBytes = 16 << 10

// ErrResponseTooLarge: the response is larger than MaxResponseBytes.
var ErrResponseTooLarge = errors.New("OCSP response larger than the cap")

// Verification failures. A response that fails any of these is never
// stapled; errors.Is matches them through the wrapping.
var (
	// ErrMalformedResponse: the bytes are not a well-formed basic OCSP response.
	ErrMalformedResponse = errors.New("malformed OCSP response")
	// ErrWrongCertificate: the response carries no answer whose full CertID
	// (hash algorithm, issuer name hash, issuer key hash, serial) is this
	// certificate's.
	ErrWrongCertificate = errors.New("OCSP response is for another certificate")
	// ErrUnauthorizedSigner: no key allowed to answer for the issuer (the
	// issuer itself, or a currently valid certificate it issued with
	// id-kp-OCSPSigning) made the signature.
	ErrUnauthorizedSigner = errors.New("OCSP response not signed by an authorized responder")
	// ErrNotYetValid: thisUpdate is later than now plus the allowed skew.
	ErrNotYetValid = errors.New("OCSP response not yet valid")
	// ErrExpired: nextUpdate has passed.
	ErrExpired = errors.New("OCSP response expired")
	// ErrNoNextUpdate: the response has no nextUpdate and the caller
	// refused such responses (a negative NoNextUpdateLifetime). By default
	// one is accepted for DefaultNoNextUpdateLifetime after its thisUpdate.
	ErrNoNextUpdate = errors.New("OCSP response has no nextUpdate")
	// ErrCriticalExtension: the response carries a critical extension this
	// package does not understand.
	ErrCriticalExtension = errors.New("OCSP response has an unknown critical extension")
	// ErrSHA1Signature: the response, or the delegated responder certificate
	// that signed it, is signed with SHA-1, which is refused unless
	// Options.AllowSHA1 is set.
	ErrSHA1Signature = errors.New("SHA-1 signature refused")
)

// ResponseStatusError is a response whose responseStatus is not successful
// (malformedRequest, internalError, tryLater, sigRequired, unauthorized).
type ResponseStatusError struct {
	Status ocsp.ResponseStatus
}

// Error implements error.
func (e *ResponseStatusError) Error() string {
	return "OCSP response status " + responseStatusName(e.Status)
}

func responseStatusName(s ocsp.ResponseStatus) string {
	switch s {
	case ocsp.Malformed:
		return "malformedRequest"
	case ocsp.InternalError:
		return "internalError"
	case ocsp.TryLater:
		return "tryLater"
	case ocsp.SignatureRequired:
		return "sigRequired"
	case ocsp.Unauthorized:
		return "unauthorized"
	}
	return fmt.Sprintf("%d", int(s))
}

var oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

var certIDHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
}

var signatureAlgorithms = []struct {
	oid  asn1.ObjectIdentifier
	algo x509.SignatureAlgorithm
}{
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, x509.SHA1WithRSA},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, x509.SHA256WithRSA},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, x509.SHA384WithRSA},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, x509.SHA512WithRSA},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}, x509.ECDSAWithSHA1},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, x509.ECDSAWithSHA256},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, x509.ECDSAWithSHA384},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, x509.ECDSAWithSHA512},
	{asn1.ObjectIdentifier{1, 3, 101, 112}, x509.PureEd25519},
}

// Options tune Verify.
type Options struct {
	// SkipSignature skips the signature and signer checks only (the
	// Stapler's skip_verify).
	SkipSignature bool
	// Skew is how far thisUpdate, and a delegated responder's notBefore,
	// may be ahead of now.
	Skew time.Duration
	// AllowSHA1 accepts SHA-1 signatures, on the response and on a
	// delegated responder's certificate (legacy private PKI only).
	AllowSHA1 bool
	// Undated is how long after its thisUpdate a response without
	// nextUpdate may be relied on: zero means DefaultNoNextUpdateLifetime,
	// a negative value refuses such responses (ErrNoNextUpdate).
	Undated time.Duration
}

// DefaultNoNextUpdateLifetime is how long after its thisUpdate a response
// without nextUpdate is relied on, unless WithNoNextUpdateLifetime,
// Verifier.NoNextUpdateLifetime or VerifyOptions.NoNextUpdateLifetime says
// otherwise. RFC 6960 (4.2.2.1) lets a responder leave nextUpdate out to
// say that newer information is always available; openssl ocsp does so by
// default, as EJBCA does, and Vault and OpenBao with ocsp_expiry 0. Such a
// responder signs each answer when asked, so its thisUpdate is the time of
// the request: an hour bounds how long a revocation can stay hidden behind
// a staple (the Stapler refreshes at half of it, two requests an hour per
// certificate), as NATS and s2n bound it too.
const DefaultNoNextUpdateLifetime = time.Hour

// ValidUntil is when single stops being relied on by its own times: its
// nextUpdate, or for a response without one, thisUpdate plus the undated
// lifetime. ok is false when such a response is refused.
func (opts Options) ValidUntil(single *Single) (until time.Time, ok bool) {
	if !single.nextUpdate.IsZero() {
		return single.nextUpdate, true
	}
	switch {
	case opts.Undated < 0:
		return time.Time{}, false
	case opts.Undated == 0:
		return single.thisUpdate.Add(DefaultNoNextUpdateLifetime), true
	}
	return single.thisUpdate.Add(opts.Undated), true
}

// AnswerTimes returns the thisUpdate of raw's answer about leaf, and until
// when that answer is relied on by its own times (ValidUntil), without
// verifying anything else: ok is false when raw does not parse, holds no
// answer about leaf, or is refused by opts for want of a nextUpdate.
func AnswerTimes(raw []byte, leaf, issuer *x509.Certificate, opts Options) (thisUpdate, until time.Time, ok bool) {
	basic, err := Parse(raw)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	single, err := Match(basic.responses, leaf, issuer)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	until, ok = opts.ValidUntil(single)
	return single.thisUpdate, until, ok
}

// Verify checks raw as the answer about leaf, issued by issuer, at
// now, and returns its parsed fields. Expires of the result is capped at the
// leaf's NotAfter and a delegated signer's NotAfter; the caller applies
// cache_ttl.
func Verify(raw []byte, leaf, issuer *x509.Certificate, now time.Time, opts Options) (*record.Entry, error) {
	e, _, err := VerifySigner(raw, leaf, issuer, now, opts)
	return e, err
}

// VerifySigner is Verify that also returns the delegated
// responder certificate that signed the response (nil when the issuer did,
// or when the signature was not checked).
func VerifySigner(raw []byte, leaf, issuer *x509.Certificate, now time.Time, opts Options) (*record.Entry, *x509.Certificate, error) {
	if len(raw) > MaxResponseBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes, more than the %d a staple may have", ErrResponseTooLarge, len(raw), MaxResponseBytes)
	}
	basic, err := Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	for _, ext := range basic.extensions {
		if ext.critical {
			return nil, nil, fmt.Errorf("%w: %v", ErrCriticalExtension, ext.id)
		}
	}
	single, err := Match(basic.responses, leaf, issuer)
	if err != nil {
		return nil, nil, err
	}
	for _, ext := range single.extensions {
		if ext.critical {
			return nil, nil, fmt.Errorf("%w: %v", ErrCriticalExtension, ext.id)
		}
	}

	if single.thisUpdate.After(now.Add(opts.Skew)) {
		return nil, nil, fmt.Errorf("%w: thisUpdate %s is after now (%s) plus %v of allowed skew", ErrNotYetValid, single.thisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), opts.Skew)
	}
	until, ok := opts.ValidUntil(single)
	switch {
	case !ok:
		return nil, nil, ErrNoNextUpdate
	case !until.After(now) && single.nextUpdate.IsZero():
		return nil, nil, fmt.Errorf("%w: no nextUpdate, and thisUpdate %s is more than the %v such a response is relied on ago", ErrExpired, single.thisUpdate.UTC().Format(time.RFC3339), until.Sub(single.thisUpdate))
	case !until.After(now):
		return nil, nil, fmt.Errorf("%w: nextUpdate %s has passed", ErrExpired, single.nextUpdate.UTC().Format(time.RFC3339))
	case !single.nextUpdate.IsZero() && !single.nextUpdate.After(single.thisUpdate):
		return nil, nil, fmt.Errorf("%w: nextUpdate %s is not after thisUpdate", ErrMalformedResponse, single.nextUpdate.UTC().Format(time.RFC3339))
	}

	var signer *x509.Certificate
	if !opts.SkipSignature {
		if signer, err = checkSigner(basic, issuer, now, opts); err != nil {
			return nil, nil, err
		}
	}
	var signerNotAfter time.Time
	if signer != nil {
		signerNotAfter = signer.NotAfter
	}

	if !opts.SkipSignature {
		raw = basic.canonical(signer)
	}
	e := &record.Entry{
		Raw:        raw,
		Status:     single.status,
		ProducedAt: record.At(basic.producedAt),
		ThisUpdate: record.At(single.thisUpdate),
		NextUpdate: record.At(single.nextUpdate),
	}
	if single.status == record.Revoked {
		e.RevokedAt = record.At(single.revokedAt)
		e.RevocationReason = int32(single.reason)
		if single.reason < 0 || single.reason > math.MaxInt32 { // no such code: still revoked, the reason unstated
			e.RevocationReason = 0
		}
	}
	e.Expires = record.At(record.Expiry(now, until.Sub(now), until, leaf.NotAfter, signerNotAfter))
	return e, signer, nil
}

// Match returns the one answer whose full CertID is the leaf's.
func Match(responses []Single, leaf, issuer *x509.Certificate) (*Single, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("issuer public key: %w", err)
	}
	var match *Single
	serialOnly := false
	for i := range responses {
		r := &responses[i]
		if r.serial.Cmp(leaf.SerialNumber) != 0 {
			continue
		}
		serialOnly = true
		h := hashForOID(r.hashAlg)
		if h == 0 {
			continue
		}
		nameHash := h.New()
		nameHash.Write(issuer.RawSubject)
		keyHash := h.New()
		keyHash.Write(spki.PublicKey.RightAlign())
		if !bytes.Equal(nameHash.Sum(nil), r.nameHash) || !bytes.Equal(keyHash.Sum(nil), r.keyHash) {
			continue
		}
		if match != nil {
			return nil, fmt.Errorf("%w: two answers for serial %x", ErrMalformedResponse, leaf.SerialNumber)
		}
		match = r
	}
	if match != nil {
		return match, nil
	}
	if serialOnly {
		return nil, fmt.Errorf("%w: the serial matches but the issuer name or key hash does not", ErrWrongCertificate)
	}
	return nil, fmt.Errorf("%w: no answer for serial %x", ErrWrongCertificate, leaf.SerialNumber)
}

func hashForOID(oid asn1.ObjectIdentifier) crypto.Hash {
	for _, h := range certIDHashes {
		if h.oid.Equal(oid) && h.hash.Available() {
			return h.hash
		}
	}
	return 0
}

// isSHA1 reports whether algo signs with SHA-1.
func isSHA1(algo x509.SignatureAlgorithm) bool {
	return algo == x509.SHA1WithRSA || algo == x509.ECDSAWithSHA1 || algo == x509.DSAWithSHA1
}

// checkSigner verifies that the issuer or a delegated responder it
// authorized (RFC 6960 4.2.2.2) signed the response, trying every embedded
// certificate. It returns the delegate, or nil when the issuer signed.
func checkSigner(basic *Basic, issuer *x509.Certificate, now time.Time, opts Options) (*x509.Certificate, error) {
	algo := x509.UnknownSignatureAlgorithm
	for _, a := range signatureAlgorithms {
		if a.oid.Equal(basic.sigAlg) {
			algo = a.algo
		}
	}
	if algo == x509.UnknownSignatureAlgorithm {
		return nil, fmt.Errorf("%w: unsupported signature algorithm %v", ErrUnauthorizedSigner, basic.sigAlg)
	}
	if isSHA1(algo) && !opts.AllowSHA1 {
		return nil, fmt.Errorf("%w: the response is signed with %v", ErrSHA1Signature, algo)
	}
	signed, sig := basic.tbs, basic.signature
	// A response that embeds certificates is usually signed by one of
	// them (a delegated responder): they are tried first, so that such a
	// response costs one signature check, not a failed one by the issuer's
	// key first. The issuer's key is tried after them in any case.
	if len(basic.certs) == 0 && issuer.CheckSignature(algo, signed, sig) == nil {
		return nil, nil
	}
	var refused error // why the first certificate whose key signed is unfit
	for _, cert := range basic.certs {
		if cert.CheckSignature(algo, signed, sig) != nil {
			continue
		}
		if bytes.Equal(cert.Raw, issuer.Raw) {
			return nil, nil
		}
		// A renewed delegate may share its predecessor's key: the first
		// fit certificate for the key is the signer.
		if err := checkDelegate(cert, issuer, now, opts); err != nil {
			if refused == nil {
				refused = err
			}
			continue
		}
		return cert, nil
	}
	if len(basic.certs) > 0 && issuer.CheckSignature(algo, signed, sig) == nil {
		return nil, nil
	}
	if refused != nil {
		return nil, refused
	}
	return nil, fmt.Errorf("%w: the issuer's key did not make the signature, nor did an embedded certificate's", ErrUnauthorizedSigner)
}

// checkDelegate checks that cert, whose key signed a response, is a
// delegated responder that issuer authorized and that is valid at now
// (RFC 6960 4.2.2.2, RFC 5280 4.2).
func checkDelegate(cert, issuer *x509.Certificate, now time.Time, opts Options) error {
	name := cert.Subject.CommonName
	if err := signedBy(cert, issuer); err != nil {
		var insecure x509.InsecureAlgorithmError
		switch {
		case !errors.As(err, &insecure):
			return fmt.Errorf("%w: signer %q was not issued by the certificate's issuer", ErrUnauthorizedSigner, name)
		case !opts.AllowSHA1:
			return fmt.Errorf("%w: delegated responder %q is signed with %v", ErrSHA1Signature, name, cert.SignatureAlgorithm)
		case issuer.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) != nil:
			// CheckSignatureFrom checked the issuer may sign certificates
			// before it refused the algorithm; only the signature is left.
			return fmt.Errorf("%w: signer %q was not issued by the certificate's issuer", ErrUnauthorizedSigner, name)
		}
	}
	switch {
	case !hasOCSPSigning(cert):
		return fmt.Errorf("%w: signer %q lacks the id-kp-OCSPSigning extended key usage", ErrUnauthorizedSigner, name)
	case len(cert.UnhandledCriticalExtensions) > 0:
		return fmt.Errorf("%w: signer %q has an unknown critical extension %v", ErrUnauthorizedSigner, name, cert.UnhandledCriticalExtensions[0])
	case cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return fmt.Errorf("%w: signer %q has a key usage without digitalSignature", ErrUnauthorizedSigner, name)
	case now.Add(opts.Skew).Before(cert.NotBefore) || now.After(cert.NotAfter):
		return fmt.Errorf("%w: signer %q is valid only from %s to %s", ErrUnauthorizedSigner, name, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// delegateSignatures remembers the delegated responder certificates found
// signed by their issuer (keyed by the SHA-256 of both DERs): a fact that
// never changes for the same bytes, and a signature check saved for every
// response the delegate signs (about 100 µs each; a restart with 100,000
// delegate-signed responses would spend 10 s on it). Bounded: emptied when
// full.
var delegateSignatures = struct {
	sync.Mutex
	ok map[[32]byte]struct{}
}{ok: map[[32]byte]struct{}{}}

const maxDelegateSignatures = 1024

// signedBy is cert.CheckSignatureFrom(issuer), remembered when it holds.
func signedBy(cert, issuer *x509.Certificate) error {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(issuer.Raw)))
	h.Write(n[:])
	h.Write(issuer.Raw)
	h.Write(cert.Raw)
	var key [32]byte
	h.Sum(key[:0])
	delegateSignatures.Lock()
	_, known := delegateSignatures.ok[key]
	delegateSignatures.Unlock()
	if known {
		return nil
	}
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		return err
	}
	delegateSignatures.Lock()
	if len(delegateSignatures.ok) >= maxDelegateSignatures {
		clear(delegateSignatures.ok)
	}
	delegateSignatures.ok[key] = struct{}{}
	delegateSignatures.Unlock()
	return nil
}

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1): a delegated
// responder certificate whose revocation status need not be checked.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

func HasNoCheck(c *x509.Certificate) bool {
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidOCSPNoCheck) {
			return true
		}
	}
	return false
}

func hasOCSPSigning(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			return true
		}
	}
	return false
}
