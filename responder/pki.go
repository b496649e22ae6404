package responder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyType selects the algorithm of a key the test PKI mints.
type KeyType int

const (
	// ECDSA is an ECDSA P-256 key (the default: fast to make and to sign with).
	ECDSA KeyType = iota
	// RSA is a 2048-bit RSA key.
	RSA
)

// String names the key type.
func (k KeyType) String() string {
	if k == RSA {
		return "RSA"
	}
	return "ECDSA"
}

// oidTLSFeature is the RFC 7633 TLS feature extension (id-pe-tlsfeature).
var oidTLSFeature = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}

// mustStapleValue is the extension value SEQUENCE { INTEGER 5 }: the
// status_request feature.
var mustStapleValue = []byte{0x30, 0x03, 0x02, 0x01, 0x05}

// CA is a root certificate authority for tests and small private PKIs. It
// issues leaf certificates and delegated OCSP responder certificates.
type CA struct {
	// Cert is the self-signed root certificate.
	Cert *x509.Certificate
	// Key is the root's private key.
	Key crypto.Signer
	// CertPEM and KeyPEM are Cert and Key in PEM (the key as PKCS #8), for
	// tools such as openssl.
	CertPEM, KeyPEM []byte
}

// CAOptions configure NewCA. The zero value gives an ECDSA root named
// "staplerkit test CA", valid from an hour ago for ten years.
type CAOptions struct {
	CommonName string
	KeyType    KeyType
	NotBefore  time.Time
	NotAfter   time.Time
}

// NewCA mints a self-signed root CA.
func NewCA(opts CAOptions) (*CA, error) {
	if opts.CommonName == "" {
		opts.CommonName = "staplerkit test CA"
	}
	notBefore, notAfter := validity(opts.NotBefore, opts.NotAfter, 10*365*24*time.Hour)
	key, err := newKey(opts.KeyType)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: opts.CommonName, Organization: []string{"staplerkit"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, keyPEM, err := createCert(tmpl, nil, key, nil)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(cert), KeyPEM: keyPEM}, nil
}

// LeafOptions configure CA.Issue. The zero value gives an ECDSA server and
// client certificate for "localhost" and 127.0.0.1, valid from an hour ago
// for 90 days, with no AIA extension.
type LeafOptions struct {
	// DNSNames and IPAddresses are the subject alternative names; when both
	// are empty, "localhost" and 127.0.0.1.
	DNSNames    []string
	IPAddresses []net.IP
	KeyType     KeyType
	// MustStaple adds the RFC 7633 TLS feature extension (status_request).
	MustStaple bool
	// OCSPServer is the AIA OCSP URLs; empty means no OCSP URL.
	OCSPServer []string
	// IssuingCertificateURL is the AIA caIssuers URLs.
	IssuingCertificateURL []string
	NotBefore, NotAfter   time.Time
}

// Leaf is an issued end-entity certificate.
type Leaf struct {
	// Certificate is the chain (leaf, then the CA) with its key and Leaf set,
	// ready for tls.Config.Certificates.
	Certificate tls.Certificate
	// Cert is the parsed leaf.
	Cert *x509.Certificate
	// Key is the leaf's private key.
	Key crypto.Signer
	// CertPEM is the chain (leaf, then the CA) in PEM; KeyPEM the key (PKCS #8).
	CertPEM, KeyPEM []byte
}

// Issue mints a leaf certificate signed by the CA.
func (ca *CA) Issue(opts LeafOptions) (*Leaf, error) {
	key, err := newKey(opts.KeyType)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := validity(opts.NotBefore, opts.NotAfter, 90*24*time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: firstName(opts)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              opts.DNSNames,
		IPAddresses:           opts.IPAddresses,
		OCSPServer:            opts.OCSPServer,
		IssuingCertificateURL: opts.IssuingCertificateURL,
	}
	if len(opts.DNSNames) == 0 && len(opts.IPAddresses) == 0 {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if opts.KeyType == RSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if opts.MustStaple {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidTLSFeature, Value: mustStapleValue})
	}
	cert, keyPEM, err := createCert(tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		Certificate: tls.Certificate{
			Certificate: [][]byte{cert.Raw, ca.Cert.Raw},
			PrivateKey:  key,
			Leaf:        cert,
		},
		Cert:    cert,
		Key:     key,
		CertPEM: append(encodeCert(cert), ca.CertPEM...),
		KeyPEM:  keyPEM,
	}, nil
}

// Signer is a key and certificate that sign OCSP responses.
type Signer struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM and KeyPEM are Cert and Key in PEM (the key as PKCS #8).
	CertPEM, KeyPEM []byte
}

// DelegateOptions configure CA.NewDelegate. The zero value gives an ECDSA
// certificate with the id-kp-OCSPSigning extended key usage, valid from an
// hour ago for a year.
type DelegateOptions struct {
	KeyType KeyType
	// NoOCSPSigning leaves out the id-kp-OCSPSigning extended key usage, which
	// makes the certificate unfit to sign responses (RFC 6960 4.2.2.2).
	NoOCSPSigning       bool
	NotBefore, NotAfter time.Time
	// KeyUsage replaces the default key usage (digitalSignature), to make
	// certificates a verifier must refuse.
	KeyUsage x509.KeyUsage
	// ExtraExtensions are added to the certificate as they are (a critical
	// extension of an unknown type, say).
	ExtraExtensions []pkix.Extension
}

// NewDelegate mints a delegated OCSP responder certificate issued by the CA.
func (ca *CA) NewDelegate(opts DelegateOptions) (*Signer, error) {
	key, err := newKey(opts.KeyType)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := validity(opts.NotBefore, opts.NotAfter, 365*24*time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "staplerkit OCSP responder"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,

		ExtraExtensions: opts.ExtraExtensions,
	}
	if opts.KeyUsage != 0 {
		tmpl.KeyUsage = opts.KeyUsage
	}
	if !opts.NoOCSPSigning {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	}
	cert, keyPEM, err := createCert(tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		return nil, err
	}
	return &Signer{Cert: cert, Key: key, CertPEM: encodeCert(cert), KeyPEM: keyPEM}, nil
}

func firstName(opts LeafOptions) string {
	if len(opts.DNSNames) > 0 {
		return opts.DNSNames[0]
	}
	if len(opts.IPAddresses) > 0 {
		return opts.IPAddresses[0].String()
	}
	return "localhost"
}

func validity(notBefore, notAfter time.Time, lifetime time.Duration) (time.Time, time.Time) {
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = notBefore.Add(lifetime)
	}
	return notBefore, notAfter
}

func newKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case ECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("responder: unknown key type %d", kt)
}

// randomSerial returns a positive 128-bit serial number.
func randomSerial() *big.Int {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

// createCert signs tmpl for key with signerKey as parent (self-signed when
// parent is nil), and returns the certificate and key's PEM.
func createCert(tmpl, parent *x509.Certificate, key, signerKey crypto.Signer) (*x509.Certificate, []byte, error) {
	if parent == nil {
		parent, signerKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("responder: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	return cert, keyPEM, err
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("responder: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
