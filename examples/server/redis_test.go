package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/staplerkit/ocsp/cache/redisstore/redistest"
	"github.com/staplerkit/ocsp/responder"
)

func TestTwoServersShareOneRequestThroughRedis(t *testing.T) {
	twoServersShareOneRequest(t, redistest.Start(t).URL())
}

// TestTwoServersShareOneRequestThroughARedisCluster: -redis takes a
// cluster URL (a seed node and more addr= parameters).
func TestTwoServersShareOneRequestThroughARedisCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3).Addrs()
	twoServersShareOneRequest(t, "redis+cluster://"+addrs[0]+"?addr="+addrs[1]+"&addr="+addrs[2])
}

func TestRedisURLs(t *testing.T) {
	for _, bad := range []string{"127.0.0.1:6379", "http://127.0.0.1", "redis+tunnel://127.0.0.1:6379", "redis+sentinel://127.0.0.1:26379"} {
		if c, err := redisClient(bad); err == nil {
			c.Close()
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6379", "redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001", "redis+sentinel://127.0.0.1:26379?master_name=mymaster&addr=127.0.0.1:26380"} {
		c, err := redisClient(good)
		if err != nil {
			t.Errorf("%q: %v", good, err)
			continue
		}
		c.Close()
	}
}

func twoServersShareOneRequest(t *testing.T, redisURL string) {
	ca, err := responder.NewCA(responder.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ocspServer := responder.NewServer(responder.New(ca))
	defer ocspServer.Close()
	leaf, err := ocspServer.Issue(responder.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, leaf.CertPEM, 0o600)
	os.WriteFile(keyPath, leaf.KeyPEM, 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	var staples [][]byte
	var dones []chan error
	for range 2 {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		dones = append(dones, done)
		go func() {
			done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-cert", certPath, "-key", keyPath, "-redis", redisURL}, pw, io.Discard)
			pw.Close()
		}()
		addr, _ := readAddrs(t, pr)
		var staple []byte
		for deadline := time.Now().Add(time.Minute); staple == nil && time.Now().Before(deadline); {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
			if err != nil {
				t.Fatal(err)
			}
			staple = conn.ConnectionState().OCSPResponse
			conn.Close()
			if staple == nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if _, err := ocsp.ParseResponseForCert(staple, leaf.Cert, ca.Cert); err != nil {
			t.Fatalf("server %d: %v", len(staples), err)
		}
		staples = append(staples, staple)
	}
	if !bytes.Equal(staples[0], staples[1]) {
		t.Fatal("the two servers staple different responses")
	}
	if n := ocspServer.Responder.RequestCount(); n != 1 {
		t.Fatalf("%d responder requests for two servers, want 1", n)
	}
	cancel()
	for _, done := range dones {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
