package ocspcheck

import (
	"crypto/x509"
	encasn1 "encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// The parsed form of an RFC 6960 4.2.1 response. Parsing is strict DER: no
// element may be added to any SEQUENCE, certStatus is exactly one of good,
// revoked and unknown, every embedded certificate parses, and nothing
// trails. Bytes outside the signature are never accepted just because the
// signature does not cover them: they would be stapled verbatim.

// Basic is a BasicOCSPResponse.
type Basic struct {
	tbs        []byte // the DER ResponseData, which the signature covers
	producedAt time.Time
	responses  []Single
	extensions []extension
	sigAlg     encasn1.ObjectIdentifier
	signature  []byte
	certs      []*x509.Certificate
	// The DER elements of the signatureAlgorithm and the signature, for
	// the canonical form.
	sigAlgDER, signatureDER []byte
}

// Single is a SingleResponse.
type Single struct {
	hashAlg    encasn1.ObjectIdentifier
	nameHash   []byte
	keyHash    []byte
	serial     *big.Int
	status     record.Status
	revokedAt  time.Time
	reason     int
	thisUpdate time.Time
	nextUpdate time.Time // zero when absent
	extensions []extension
}

type extension struct {
	id       encasn1.ObjectIdentifier
	critical bool
}

// Context-specific tags used by RFC 6960.
var (
	tag0  = asn1.Tag(0).ContextSpecific()
	tag2  = asn1.Tag(2).ContextSpecific()
	ctag0 = asn1.Tag(0).ContextSpecific().Constructed()
	ctag1 = asn1.Tag(1).ContextSpecific().Constructed()
	ctag2 = asn1.Tag(2).ContextSpecific().Constructed()
)

// malformed is an ErrMalformedResponse naming what was wrong.
func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformedResponse, what)
}

// Parse parses an OCSPResponse. A responseStatus other than
// successful is a *ResponseStatusError.
func Parse(raw []byte) (*Basic, error) {
	input := cryptobyte.String(raw)
	var resp cryptobyte.String
	if !input.ReadASN1(&resp, asn1.SEQUENCE) {
		return nil, malformed("not a DER SEQUENCE")
	}
	if !input.Empty() {
		return nil, malformed("trailing data")
	}
	var status int
	if !resp.ReadASN1Enum(&status) {
		return nil, malformed("bad responseStatus")
	}
	var bytesWrapper cryptobyte.String
	var present bool
	if !resp.ReadOptionalASN1(&bytesWrapper, &present, ctag0) || !resp.Empty() {
		return nil, malformed("bad OCSPResponse")
	}
	if status != 0 {
		return nil, &ResponseStatusError{Status: ocspStatus(status)}
	}
	if !present {
		return nil, malformed("successful response without responseBytes")
	}
	var rb cryptobyte.String
	var responseType encasn1.ObjectIdentifier
	var basicDER []byte
	if !bytesWrapper.ReadASN1(&rb, asn1.SEQUENCE) || !bytesWrapper.Empty() ||
		!rb.ReadASN1ObjectIdentifier(&responseType) ||
		!rb.ReadASN1Bytes(&basicDER, asn1.OCTET_STRING) || !rb.Empty() {
		return nil, malformed("bad responseBytes")
	}
	if !responseType.Equal(oidOCSPBasic) {
		return nil, fmt.Errorf("%w: response type %v is not id-pkix-ocsp-basic", ErrMalformedResponse, responseType)
	}
	return parseBasic(basicDER)
}

func parseBasic(der []byte) (*Basic, error) {
	input := cryptobyte.String(der)
	var basic cryptobyte.String
	if !input.ReadASN1(&basic, asn1.SEQUENCE) || !input.Empty() {
		return nil, malformed("bad BasicOCSPResponse")
	}
	var b Basic
	var tbsElement cryptobyte.String
	if !basic.ReadASN1Element(&tbsElement, asn1.SEQUENCE) {
		return nil, malformed("bad tbsResponseData")
	}
	b.tbs = tbsElement
	if err := parseResponseData(&b, tbsElement); err != nil {
		return nil, err
	}
	var algID, algIDElement cryptobyte.String
	if !basic.ReadASN1Element(&algIDElement, asn1.SEQUENCE) {
		return nil, malformed("bad signatureAlgorithm")
	}
	b.sigAlgDER = algIDElement
	if !algIDElement.ReadASN1(&algID, asn1.SEQUENCE) || !algID.ReadASN1ObjectIdentifier(&b.sigAlg) {
		return nil, malformed("bad signatureAlgorithm")
	}
	if !algID.Empty() {
		// Parameters: NULL (RSA PKCS #1 v1.5) or none (ECDSA, Ed25519), the
		// only ones of the algorithms accepted; the signature does not
		// cover them, so nothing else may ride there.
		var null cryptobyte.String
		if !algID.ReadASN1(&null, asn1.NULL) || !null.Empty() || !algID.Empty() {
			return nil, malformed("bad signatureAlgorithm parameters")
		}
	}
	var sig encasn1.BitString
	var sigElement cryptobyte.String
	if !basic.ReadASN1Element(&sigElement, asn1.BIT_STRING) {
		return nil, malformed("bad signature")
	}
	b.signatureDER = sigElement
	if !sigElement.ReadASN1BitString(&sig) {
		return nil, malformed("bad signature")
	}
	b.signature = sig.RightAlign()
	var certsWrapper cryptobyte.String
	var present bool
	if !basic.ReadOptionalASN1(&certsWrapper, &present, ctag0) || !basic.Empty() {
		return nil, malformed("data after the signature")
	}
	if present {
		var certs cryptobyte.String
		if !certsWrapper.ReadASN1(&certs, asn1.SEQUENCE) || !certsWrapper.Empty() {
			return nil, malformed("bad certs")
		}
		for !certs.Empty() {
			var certDER cryptobyte.String
			if !certs.ReadASN1Element(&certDER, asn1.SEQUENCE) {
				return nil, malformed("bad embedded certificate")
			}
			cert, err := x509.ParseCertificate(certDER)
			if err != nil {
				return nil, fmt.Errorf("%w: an embedded certificate does not parse: %v", ErrMalformedResponse, err)
			}
			b.certs = append(b.certs, cert)
		}
	}
	return &b, nil
}

func parseResponseData(b *Basic, tbsElement cryptobyte.String) error {
	var tbs cryptobyte.String
	if !tbsElement.ReadASN1(&tbs, asn1.SEQUENCE) {
		return malformed("bad tbsResponseData")
	}
	if tbs.PeekASN1Tag(ctag0) {
		var v cryptobyte.String
		var version int64
		if !tbs.ReadASN1(&v, ctag0) || !v.ReadASN1Integer(&version) || !v.Empty() || version != 0 {
			return malformed("unsupported version")
		}
	}
	var responderID cryptobyte.String
	var tag asn1.Tag
	if !tbs.ReadAnyASN1Element(&responderID, &tag) || (tag != ctag1 && tag != ctag2) {
		return malformed("bad responderID")
	}
	if !tbs.ReadASN1GeneralizedTime(&b.producedAt) {
		return malformed("bad producedAt")
	}
	var responses cryptobyte.String
	if !tbs.ReadASN1(&responses, asn1.SEQUENCE) {
		return malformed("bad responses")
	}
	for !responses.Empty() {
		var single cryptobyte.String
		if !responses.ReadASN1(&single, asn1.SEQUENCE) {
			return malformed("bad SingleResponse")
		}
		r, err := parseSingle(single)
		if err != nil {
			return err
		}
		b.responses = append(b.responses, r)
	}
	exts, err := parseOptionalExtensions(&tbs, "responseExtensions")
	if err != nil {
		return err
	}
	b.extensions = exts
	if !tbs.Empty() {
		return malformed("extra element in tbsResponseData")
	}
	return nil
}

func parseSingle(single cryptobyte.String) (Single, error) {
	var r Single
	var id, alg cryptobyte.String
	r.serial = new(big.Int)
	if !single.ReadASN1(&id, asn1.SEQUENCE) || !id.ReadASN1(&alg, asn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&r.hashAlg) {
		return r, malformed("bad certID")
	}
	if !alg.Empty() { // NULL parameters, or none
		var null cryptobyte.String
		if !alg.ReadASN1(&null, asn1.NULL) || !null.Empty() || !alg.Empty() {
			return r, malformed("bad certID hash algorithm parameters")
		}
	}
	if !id.ReadASN1Bytes(&r.nameHash, asn1.OCTET_STRING) || !id.ReadASN1Bytes(&r.keyHash, asn1.OCTET_STRING) ||
		!id.ReadASN1Integer(r.serial) || !id.Empty() {
		return r, malformed("bad certID")
	}
	// certStatus is a CHOICE: exactly one element, one of three tags.
	var status cryptobyte.String
	var tag asn1.Tag
	if !single.ReadAnyASN1(&status, &tag) {
		return r, malformed("bad certStatus")
	}
	switch tag {
	case tag0:
		if !status.Empty() {
			return r, malformed("bad certStatus good")
		}
		r.status = record.Good
	case tag2:
		if !status.Empty() {
			return r, malformed("bad certStatus unknown")
		}
		r.status = record.Unknown
	case ctag1:
		r.status = record.Revoked
		if !status.ReadASN1GeneralizedTime(&r.revokedAt) {
			return r, malformed("bad revocationTime")
		}
		if status.PeekASN1Tag(ctag0) {
			var reason cryptobyte.String
			if !status.ReadASN1(&reason, ctag0) || !reason.ReadASN1Enum(&r.reason) || !reason.Empty() {
				return r, malformed("bad revocationReason")
			}
		}
		if !status.Empty() {
			return r, malformed("extra element in revokedInfo")
		}
	default:
		return r, malformed("certStatus is none of good, revoked and unknown")
	}
	if !single.ReadASN1GeneralizedTime(&r.thisUpdate) {
		return r, malformed("bad thisUpdate")
	}
	if single.PeekASN1Tag(ctag0) {
		var next cryptobyte.String
		if !single.ReadASN1(&next, ctag0) || !next.ReadASN1GeneralizedTime(&r.nextUpdate) || !next.Empty() {
			return r, malformed("bad nextUpdate")
		}
	}
	exts, err := parseOptionalExtensions(&single, "singleExtensions")
	if err != nil {
		return r, err
	}
	r.extensions = exts
	if !single.Empty() {
		return r, malformed("extra element in SingleResponse")
	}
	return r, nil
}

// parseOptionalExtensions reads an optional [1] EXPLICIT Extensions.
func parseOptionalExtensions(s *cryptobyte.String, what string) ([]extension, error) {
	if !s.PeekASN1Tag(ctag1) {
		return nil, nil
	}
	var wrapper, exts cryptobyte.String
	if !s.ReadASN1(&wrapper, ctag1) || !wrapper.ReadASN1(&exts, asn1.SEQUENCE) || !wrapper.Empty() {
		return nil, malformed("bad " + what)
	}
	var out []extension
	for !exts.Empty() {
		var ext cryptobyte.String
		var e extension
		var value []byte
		if !exts.ReadASN1(&ext, asn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&e.id) ||
			(ext.PeekASN1Tag(asn1.BOOLEAN) && !ext.ReadASN1Boolean(&e.critical)) ||
			!ext.ReadASN1Bytes(&value, asn1.OCTET_STRING) || !ext.Empty() {
			return nil, malformed("bad extension in " + what)
		}
		out = append(out, e)
	}
	return out, nil
}

// ocspStatus converts a responseStatus read from the wire.
func ocspStatus(v int) ocsp.ResponseStatus { return ocsp.ResponseStatus(v) }

// canonical is the response to staple: the signed ResponseData, its
// signature, and only the one certificate a client needs to check it (the
// delegated responder's, when one signed). Whatever else rode outside the
// signature (the CA's own certificate, duplicates, any certificate at all)
// is dropped, so that no handshake carries bytes the signer did not vouch
// for, and every server staples the same bytes for the same answer.
func (b *Basic) canonical(signer *x509.Certificate) []byte {
	var basic cryptobyte.Builder
	basic.AddASN1(asn1.SEQUENCE, func(c *cryptobyte.Builder) {
		c.AddBytes(b.tbs)
		c.AddBytes(b.sigAlgDER)
		c.AddBytes(b.signatureDER)
		if signer != nil {
			c.AddASN1(ctag0, func(c *cryptobyte.Builder) {
				c.AddASN1(asn1.SEQUENCE, func(c *cryptobyte.Builder) { c.AddBytes(signer.Raw) })
			})
		}
	})
	basicDER := basic.BytesOrPanic()
	var resp cryptobyte.Builder
	resp.AddASN1(asn1.SEQUENCE, func(c *cryptobyte.Builder) {
		c.AddASN1Enum(0) // successful
		c.AddASN1(ctag0, func(c *cryptobyte.Builder) {
			c.AddASN1(asn1.SEQUENCE, func(c *cryptobyte.Builder) {
				c.AddASN1ObjectIdentifier(oidOCSPBasic)
				c.AddASN1OctetString(basicDER)
			})
		})
	})
	return resp.BytesOrPanic()
}
