package responder

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

type fixture struct {
	ca   *CA
	srv  *Server
	leaf *Leaf
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(New(ca))
	t.Cleanup(srv.Close)
	leaf, err := srv.Issue(LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{ca, srv, leaf}
}

// queryLimit bounds a query that should be answered: long enough that
// only a hang reaches it, however busy the machine (reading the 4 MiB the
// huge and endless bodies are cut at takes a while under -race and load).
const queryLimit = time.Minute

// hangDeadline is how long a query waits on a responder that hangs: any wait
// shows the hang, so it is short.
const hangDeadline = 200 * time.Millisecond

// query asks the server about cert over method and returns the HTTP answer.
func query(t *testing.T, base string, cert, issuer *x509.Certificate, method string) (*http.Response, []byte, error) {
	t.Helper()
	return queryWithin(t, queryLimit, base, cert, issuer, method)
}

// queryWithin is query with the client giving up after limit.
func queryWithin(t *testing.T, limit time.Duration, base string, cert, issuer *x509.Certificate, method string) (*http.Response, []byte, error) {
	t.Helper()
	der, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var req *http.Request
	if method == http.MethodGet {
		req, _ = http.NewRequestWithContext(ctx, method, base+"/"+url.PathEscape(base64.StdEncoding.EncodeToString(der)), nil)
	} else {
		req, _ = http.NewRequestWithContext(ctx, method, base, bytes.NewReader(der))
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp, body, err
}

func TestAnswersGETAndPOSTWithEachStatus(t *testing.T) {
	f := newFixture(t)
	revokedAt := time.Now().Add(-time.Hour).Truncate(time.Second)
	revoked, _ := f.srv.Issue(LeafOptions{KeyType: RSA})
	f.srv.Responder.SetStatus(revoked.Cert.SerialNumber, Revoked(revokedAt, ocsp.KeyCompromise))
	unknown, _ := f.ca.Issue(LeafOptions{})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		for _, tc := range []struct {
			leaf *Leaf
			want int
		}{{f.leaf, ocsp.Good}, {revoked, ocsp.Revoked}, {unknown, ocsp.Unknown}} {
			resp, body, err := query(t, f.srv.URL, tc.leaf.Cert, f.ca.Cert, method)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/ocsp-response" {
				t.Fatalf("%s: HTTP %d %q", method, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			for _, h := range []string{"Last-Modified", "Expires", "Cache-Control", "ETag"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("%s: no %s header", method, h)
				}
			}
			parsed, err := ocsp.ParseResponseForCert(body, tc.leaf.Cert, f.ca.Cert)
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			if parsed.Status != tc.want {
				t.Fatalf("%s: status %d, want %d", method, parsed.Status, tc.want)
			}
			if tc.want == ocsp.Revoked && (!parsed.RevokedAt.Equal(revokedAt) || parsed.RevocationReason != ocsp.KeyCompromise) {
				t.Fatalf("revocation %v %d", parsed.RevokedAt, parsed.RevocationReason)
			}
			if parsed.Certificate != nil {
				t.Fatal("CA-signed response embeds a certificate")
			}
		}
	}
	reqs := f.srv.Responder.Requests()
	if len(reqs) != 6 || reqs[0].Method != "GET" || reqs[5].Method != "POST" || reqs[0].Serial.Cmp(f.leaf.Cert.SerialNumber) != 0 {
		t.Fatalf("requests %+v", reqs)
	}
	if f.srv.Responder.CountFor(revoked.Cert.SerialNumber) != 2 {
		t.Fatal("CountFor wrong")
	}
}

func TestDelegatedResponderSigns(t *testing.T) {
	f := newFixture(t)
	d, err := f.ca.NewDelegate(DelegateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Responder.UseDelegate(d)
	_, body, err := query(t, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodPost)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Certificate == nil || !bytes.Equal(parsed.Certificate.Raw, d.Cert.Raw) {
		t.Fatal("delegate certificate not embedded")
	}
	if len(parsed.Certificate.ExtKeyUsage) != 1 || parsed.Certificate.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
		t.Fatal("delegate lacks OCSPSigning")
	}
}

func TestWindow(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f.srv.Responder.SetClock(func() time.Time { return now })
	f.srv.Responder.SetWindow(Window{Backdate: time.Hour, Lifetime: 2 * time.Hour})
	_, body, _ := query(t, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodPost)
	parsed, err := ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if !parsed.ThisUpdate.Equal(now.Add(-time.Hour)) || !parsed.NextUpdate.Equal(now.Add(time.Hour)) {
		t.Fatalf("window %v %v", parsed.ThisUpdate, parsed.NextUpdate)
	}
	f.srv.Responder.SetWindow(Window{NoNextUpdate: true})
	_, body, _ = query(t, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodPost)
	if parsed, err = ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert); err != nil || !parsed.NextUpdate.IsZero() {
		t.Fatalf("no-nextUpdate: %v %v", parsed.NextUpdate, err)
	}
}

func TestUnknownIssuerIsUnauthorized(t *testing.T) {
	f := newFixture(t)
	other, _ := NewCA(CAOptions{CommonName: "other"})
	foreign, _ := other.Issue(LeafOptions{})
	_, body, err := query(t, f.srv.URL, foreign.Cert, other.Cert, http.MethodPost)
	if err != nil {
		t.Fatal(err)
	}
	var re ocsp.ResponseError
	if _, err := ocsp.ParseResponse(body, nil); !errors.As(err, &re) || re.Status != ocsp.Unauthorized {
		t.Fatalf("got %v", err)
	}
}

func TestMalformedRequests(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{"", "garbage", strings.Repeat("x", MaxRequestBytes+10)} {
		resp, err := http.Post(f.srv.URL, "application/ocsp-request", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, ocsp.MalformedRequestErrorResponse) {
			t.Fatalf("body %q answered %x", body[:min(len(body), 10)], got)
		}
	}
	resp, err := http.Get(f.srv.URL + "/not%20base64")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, ocsp.MalformedRequestErrorResponse) {
		t.Fatalf("GET garbage answered %x", got)
	}
	req, _ := http.NewRequest(http.MethodPut, f.srv.URL, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, POST" {
		t.Fatalf("PUT: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestEachFault asserts what a client sees for every fault: the HTTP status,
// the content type, and what parsing and verifying the body against the CA
// says.
func TestEachFault(t *testing.T) {
	f := newFixture(t)
	d, err := f.ca.NewDelegate(DelegateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check := map[FaultKind]func(t *testing.T, resp *http.Response, body []byte, err error){}
	ocspStatus := func(want ocsp.ResponseStatus) func(*testing.T, *http.Response, []byte, error) {
		return func(t *testing.T, resp *http.Response, body []byte, err error) {
			var re ocsp.ResponseError
			if _, perr := ocsp.ParseResponse(body, nil); !errors.As(perr, &re) || re.Status != want {
				t.Fatalf("got %v, want OCSP status %v", perr, want)
			}
		}
	}
	httpStatus := func(code int, contentType string) func(*testing.T, *http.Response, []byte, error) {
		return func(t *testing.T, resp *http.Response, body []byte, err error) {
			if err != nil || resp.StatusCode != code || !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) {
				t.Fatalf("got %v %v, want %d %s", resp, err, code, contentType)
			}
		}
	}
	parseFails := func(t *testing.T, resp *http.Response, body []byte, err error) {
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("got %v %v", resp, err)
		}
		if _, perr := ocsp.ParseResponse(body, nil); perr == nil {
			t.Fatal("body parsed")
		}
	}
	parsed := func(t *testing.T, body []byte) *ocsp.Response {
		p, err := ocsp.ParseResponse(body, nil)
		if err != nil {
			t.Fatalf("response does not parse: %v", err)
		}
		return p
	}
	check[FaultHang] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the client's deadline", err)
		}
	}
	check[FaultEndlessBody] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if err == nil && len(body) < 4<<20 {
			t.Fatalf("body ended after %d bytes", len(body))
		}
	}
	check[FaultHTTP500] = httpStatus(500, "text/plain")
	check[FaultHTTP503HTML] = httpStatus(503, "text/html")
	check[FaultWrongContentType] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		httpStatus(200, "text/html")(t, resp, body, err)
		parsed(t, body)
	}
	check[FaultTruncatedBody] = parseFails
	check[FaultGarbageBody] = parseFails
	check[FaultHugeBody] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		parseFails(t, resp, body, err)
		if len(body) < 1<<20 || resp.ContentLength != 100<<20 {
			t.Fatalf("body of %d bytes, declared %d", len(body), resp.ContentLength)
		}
	}
	check[FaultRedirectLoop] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/") && !strings.HasPrefix(resp.Header.Get("Location"), f.srv.URL) {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	check[FaultRedirectScheme] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "ftp://") {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	check[FaultMalformedRequest] = ocspStatus(ocsp.Malformed)
	check[FaultInternalError] = ocspStatus(ocsp.InternalError)
	check[FaultTryLater] = ocspStatus(ocsp.TryLater)
	check[FaultSigRequired] = ocspStatus(ocsp.SignatureRequired)
	check[FaultUnauthorized] = ocspStatus(ocsp.Unauthorized)
	check[FaultUnauthorizedSigner] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		p := parsed(t, body)
		if p.Certificate == nil || p.Certificate.CheckSignatureFrom(f.ca.Cert) == nil {
			t.Fatal("signer is authorized by the CA")
		}
		if _, err := ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert); err == nil {
			t.Fatal("verifies against the CA")
		}
	}
	check[FaultDelegateWithoutEKU] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		p := parsed(t, body)
		if p.Certificate == nil || p.Certificate.CheckSignatureFrom(f.ca.Cert) != nil || len(p.Certificate.ExtKeyUsage) != 0 {
			t.Fatal("want a CA-issued signer with no EKU")
		}
	}
	check[FaultExpiredDelegate] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		p := parsed(t, body)
		if p.Certificate == nil || !p.Certificate.NotAfter.Before(time.Now()) || p.Certificate.CheckSignatureFrom(f.ca.Cert) != nil {
			t.Fatal("want an expired CA-issued signer")
		}
	}
	check[FaultRevokedDelegate] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		p := parsed(t, body)
		if p.Certificate == nil || p.Certificate.CheckSignatureFrom(f.ca.Cert) != nil {
			t.Fatal("want a CA-issued signer")
		}
		// The responder itself says the delegate is revoked.
		_, body, _ = query(t, f.srv.URL, p.Certificate, f.ca.Cert, http.MethodPost)
		if st, err := ocsp.ParseResponseForCert(body, p.Certificate, f.ca.Cert); err != nil || st.Status != ocsp.Revoked {
			t.Fatalf("delegate status %v %v", st, err)
		}
	}
	check[FaultWrongSerial] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if p := parsed(t, body); p.SerialNumber.Cmp(f.leaf.Cert.SerialNumber) == 0 {
			t.Fatal("serial is right")
		}
		if _, err := ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert); err == nil {
			t.Fatal("matched the certificate")
		}
	}
	check[FaultWrongIssuerHash] = func(t *testing.T, resp *http.Response, body []byte, fetchErr error) {
		if fetchErr != nil {
			t.Fatalf("no answer: %v", fetchErr)
		}
		// x/crypto/ocsp matches the serial only, so this verifies with it;
		// only a full CertID comparison catches it.
		p, err := ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert)
		if err != nil {
			t.Fatalf("want a response x/crypto accepts: %v", err)
		}
		if p.SerialNumber.Cmp(f.leaf.Cert.SerialNumber) != 0 {
			t.Fatal("serial changed")
		}
		nameHash, _, _ := issuerHashes(f.ca.Cert, p.IssuerHash)
		if bytes.Contains(body, nameHash) {
			t.Fatal("body carries the CA's name hash")
		}
	}
	check[FaultThisUpdateInFuture] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if p := parsed(t, body); !p.ThisUpdate.After(time.Now().Add(30 * time.Minute)) {
			t.Fatalf("thisUpdate %v", p.ThisUpdate)
		}
	}
	check[FaultNextUpdateInPast] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if p := parsed(t, body); !p.NextUpdate.Before(time.Now()) || p.NextUpdate.IsZero() {
			t.Fatalf("nextUpdate %v", p.NextUpdate)
		}
	}
	check[FaultNoNextUpdate] = func(t *testing.T, resp *http.Response, body []byte, err error) {
		if p := parsed(t, body); !p.NextUpdate.IsZero() || p.ThisUpdate.After(time.Now().Add(-90*time.Minute)) {
			t.Fatalf("nextUpdate %v, thisUpdate %v", p.NextUpdate, p.ThisUpdate)
		}
	}
	for _, kind := range AllFaults() {
		t.Run(kind.String(), func(t *testing.T) {
			c, ok := check[kind]
			if !ok {
				t.Fatalf("no check for %v", kind)
			}
			limit := queryLimit
			if kind == FaultHang {
				limit = hangDeadline
			}
			// Once for every request, once for the serial only, once queued.
			f.srv.Responder.SetFault(Fault{Kind: kind})
			resp, body, err := queryWithin(t, limit, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodPost)
			c(t, resp, body, err)
			f.srv.Responder.SetFault(Fault{})

			f.srv.Responder.SetSerialFault(f.leaf.Cert.SerialNumber, Fault{Kind: kind})
			resp, body, err = queryWithin(t, limit, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodGet)
			c(t, resp, body, err)
			f.srv.Responder.SetSerialFault(f.leaf.Cert.SerialNumber, Fault{})

			f.srv.Responder.QueueFaults(Fault{Kind: kind})
			resp, body, err = queryWithin(t, limit, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodPost)
			c(t, resp, body, err)

			// Healthy again, even with a delegate.
			f.srv.Responder.UseDelegate(d)
			_, body, err = query(t, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodPost)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert); err != nil {
				t.Fatalf("did not heal: %v", err)
			}
			f.srv.Responder.UseDelegate(nil)
		})
	}
}

func TestDelayFault(t *testing.T) {
	f := newFixture(t)
	f.srv.Responder.SetSerialFault(f.leaf.Cert.SerialNumber, Fault{Kind: FaultDelay, Delay: 50 * time.Millisecond})
	start := time.Now()
	_, body, err := query(t, f.srv.URL, f.leaf.Cert, f.ca.Cert, http.MethodPost)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("answered before the delay")
	}
	if _, err := ocsp.ParseResponseForCert(body, f.leaf.Cert, f.ca.Cert); err != nil {
		t.Fatal(err)
	}
}

func TestMustStapleAndAIA(t *testing.T) {
	f := newFixture(t)
	ms, err := f.ca.Issue(LeafOptions{MustStaple: true, KeyType: RSA})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ext := range ms.Cert.Extensions {
		found = found || ext.Id.Equal(oidTLSFeature)
	}
	if !found || len(ms.Cert.OCSPServer) != 0 {
		t.Fatalf("must-staple %v, AIA %v", found, ms.Cert.OCSPServer)
	}
	if len(f.leaf.Cert.OCSPServer) != 1 || f.leaf.Cert.OCSPServer[0] != f.srv.URL {
		t.Fatalf("AIA %v", f.leaf.Cert.OCSPServer)
	}
	if _, err := f.leaf.Cert.Verify(x509.VerifyOptions{Roots: pool(f.ca.Cert)}); err != nil {
		t.Fatal(err)
	}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
