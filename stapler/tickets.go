package stapler

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"sync"
	"time"
)

// Session tickets. A resumed session skips certificate selection, and with
// it the policy's refusals, so a wrapped config must be able to decline to
// resume while a certificate is known revoked. It cannot do that with
// crypto/tls's own tickets: those are sealed with keys of the config a
// connection uses, and the configs in use are often copies Wrap never sees
// (http.Server clones its TLSConfig; GetConfigForClient's configs are
// others). So a wrapped config seals and opens its tickets itself, with
// keys of its own (AES-256-GCM, a new key a day, each kept a week, as
// crypto/tls does with its own), shared with its copies only: its Clone,
// the clone http.Server makes, a Clone changed and wrapped again, and the
// configs its GetConfigForClient returns (as crypto/tls uses the original
// config's keys for those). Two unrelated configs the same Stapler wrapped
// never resume each other's sessions: each may verify its clients
// differently.

const (
	ticketKeyRotation = 24 * time.Hour
	ticketKeyLifetime = 7 * 24 * time.Hour
)

type ticketKey struct {
	aead    cipher.AEAD
	created time.Time
}

// ticketKeys are the Stapler's session ticket keys, newest first.
type ticketKeys struct {
	mu   sync.Mutex // guards keys
	keys []ticketKey
}

// current returns the keys to try, newest first, making a new one when
// the newest is a day old and dropping those past a week.
func (t *ticketKeys) current(now time.Time) []ticketKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.keys) == 0 || now.Sub(t.keys[0].created) >= ticketKeyRotation {
		var secret [32]byte
		rand.Read(secret[:])
		block, _ := aes.NewCipher(secret[:])
		aead, _ := cipher.NewGCM(block)
		t.keys = append([]ticketKey{{aead: aead, created: now}}, t.keys...)
	}
	for len(t.keys) > 1 && now.Sub(t.keys[len(t.keys)-1].created) >= ticketKeyLifetime {
		t.keys = t.keys[:len(t.keys)-1]
	}
	return t.keys
}

// sealSession is a wrapped config's WrapSession.
func (w *wrapper) sealSession(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	plain, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	key := w.tickets.current(time.Now())[0]
	nonce := make([]byte, key.aead.NonceSize(), key.aead.NonceSize()+len(plain)+key.aead.Overhead())
	rand.Read(nonce)
	return key.aead.Seal(nonce, nonce, plain, nil), nil
}

// openSession is a wrapped config's UnwrapSession: nothing is resumed
// while a certificate is known revoked, nor from a ticket no current key
// opens (the client falls back to a full handshake).
func (w *wrapper) openSession(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	if w.s.revokedCount.Load() > 0 {
		return nil, nil
	}
	for _, key := range w.tickets.current(time.Now()) {
		n := key.aead.NonceSize()
		if len(identity) < n {
			return nil, nil
		}
		plain, err := key.aead.Open(nil, identity[:n], identity[n:], nil)
		if err != nil {
			continue
		}
		ss, err := tls.ParseSessionState(plain)
		if err != nil {
			return nil, nil
		}
		return ss, nil
	}
	return nil, nil
}
