package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/stapler"
)

// fetchResponse asks the leaf's responder (its first AIA OCSP URL) by POST.
// It reads at most one byte more than a staple may have, so that a huge
// body is refused by VerifyResponse rather than held.
func fetchResponse(ctx context.Context, leaf, issuer *x509.Certificate) ([]byte, error) {
	if len(leaf.OCSPServer) == 0 {
		return nil, errors.New("the certificate names no OCSP responder")
	}
	req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, err
	}
	url := leaf.OCSPServer[0]
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered HTTP %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, stapler.MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return body, nil
}
