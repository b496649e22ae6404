package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHAProxyAnswers(t *testing.T) {
	for _, tc := range []struct {
		answer string
		ok     bool
	}{
		{"OCSP Response updated!\n\n", true},
		{"OCSP Response updated!\n", true},
		{"'set ssl ocsp-response' received invalid base64 encoded response.\n\n", false},
		{"OCSP single response: Certificate ID does not match any certificate or issuer.\n\n", false},
		{"OCSP single response: no longer valid. Must be valid during at least 300s.\n\n", false},
		{"Permission denied\n\n", false},
		{"Unknown command: 'set ssl ocsp-response'\n\n", false},
		{"OCSP Response updated! not really\n\n", false},
		{"", false},
	} {
		err := parseHAProxyAnswer(tc.answer)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.answer, err)
		}
		if err != nil && !errors.Is(err, errHAProxy) {
			t.Errorf("%q: %v does not match errHAProxy", tc.answer, err)
		}
	}
}

// fakeHAProxy listens on a unix socket and answers each connection with
// answer (after reading the command), or not at all when answer is "".
func fakeHAProxy(t *testing.T, answer string) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	commands := make(chan string, 10)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(conn)
			var cmd strings.Builder
			for {
				line, err := br.ReadString('\n')
				cmd.WriteString(line)
				if err != nil || line == "\n" {
					break
				}
			}
			commands <- cmd.String()
			if answer != "" {
				io.WriteString(conn, answer)
				conn.Close()
			} else {
				wg.Add(1)
				go func() { defer wg.Done(); io.Copy(io.Discard, conn); conn.Close() }()
			}
		}
	}()
	return path, commands
}

func TestSetOCSPResponseSendsThePayloadAndReadsTheAnswer(t *testing.T) {
	der := make([]byte, 700)
	for i := range der {
		der[i] = byte(i)
	}
	path, commands := fakeHAProxy(t, "OCSP Response updated!\n\n")
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	if err := setOCSPResponse(ctx, path, der); err != nil {
		t.Fatal(err)
	}
	cmd := <-commands
	b64, ok := strings.CutPrefix(cmd, "set ssl ocsp-response <<\n")
	if !ok {
		t.Fatalf("command %q", cmd)
	}
	got, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(b64, "\n", ""))
	if err != nil || string(got) != string(der) {
		t.Fatalf("payload does not decode to the response: %v", err)
	}
}

func TestSetOCSPResponseFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	path, _ := fakeHAProxy(t, "Permission denied\n\n")
	if err := setOCSPResponse(ctx, path, []byte{1}); !errors.Is(err, errHAProxy) || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("an error answer: %v", err)
	}
	if err := setOCSPResponse(ctx, filepath.Join(t.TempDir(), "none.sock"), []byte{1}); err == nil {
		t.Fatal("no socket: no error")
	}
	silent, _ := fakeHAProxy(t, "")
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if err := setOCSPResponse(short, silent, []byte{1}); err == nil {
		t.Fatal("no answer: no error")
	}
}

// TestAFailedHAProxyUpdateIsRetried until HAProxy takes it.
func TestAFailedHAProxyUpdateIsRetried(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	fails := 2
	succeeded := make(chan struct{}, 10)
	n := newHAProxyNotifier([]string{"sock"}, time.Second, discardLogger())
	n.retryMin, n.retryMax = time.Millisecond, 10*time.Millisecond
	n.send = func(_ context.Context, _ string, der []byte) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, string(der))
		if fails > 0 {
			fails--
			return errHAProxy
		}
		succeeded <- struct{}{}
		return nil
	}
	n.start()
	defer n.close()
	n.update("f", []byte("r1"), time.Now().Add(time.Hour))
	select {
	case <-succeeded:
	case <-time.After(hang):
		t.Fatal("never applied")
	}
	mu.Lock()
	if strings.Join(sent, ",") != "r1,r1,r1" {
		t.Fatalf("sent %v", sent)
	}
	mu.Unlock()
}

// TestHAProxyIsNeverSentAReplacedOrRemovedResponse: what waits for a retry
// is replaced by a newer response, and dropped when the file is removed
// (an expired response must not reach HAProxy later).
func TestHAProxyIsNeverSentAReplacedOrRemovedResponse(t *testing.T) {
	n := newHAProxyNotifier([]string{"a", "b"}, time.Second, discardLogger()) // not started
	n.update("f", []byte("old"), time.Now().Add(time.Hour))
	n.update("f", []byte("new"), time.Now().Add(time.Hour))
	n.update("g", []byte("other"), time.Now().Add(time.Hour))
	if len(n.pending) != 4 || string(n.pending[pendingKey{"a", "f"}].der) != "new" {
		t.Fatalf("pending %v", n.pending)
	}
	n.forget("f")
	if len(n.pending) != 2 || n.pending[pendingKey{"b", "f"}] != nil {
		t.Fatalf("pending after forget %v", n.pending)
	}
	var sent []string
	n.send = func(_ context.Context, sock string, der []byte) error {
		sent = append(sent, sock+":"+string(der))
		return nil
	}
	n.update("h", []byte("expired"), time.Now().Add(-time.Second))
	n.sendDue()
	if strings.Join(sent, ",") != "a:other,b:other" && strings.Join(sent, ",") != "b:other,a:other" {
		t.Fatalf("sent %v", sent)
	}
}
