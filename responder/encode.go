package responder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// The DER of a BasicOCSPResponse (RFC 6960 4.2.1), built directly with
// cryptobyte: encoding/asn1's reflection made up most of a responder's CPU
// time per response, far more than the signature.

var (
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidOCSPBasic       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// encodeResponse builds and signs a successful response about one
// certificate. issuer sets the CertID's issuer hashes (SHA-1), responder
// names the signer (by name), key signs, and embed, when set, is sent along.
func encodeResponse(issuer, responder *x509.Certificate, key crypto.Signer, embed *x509.Certificate, tmpl *ocsp.Response, producedAt time.Time) ([]byte, error) {
	nameHash, keyHash, err := issuerHashes(issuer, crypto.SHA1)
	if err != nil {
		return nil, err
	}
	var tbs cryptobyte.Builder
	tbs.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseData
		b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // byName
			b.AddBytes(responder.RawSubject)
		})
		b.AddASN1GeneralizedTime(producedAt.UTC())
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // responses
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SingleResponse
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CertID
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidSHA1)
						b.AddASN1NULL()
					})
					b.AddASN1OctetString(nameHash)
					b.AddASN1OctetString(keyHash)
					b.AddASN1BigInt(tmpl.SerialNumber)
				})
				switch tmpl.Status {
				case ocsp.Good:
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {})
				case ocsp.Revoked:
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1GeneralizedTime(tmpl.RevokedAt.UTC())
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1Enum(int64(tmpl.RevocationReason))
						})
					})
				default:
					b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(*cryptobyte.Builder) {})
				}
				b.AddASN1GeneralizedTime(tmpl.ThisUpdate.UTC())
				if !tmpl.NextUpdate.IsZero() {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1GeneralizedTime(tmpl.NextUpdate.UTC())
					})
				}
			})
		})
	})
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, err
	}
	sigAlg, hash, err := signatureAlgorithm(key)
	if err != nil {
		return nil, err
	}
	digest := tbsDER
	if hash != 0 {
		h := hash.New()
		h.Write(tbsDER)
		digest = h.Sum(nil)
	}
	sig, err := key.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, err
	}

	var basic cryptobyte.Builder
	basic.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // BasicOCSPResponse
		b.AddBytes(tbsDER)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(sigAlg)
			if sigAlg.Equal(oidSHA256WithRSA) {
				b.AddASN1NULL()
			}
		})
		b.AddASN1BitString(sig)
		if embed != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(embed.Raw)
				})
			})
		}
	})
	basicDER, err := basic.Bytes()
	if err != nil {
		return nil, err
	}
	var resp cryptobyte.Builder
	resp.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // OCSPResponse
		b.AddASN1Enum(int64(ocsp.Success))
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseBytes
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1OctetString(basicDER)
			})
		})
	})
	return resp.Bytes()
}

// signatureAlgorithm picks the signature for key: ECDSA or RSA with
// SHA-256, or Ed25519 (which hashes nothing).
func signatureAlgorithm(key crypto.Signer) (asn1.ObjectIdentifier, crypto.Hash, error) {
	switch key.Public().(type) {
	case *ecdsa.PublicKey:
		return oidECDSAWithSHA256, crypto.SHA256, nil
	case *rsa.PublicKey:
		return oidSHA256WithRSA, crypto.SHA256, nil
	case ed25519.PublicKey:
		return oidEd25519, 0, nil
	}
	return nil, 0, fmt.Errorf("responder: unsupported key type %T", key.Public())
}
