package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// loadChain reads the PEM certificates of path, leaf first, and skips every
// other block: a HAProxy crt file holds the private key too, and this
// daemon neither needs nor keeps it. issuer, when not nil, is appended when
// the file holds the leaf alone.
func loadChain(path string, issuer *x509.Certificate) (*tls.Certificate, *x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var chain [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			chain = append(chain, block.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(chain) == 1 {
		if issuer == nil {
			return nil, nil, fmt.Errorf("%s: the leaf alone, and no -issuer: the issuer is needed to ask about it", path)
		}
		chain = append(chain, issuer.Raw)
	}
	return &tls.Certificate{Certificate: chain, Leaf: leaf}, leaf, nil
}

// loadCertificate reads the first PEM certificate of path.
func loadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM certificate", path)
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}
