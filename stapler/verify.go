package stapler

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache"
)

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
	// ErrNoNextUpdate: the response has no nextUpdate, so nothing bounds how
	// long it may be served (RFC 9919 says to reject it).
	ErrNoNextUpdate = errors.New("OCSP response has no nextUpdate")
	// ErrCriticalExtension: the response carries a critical extension this
	// package does not understand.
	ErrCriticalExtension = errors.New("OCSP response has an unknown critical extension")
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

// The DER structures of RFC 6960 4.2.1.
type responseASN1 struct {
	Status   asn1.Enumerated
	Response responseBytes `asn1:"explicit,tag:0,optional"`
}

type responseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type basicResponse struct {
	TBSResponseData    responseData
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type responseData struct {
	Raw            asn1.RawContent
	Version        int `asn1:"optional,default:0,explicit,tag:0"`
	RawResponderID asn1.RawValue
	ProducedAt     time.Time `asn1:"generalized"`
	Responses      []singleResponse
	Extensions     []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type certID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	IssuerKeyHash []byte
	SerialNumber  *big.Int
}

type singleResponse struct {
	CertID           certID
	Good             asn1.Flag        `asn1:"tag:0,optional"`
	Revoked          revokedInfo      `asn1:"tag:1,optional"`
	Unknown          asn1.Flag        `asn1:"tag:2,optional"`
	ThisUpdate       time.Time        `asn1:"generalized"`
	NextUpdate       time.Time        `asn1:"generalized,explicit,tag:0,optional"`
	SingleExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type revokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
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

// verifyOptions tune verifyResponse.
type verifyOptions struct {
	// skipSignature skips the signature and signer checks only (skip_verify).
	skipSignature bool
	// skew is how far thisUpdate may be ahead of now.
	skew time.Duration
}

// verifyResponse checks raw as the answer about leaf, issued by issuer, at
// now, and returns its parsed fields. Expires of the result is capped at the
// leaf's NotAfter and a delegated signer's NotAfter; the caller applies
// cache_ttl.
func verifyResponse(raw []byte, leaf, issuer *x509.Certificate, now time.Time, opts verifyOptions) (*cache.Entry, error) {
	e, _, err := verifyResponseSigner(raw, leaf, issuer, now, opts)
	return e, err
}

// verifyResponseSigner is verifyResponse that also returns the delegated
// responder certificate that signed the response (nil when the issuer did,
// or when the signature was not checked).
func verifyResponseSigner(raw []byte, leaf, issuer *x509.Certificate, now time.Time, opts verifyOptions) (*cache.Entry, *x509.Certificate, error) {
	var resp responseASN1
	if rest, err := asn1.Unmarshal(raw, &resp); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformedResponse, err)
	} else if len(rest) > 0 {
		return nil, nil, fmt.Errorf("%w: trailing data", ErrMalformedResponse)
	}
	if status := ocsp.ResponseStatus(resp.Status); status != ocsp.Success {
		return nil, nil, &ResponseStatusError{Status: status}
	}
	if !resp.Response.ResponseType.Equal(oidOCSPBasic) {
		return nil, nil, fmt.Errorf("%w: response type %v is not id-pkix-ocsp-basic", ErrMalformedResponse, resp.Response.ResponseType)
	}
	var basic basicResponse
	if rest, err := asn1.Unmarshal(resp.Response.Response, &basic); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformedResponse, err)
	} else if len(rest) > 0 {
		return nil, nil, fmt.Errorf("%w: trailing data in basic response", ErrMalformedResponse)
	}
	for _, ext := range basic.TBSResponseData.Extensions {
		if ext.Critical {
			return nil, nil, fmt.Errorf("%w: %v", ErrCriticalExtension, ext.Id)
		}
	}
	single, err := matchSingleResponse(basic.TBSResponseData.Responses, leaf, issuer)
	if err != nil {
		return nil, nil, err
	}
	for _, ext := range single.SingleExtensions {
		if ext.Critical {
			return nil, nil, fmt.Errorf("%w: %v", ErrCriticalExtension, ext.Id)
		}
	}

	if single.ThisUpdate.After(now.Add(opts.skew)) {
		return nil, nil, fmt.Errorf("%w: thisUpdate %s is after now (%s) plus %v of allowed skew", ErrNotYetValid, single.ThisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), opts.skew)
	}
	if single.NextUpdate.IsZero() {
		return nil, nil, ErrNoNextUpdate
	}
	if !single.NextUpdate.After(now) {
		return nil, nil, fmt.Errorf("%w: nextUpdate %s has passed", ErrExpired, single.NextUpdate.UTC().Format(time.RFC3339))
	}
	if !single.NextUpdate.After(single.ThisUpdate) {
		return nil, nil, fmt.Errorf("%w: nextUpdate %s is not after thisUpdate", ErrMalformedResponse, single.NextUpdate.UTC().Format(time.RFC3339))
	}

	var signer *x509.Certificate
	if !opts.skipSignature {
		if signer, err = checkSigner(&basic, issuer, now); err != nil {
			return nil, nil, err
		}
	}
	var signerNotAfter time.Time
	if signer != nil {
		signerNotAfter = signer.NotAfter
	}

	e := &cache.Entry{
		Raw:        raw,
		ProducedAt: cache.At(basic.TBSResponseData.ProducedAt),
		ThisUpdate: cache.At(single.ThisUpdate),
		NextUpdate: cache.At(single.NextUpdate),
	}
	switch {
	case bool(single.Good):
		e.Status = cache.Good
	case bool(single.Unknown):
		e.Status = cache.Unknown
	default:
		e.Status = cache.Revoked
		e.RevokedAt = cache.At(single.Revoked.RevocationTime)
		e.RevocationReason = int(single.Revoked.Reason)
	}
	e.Expires = cache.At(cache.Expiry(now, single.NextUpdate.Sub(now), single.NextUpdate, leaf.NotAfter, signerNotAfter))
	return e, signer, nil
}

// matchSingleResponse returns the one answer whose full CertID is the leaf's.
func matchSingleResponse(responses []singleResponse, leaf, issuer *x509.Certificate) (*singleResponse, error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("issuer public key: %w", err)
	}
	var match *singleResponse
	serialOnly := false
	for i := range responses {
		r := &responses[i]
		if r.CertID.SerialNumber == nil || r.CertID.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			continue
		}
		serialOnly = true
		h := hashForOID(r.CertID.HashAlgorithm.Algorithm)
		if h == 0 {
			continue
		}
		nameHash := h.New()
		nameHash.Write(issuer.RawSubject)
		keyHash := h.New()
		keyHash.Write(spki.PublicKey.RightAlign())
		if !bytes.Equal(nameHash.Sum(nil), r.CertID.NameHash) || !bytes.Equal(keyHash.Sum(nil), r.CertID.IssuerKeyHash) {
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

// checkSigner verifies that the issuer or a delegated responder it
// authorized (RFC 6960 4.2.2.2) signed the response, trying every embedded
// certificate. It returns the delegate, or nil when the issuer signed.
func checkSigner(basic *basicResponse, issuer *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	algo := x509.UnknownSignatureAlgorithm
	for _, a := range signatureAlgorithms {
		if a.oid.Equal(basic.SignatureAlgorithm.Algorithm) {
			algo = a.algo
		}
	}
	if algo == x509.UnknownSignatureAlgorithm {
		return nil, fmt.Errorf("%w: unsupported signature algorithm %v", ErrUnauthorizedSigner, basic.SignatureAlgorithm.Algorithm)
	}
	signed, sig := basic.TBSResponseData.Raw, basic.Signature.RightAlign()
	if issuer.CheckSignature(algo, signed, sig) == nil {
		return nil, nil
	}
	reason := "the issuer's key did not make the signature"
	for _, raw := range basic.Certificates {
		cert, err := x509.ParseCertificate(raw.FullBytes)
		if err != nil {
			reason = "an embedded certificate does not parse"
			continue
		}
		if cert.CheckSignature(algo, signed, sig) != nil {
			continue
		}
		switch {
		case bytes.Equal(cert.Raw, issuer.Raw):
			return nil, nil
		case cert.CheckSignatureFrom(issuer) != nil:
			return nil, fmt.Errorf("%w: signer %q was not issued by the certificate's issuer", ErrUnauthorizedSigner, cert.Subject.CommonName)
		case !hasOCSPSigning(cert):
			return nil, fmt.Errorf("%w: signer %q lacks the id-kp-OCSPSigning extended key usage", ErrUnauthorizedSigner, cert.Subject.CommonName)
		case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
			return nil, fmt.Errorf("%w: signer %q is valid only from %s to %s", ErrUnauthorizedSigner, cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
		}
		return cert, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnauthorizedSigner, reason)
}

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1): a delegated
// responder certificate whose revocation status need not be checked.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

func hasOCSPNoCheck(c *x509.Certificate) bool {
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
