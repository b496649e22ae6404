package stapler

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os/exec"
	"strings"
	"testing"
)

// PROBE (passes): promises "exactly crypto/tls's choice" and "never another
// certificate's staple", with openssl s_client (-tls1_2 / -tls1_3,
// -sigalgs, -servername, -status) against the same config served plainly
// by crypto/tls and wrapped: the same leaf, and the wrapped server staples
// it (which staple it is, is checked by the Go-client probes).
func TestOpenSSLClientsMatchPlainCryptoTLS(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	e := newEnv(t, on)
	certs := attack6Certs(e)
	outer := &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
	plain := e.serve(outer)
	wrapped := e.serve(e.s.Wrap(outer))
	for i := range certs {
		l, _ := x509.ParseCertificate(certs[i].Certificate[0])
		eventually(t, "staples", func() bool {
			st, err := e.s.StatusOf(CertificateID(l.Raw))
			return err == nil && st.Stapled
		})
	}
	run := func(addr string, args ...string) (leaf *x509.Certificate, stapled bool) {
		t.Helper()
		cmd := exec.Command(openssl, append([]string{"s_client", "-connect", addr, "-status"}, args...)...)
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		if b, _ := pem.Decode(out[max(0, bytes.Index(out, []byte("-----BEGIN CERTIFICATE-----"))):]); b != nil {
			leaf, _ = x509.ParseCertificate(b.Bytes)
		}
		return leaf, bytes.Contains(out, []byte("OCSP Response Status: successful"))
	}
	variants := [][]string{
		{"-tls1_2"},
		{"-tls1_3"},
		{"-tls1_2", "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"},
		{"-tls1_2", "-sigalgs", "ECDSA+SHA256"},
		{"-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"},
		{"-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"},
		{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"},
		{"-tls1_2", "-cipher", "AES128-GCM-SHA256"},
	}
	compared := 0
	for _, v := range variants {
		for _, name := range []string{"a.test", "x.b.test", "c.test", "none.test", ""} {
			args := v
			if name != "" {
				args = append([]string{"-servername", name}, v...)
			} else {
				args = append([]string{"-noservername"}, v...)
			}
			want, _ := run(plain, args...)
			got, stapled := run(wrapped, args...)
			if (want == nil) != (got == nil) || want != nil && !want.Equal(got) {
				t.Errorf("%v: wrapped served %v, crypto/tls %v", args, serialOf(got), serialOf(want))
				continue
			}
			if got != nil {
				compared++
				if !stapled {
					t.Errorf("%v: no staple", args)
				}
			}
		}
	}
	if compared < 10 {
		t.Fatalf("only %d handshakes compared", compared)
	}
}

func serialOf(c *x509.Certificate) any {
	if c == nil {
		return "none"
	}
	return c.SerialNumber
}
