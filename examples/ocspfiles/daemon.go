package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/staplerkit/ocsp/stapler"
)

// target is one -cert file and the response file kept for it.
type target struct {
	certPath string
	outPath  string
	// confPath is the nginx include kept beside outPath ("" without
	// -nginx-conf).
	confPath string
	id       string // the Stapler's ID of the leaf the file holds now
	subject  string

	expiry    *time.Timer // removes the file when its response expires
	expiresAt time.Time
}

// daemon keeps each target's file equal to the staple the Stapler serves
// for its certificate: written when it changes, removed when there is none
// (never fetched, expired with no replacement, withdrawn, refused at start).
// Every decision reads the Stapler's current staple, under one lock, so that
// the file can never go back to an older response, whatever order the hook,
// the expiry timers and the periodic check run in.
type daemon struct {
	s       *stapler.Stapler
	log     *slog.Logger
	reload  *reloader        // nil without -reload
	haproxy *haproxyNotifier // nil without -haproxy-socket
	met     *fileMetrics

	mu      sync.Mutex
	targets []*target
	closed  bool
}

// hook is the Stapler's staple hook.
func (d *daemon) hook(ch stapler.StapleChange) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.targets {
		if t.id == ch.ID {
			d.apply(t, false)
		}
	}
}

// checkAll applies every target again: it retries failed writes, restores
// a file changed or removed behind the daemon's back, and removes expired
// ones even if a timer fired late (a suspended machine).
func (d *daemon) checkAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.targets {
		d.apply(t, false)
	}
	d.met.checks.Inc()
}

// apply makes t's files match what the Stapler serves for t's certificate
// now. tellHAProxy sends the response to HAProxy even when the file did not
// change (at start, when HAProxy may have loaded an older file). d.mu is held.
func (d *daemon) apply(t *target, tellHAProxy bool) {
	if d.closed {
		return
	}
	der, expires, err := d.s.Staple(t.id)
	if err == nil && time.Now().Before(expires) {
		changed, werr := d.put(t, t.outPath, der)
		if werr != nil {
			return // logged; retried at the next check
		}
		d.arm(t, expires)
		if t.confPath != "" {
			c, werr := d.put(t, t.confPath, nginxConf(t, true))
			if werr != nil {
				return
			}
			changed = changed || c
		}
		if changed {
			st, _ := d.s.StatusOf(t.id)
			d.log.Info("OCSP response file written", "file", t.outPath, "subject", t.subject, "state", st.State, "expires", expires.UTC().Format(time.RFC3339))
			d.met.writes.Inc()
			d.reload.trigger()
		}
		if changed || tellHAProxy {
			d.haproxy.update(t.outPath, der, expires)
		}
		return
	}
	d.disarm(t)
	d.haproxy.forget(t.outPath)
	changed := false
	if t.confPath != "" {
		c, werr := d.put(t, t.confPath, nginxConf(t, false))
		if werr != nil {
			// Removing the response now would make nginx refuse to
			// reload (ssl_stapling_file missing): keep it until the
			// include says stapling is off.
			return
		}
		changed = c
	}
	removed, rerr := removeFile(t.outPath)
	if rerr != nil {
		d.met.writeErrors.Inc()
		d.log.Error("OCSP response file not removed", "file", t.outPath, "err", rerr)
	}
	if removed {
		reason := "no valid response"
		if err == nil {
			reason = "response expired with no replacement"
		} else if st, serr := d.s.StatusOf(t.id); serr == nil {
			reason = fmt.Sprintf("no valid response (state %s)", st.State)
			if st.LastError != "" {
				reason += ": " + st.LastError
			}
		}
		d.log.Warn("OCSP response file removed", "file", t.outPath, "subject", t.subject, "reason", reason)
		d.met.removals.Inc()
		if d.haproxy != nil {
			d.log.Warn("haproxy keeps the response it holds until 5 minutes before its nextUpdate (it has no command to withdraw one) and loads none at its next reload", "file", t.outPath)
		}
	}
	if removed || changed {
		d.reload.trigger()
	}
}

// put writes data to path unless it holds it already, and reports whether
// it wrote.
func (d *daemon) put(t *target, path string, data []byte) (bool, error) {
	same, err := fileHolds(path, data)
	if err == nil && same {
		return false, nil
	}
	res, err := writeFileAtomic(path, data)
	if err != nil {
		d.met.writeErrors.Inc()
		d.log.Error("file not written; retried at the next check", "file", path, "subject", t.subject, "err", err)
		return false, err
	}
	if res.ReplacedSymlink {
		d.log.Warn("a symbolic link was at the output path: replaced by a regular file, its target left untouched", "file", path)
	}
	if res.OwnerLost {
		d.log.Warn("the file belonged to another user or group; this process could not keep them (its mode lets everyone read it)", "file", path)
	}
	return true, nil
}

// arm sets t's expiry timer for expires.
func (d *daemon) arm(t *target, expires time.Time) {
	if t.expiry != nil && t.expiresAt.Equal(expires) {
		return
	}
	d.disarm(t)
	t.expiresAt = expires
	t.expiry = time.AfterFunc(time.Until(expires), func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.apply(t, false)
	})
}

func (d *daemon) disarm(t *target) {
	if t.expiry != nil {
		t.expiry.Stop()
		t.expiry = nil
		t.expiresAt = time.Time{}
	}
}

// close stops the timers; no file is touched after it returns. The
// Stapler must be closed first (no hook call comes after its Close).
func (d *daemon) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, t := range d.targets {
		d.disarm(t)
	}
}

// nginxConf is the include kept for nginx: stapling on with the response
// file while there is a valid response, off when there is none (nginx
// refuses to start or reload when the file of ssl_stapling_file is missing,
// and staples a file it loaded forever, unchecked).
func nginxConf(t *target, on bool) []byte {
	if on {
		return fmt.Appendf(nil, "# kept by ocspfiles: do not edit\nssl_stapling on;\nssl_stapling_file %s;\n", nginxQuote(t.outPath))
	}
	return []byte("# kept by ocspfiles: do not edit\n# no valid OCSP response at hand: stapling off until there is one\nssl_stapling off;\n")
}

// nginxQuote quotes a path for nginx's configuration (a double-quoted
// string, in which only the quote and the backslash are escaped), so that
// spaces or semicolons in it stay part of it. Paths with control
// characters are refused by makeTargets.
func nginxQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// register adds t's certificate to the Stapler and, when a response file
// is already there, offers it to the Stapler (Push verifies it as a fetched
// one; a file that does not verify is removed by the apply that follows).
func (d *daemon) register(ctx context.Context, t *target, cert *tls.Certificate, leaf *x509.Certificate) error {
	removeStaleTemps(t.outPath)
	if t.confPath != "" {
		removeStaleTemps(t.confPath)
	}
	id, err := d.s.Add(cert)
	if err != nil {
		return fmt.Errorf("%s: %w", t.certPath, err)
	}
	t.id, t.subject = id, leaf.Subject.String()
	if der, err := readExisting(t.outPath); err != nil {
		d.log.Warn("existing response file not read", "file", t.outPath, "err", err)
	} else if der != nil {
		if _, err := d.s.Push(ctx, id, der); err != nil {
			d.log.Warn("existing response file refused; it is removed until a valid response comes", "file", t.outPath, "err", err)
		} else {
			d.log.Info("existing response file verified", "file", t.outPath)
		}
	}
	return nil
}

// readExisting reads the regular file at path (nil when there is none; a
// symbolic link is not followed).
func readExisting(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, stapler.MaxResponseBytes+1))
}

// rotate re-reads every -cert file (SIGHUP): a certificate that changed is
// registered, its old one removed from the Stapler once no file uses it,
// and its file written for the new certificate as soon as its first fetch
// is done (until then the old response stays, for the server still serving
// the old certificate until it reloads too).
func (d *daemon) rotate(ctx context.Context, issuerPath string, firstFetch time.Duration) {
	var issuer *x509.Certificate
	if issuerPath != "" {
		var err error
		if issuer, err = loadCertificate(issuerPath); err != nil {
			d.log.Error("SIGHUP: issuer not re-read; certificates kept as they were", "file", issuerPath, "err", err)
			return
		}
	}
	d.mu.Lock()
	targets := append([]*target(nil), d.targets...)
	d.mu.Unlock()
	type change struct {
		t       *target
		id, sub string
	}
	var changes []change
	for _, t := range targets {
		cert, leaf, err := loadChain(t.certPath, issuer)
		if err != nil {
			d.log.Error("SIGHUP: certificate not re-read; the old one is kept", "file", t.certPath, "err", err)
			continue
		}
		id := stapler.CertificateID(cert.Certificate[0])
		d.mu.Lock()
		same := id == t.id
		d.mu.Unlock()
		if same {
			continue
		}
		if _, err := d.s.Add(cert); err != nil {
			d.log.Error("SIGHUP: certificate not registered; the old one is kept", "file", t.certPath, "err", err)
			continue
		}
		d.log.Info("certificate changed", "file", t.certPath, "subject", leaf.Subject.String())
		changes = append(changes, change{t, id, leaf.Subject.String()})
	}
	if len(changes) == 0 {
		d.log.Info("SIGHUP: no certificate changed")
		return
	}
	readyCtx, cancel := context.WithTimeout(ctx, firstFetch)
	d.s.Ready(readyCtx)
	cancel()
	d.mu.Lock()
	old := map[string]bool{}
	for _, c := range changes {
		old[c.t.id] = true
		c.t.id, c.t.subject = c.id, c.sub
		d.apply(c.t, true)
	}
	for _, t := range d.targets {
		delete(old, t.id)
	}
	d.mu.Unlock()
	for id := range old {
		d.s.Remove(id)
	}
}
