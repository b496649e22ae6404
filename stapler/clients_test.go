package stapler

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/responder"
)

// openssl s_client -status, with and without SNI, TLS 1.2 and 1.3, against
// a wrapped config listing two certificates for different names: each gets
// the certificate for its name (the first without SNI) and an OCSP
// response.
func TestOpenSSLStatus(t *testing.T) {
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	e := newEnv(t, on)
	a, ca := issueTestLeaf(t, e, false, "a.test")
	_, cb := issueTestLeaf(t, e, false, "b.test")
	_ = a
	addr := e.serve(e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{ca, cb}}))
	for _, tc := range []struct{ sni, version, wantCN string }{
		{"", "-tls1_2", "a.test"}, {"", "-tls1_3", "a.test"},
		{"b.test", "-tls1_2", "b.test"}, {"b.test", "-tls1_3", "b.test"},
	} {
		args := []string{"s_client", "-connect", addr, "-status", tc.version}
		if tc.sni == "" {
			args = append(args, "-noservername")
		} else {
			args = append(args, "-servername", tc.sni)
		}
		ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Stdin = strings.NewReader("Q\n")
		out, _ := cmd.CombinedOutput()
		cancel()
		s := string(out)
		if !strings.Contains(s, "OCSP Response Status: successful") {
			t.Fatalf("%s %s: no OCSP response:\n%s", tc.sni, tc.version, s)
		}
		if !strings.Contains(s, "CN = "+tc.wantCN) && !strings.Contains(s, "CN="+tc.wantCN) {
			t.Fatalf("%s %s: not the certificate for %s:\n%s", tc.sni, tc.version, tc.wantCN, s)
		}
	}
}

// A wrapped client config listing two certificates (the first for a CA the
// server does not accept), and one with GetClientCertificate, in real
// mutual TLS 1.2 and 1.3 handshakes: the server sees the certificate it
// accepts, with no panic.
func TestMutualTLS(t *testing.T) {
	e := newEnv(t, on)
	foreignCA, err := responder.NewCA(responder.CAOptions{CommonName: "foreign"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignCA.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	server := &tls.Config{Certificates: []tls.Certificate{e.leaf.Certificate}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	addr := e.serve(server)
	listed := e.s.Wrap(&tls.Config{Certificates: []tls.Certificate{foreign.Certificate, e.leaf.Certificate}})
	app := e.s.Wrap(&tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &e.leaf.Certificate, nil
	}})
	for _, client := range []*tls.Config{listed, app} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			c := client.Clone()
			c.RootCAs, c.ServerName, c.MaxVersion = pool, "localhost", v
			conn, err := tls.Dial("tcp", addr, c)
			if err != nil {
				t.Fatalf("TLS %x: %v", v, err)
			}
			// The server verifies the client's certificate during the
			// handshake; a read completes it on TLS 1.3.
			conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			conn.Read(make([]byte, 1))
			conn.Close()
		}
	}
}

// opensslCA is a CA run by openssl ca in a directory, whose CRL (made by
// openssl ca -gencrl) is served over HTTP on loopback.
type opensslCA struct {
	t       *testing.T
	dir     string
	url     string
	mu      sync.Mutex
	crl     []byte
	openssl string
}

const opensslCAConf = `[ca]
default_ca = CA_default
[CA_default]
dir = %[1]s
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 30
default_crl_hours = 24
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
[client_ext]
basicConstraints = CA:false
extendedKeyUsage = clientAuth
crlDistributionPoints = URI:%[2]s
[crl_idp]
issuingDistributionPoint = critical, @idp
[idp]
fullname = URI:%[2]s
onlysomereasons = keyCompromise
[crl_idp_user]
issuingDistributionPoint = critical, @idp_user
[idp_user]
fullname = URI:%[2]s
onlyuser = TRUE
`

func newOpenSSLCA(t *testing.T) *opensslCA {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	o := &opensslCA{t: t, dir: t.TempDir(), openssl: openssl}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		defer o.mu.Unlock()
		w.Write(o.crl)
	}))
	t.Cleanup(srv.Close)
	o.url = srv.URL + "/ca.crl"
	os.WriteFile(filepath.Join(o.dir, "ca.cnf"), fmt.Appendf(nil, opensslCAConf, o.dir, o.url), 0o600)
	os.WriteFile(filepath.Join(o.dir, "index.txt"), nil, 0o600)
	os.WriteFile(filepath.Join(o.dir, "serial"), []byte("1000\n"), 0o600)
	os.WriteFile(filepath.Join(o.dir, "crlnumber"), []byte("01\n"), 0o600)
	o.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
		"-subj", "/CN=OpenSSL CRL CA", "-days", "30", "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	return o
}

func (o *opensslCA) run(args ...string) {
	o.t.Helper()
	cmd := exec.Command(o.openssl, args...)
	cmd.Dir = o.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		o.t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

// client issues a client certificate named name, and revokes it when
// reason is set.
func (o *opensslCA) client(name, reason string) tls.Certificate {
	o.run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+name)
	o.run("ca", "-batch", "-config", "ca.cnf", "-extensions", "client_ext", "-notext", "-in", name+".csr", "-out", name+".pem")
	if reason != "" {
		o.run("ca", "-config", "ca.cnf", "-revoke", name+".pem", "-crl_reason", reason)
	}
	c, err := tls.LoadX509KeyPair(filepath.Join(o.dir, name+".pem"), filepath.Join(o.dir, name+".key"))
	if err != nil {
		o.t.Fatal(err)
	}
	return c
}

// gencrl makes the CRL with openssl ca -gencrl and serves it.
func (o *opensslCA) gencrl(args ...string) {
	o.run(append([]string{"ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"}, args...)...)
	b, err := os.ReadFile(filepath.Join(o.dir, "crl.pem"))
	if err != nil {
		o.t.Fatal(err)
	}
	o.mu.Lock()
	o.crl = b
	o.mu.Unlock()
}

func (o *opensslCA) caCert() *x509.Certificate {
	c, err := tls.LoadX509KeyPair(filepath.Join(o.dir, "ca.pem"), filepath.Join(o.dir, "ca.key"))
	if err != nil {
		o.t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(c.Certificate[0])
	return ca
}

// handshake runs an mTLS handshake on loopback, the server verifying the
// client's certificate up to the CA and then with v, and returns the
// server's error.
func mtlsHandshake(t *testing.T, ca *x509.Certificate, v *Verifier, client tls.Certificate) error {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "server"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	result := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			result <- err
			return
		}
		defer c.Close()
		result <- tls.Server(c, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, VerifyConnection: v.VerifyConnection}).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{client}})
	if err == nil {
		c.Read(make([]byte, 1)) // TLS 1.3: the server's verdict comes after the client's handshake
		c.Close()
	}
	return <-result
}

func TestVerifierCRLFromOpenSSLInAnMTLSHandshake(t *testing.T) {
	o := newOpenSSLCA(t)
	good, revoked := o.client("good", ""), o.client("revoked", "keyCompromise")
	o.gencrl()
	ca := o.caCert()
	clk := newFakeClock()
	hard := &Verifier{HardFail: true, FetchTimeout: 10 * time.Second, Time: clk.Now}
	if err := mtlsHandshake(t, ca, hard, good); err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	var rev *RevokedError
	if err := mtlsHandshake(t, ca, hard, revoked); !errors.As(err, &rev) || rev.Reason != 1 || rev.RevokedAt.IsZero() {
		t.Fatalf("revoked client: %v", err)
	}
	if m := hard.CRLMetrics(); m.Held != 1 || m.Fetches[CRLFetchOK] != 1 {
		t.Fatalf("metrics %+v", m)
	}

	for _, tc := range []struct {
		name string
		args []string
		v    func(*Verifier)
		want error // nil: the revoked client is found revoked
	}{
		{name: "an issuing distribution point for user certificates", args: []string{"-crlexts", "crl_idp_user"}},
		{name: "an issuing distribution point for some reasons only", args: []string{"-crlexts", "crl_idp"}, want: ErrCRLScope},
		{name: "expired", args: []string{"-crl_lastupdate", clk.Now().Add(-48 * time.Hour).UTC().Format("20060102150405Z"), "-crl_nextupdate", clk.Now().Add(-time.Hour).UTC().Format("20060102150405Z")}, want: ErrCRLExpired},
		{name: "over the size cap", v: func(v *Verifier) { v.MaxCRLBytes = 100 }, want: ErrCRLTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o.t = t
			o.gencrl(tc.args...)
			soft, hard := &Verifier{FetchTimeout: 10 * time.Second, Time: clk.Now}, &Verifier{HardFail: true, FetchTimeout: 10 * time.Second, Time: clk.Now}
			if tc.v != nil {
				tc.v(soft)
				tc.v(hard)
			}
			if tc.want == nil {
				if err := mtlsHandshake(t, ca, hard, revoked); !errors.As(err, &rev) {
					t.Fatalf("revoked client: %v", err)
				}
				if err := mtlsHandshake(t, ca, hard, good); err != nil {
					t.Fatalf("good client: %v", err)
				}
				return
			}
			if err := mtlsHandshake(t, ca, soft, revoked); err != nil {
				t.Fatalf("soft fail refused: %v", err)
			}
			if err := mtlsHandshake(t, ca, hard, good); !errors.Is(err, tc.want) {
				t.Fatalf("hard fail: %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("signed by another key", func(t *testing.T) {
		other := newOpenSSLCA(t) // the same name, another key
		other.gencrl()
		o.mu.Lock()
		o.crl = other.crl
		o.mu.Unlock()
		if err := mtlsHandshake(t, ca, &Verifier{HardFail: true, FetchTimeout: 10 * time.Second, Time: clk.Now}, revoked); !errors.Is(err, ErrCRLWrongIssuer) {
			t.Fatalf("hard fail: %v", err)
		}
	})
}
