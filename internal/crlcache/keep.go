package crlcache

import (
	"fmt"
	"math/big"
	"time"

	"github.com/staplerkit/ocsp/internal/crl"
)

// version is what orders the CRLs of one point and scope.
type version struct {
	number     *big.Int // nil when the CRL has none
	thisUpdate time.Time
}

func versionOf(c *crl.CRL) version { return version{c.Number, c.ThisUpdate} }

// older reports whether a is older than b: a lower cRLNumber, or, at the
// same number or when either has none, an earlier thisUpdate.
func (a version) older(b version) bool {
	if a.number != nil && b.number != nil {
		if c := a.number.Cmp(b.number); c != 0 {
			return c < 0
		}
	}
	return a.thisUpdate.Before(b.thisUpdate)
}

// Older reports whether CRL a is older than CRL b: a lower cRLNumber, or,
// at the same number or when either has none, an earlier thisUpdate.
func Older(a, b *crl.CRL) bool { return versionOf(a).older(versionOf(b)) }

// keep holds c, just fetched from issuer's point url for certificates of
// kind, in place of the CRL of its scope held there, unless it does not
// cover that kind (crl.ErrScope: an ARL served at a user CRL's URL is
// neither held nor remembered as the newest of anything), it is older
// than one of its scope accepted there before (ErrRollback; a current CRL
// held stays), or its index alone is over opts.MaxMemory. The CRLs used
// longest ago are dropped to make room.
func (cc *Cache) keep(opts Options, issuer [32]byte, url string, c *crl.CRL, kind Kind, now time.Time) (*crl.CRL, error) {
	limit := opts.MaxMemory
	if !c.Scope().CoversKind(kind == CA) {
		return nil, fmt.Errorf("%w: the CRL fetched lists %s certificates only, and it was fetched for a %s certificate", crl.ErrScope, 1-kind, kind)
	}
	if c.MemoryBytes() > limit {
		return nil, fmt.Errorf("%w: its %d serials take %d bytes, more than MaxCRLMemory (%d)", ErrTooLarge, c.Len(), c.MemoryBytes(), limit)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p := cc.point(issuer, url, now)
	sl := &p.scopes[c.Scope()]
	if !sl.newest.thisUpdate.IsZero() && versionOf(c).older(sl.newest) {
		return nil, fmt.Errorf("%w: number %v of %s, after number %v of %s", ErrRollback, c.Number, c.ThisUpdate.UTC().Format(time.RFC3339), sl.newest.number, sl.newest.thisUpdate.UTC().Format(time.RFC3339))
	}
	cc.dropSlot(sl)
	for cc.bytes+c.MemoryBytes() > limit {
		lru := cc.leastRecentlyUsed()
		if lru == nil {
			break
		}
		cc.drop(lru)
	}
	sl.held, sl.newest = c, versionOf(c)
	cc.bytes += c.MemoryBytes()
	cc.held++
	p.lastUsed = now
	refreshAt := now.Add(min(RefreshMax, max(c.NextUpdate.Sub(now)/2, 0)))
	sl.refreshAt = refreshAt
	for s := range p.scopes {
		// The fetch for this kind brought c: the other CRLs held here for
		// it are not fetched again before c is.
		if other := &p.scopes[s]; crl.Scope(s).CoversKind(kind == CA) && other.refreshAt.Before(refreshAt) {
			other.refreshAt = refreshAt
		}
	}
	for k := range p.kinds {
		if c.Scope().CoversKind(Kind(k) == CA) {
			p.kinds[k].failures, p.kinds[k].failed, p.kinds[k].retryAt = 0, nil, time.Time{}
		}
	}
	p.kinds[kind].refreshing = false
	p.kinds[kind].downloading, p.kinds[kind].stalled = false, nil
	return c, nil
}

// failed remembers a failed fetch of issuer's point url for certificates
// of kind.
func (cc *Cache) failed(opts Options, issuer [32]byte, url string, kind Kind, err error, now time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	f := &cc.point(issuer, url, now).kinds[kind]
	f.refreshing, f.downloading, f.stalled = false, false, nil
	f.failures++
	f.failed = err
	f.retryAt = now.Add(min(opts.RetryMin<<min(f.failures-1, 16), opts.RetryMax))
}

// drop forgets p's CRLs (not the newest seen); cc.mu is held.
func (cc *Cache) drop(p *point) {
	for s := range p.scopes {
		cc.dropSlot(&p.scopes[s])
	}
}

// dropSlot forgets sl's CRL (not the newest seen); cc.mu is held.
func (cc *Cache) dropSlot(sl *slot) {
	if sl.held != nil {
		cc.bytes -= sl.held.MemoryBytes()
		cc.held--
		sl.held = nil
	}
}

// leastRecentlyUsed is the point holding a CRL that was looked up longest
// ago; cc.mu is held and some CRL is held.
func (cc *Cache) leastRecentlyUsed() *point {
	var lru *point
	for _, urls := range cc.points {
		for _, p := range urls {
			if p.holds() && (lru == nil || p.lastUsed.Before(lru.lastUsed)) {
				lru = p
			}
		}
	}
	return lru
}

// point returns issuer's point url, making it; cc.mu is held. At
// MaxPoints, the points that hold nothing and whose backoff has passed
// are forgotten, then those used longest ago.
func (cc *Cache) point(issuer [32]byte, url string, now time.Time) *point {
	if p := cc.points[issuer][url]; p != nil {
		return p
	}
	for cc.n >= MaxPoints {
		var victim *point
		var victimIssuer [32]byte
		idle := false
		for is, urls := range cc.points {
			for _, p := range urls {
				pIdle := !p.holds() && !now.Before(p.kinds[User].retryAt) && !now.Before(p.kinds[CA].retryAt)
				if victim == nil || pIdle && !idle || pIdle == idle && p.lastUsed.Before(victim.lastUsed) {
					victim, victimIssuer, idle = p, is, pIdle
				}
			}
		}
		cc.drop(victim)
		delete(cc.points[victimIssuer], victim.url)
		if len(cc.points[victimIssuer]) == 0 {
			delete(cc.points, victimIssuer)
		}
		cc.n--
	}
	if cc.points[issuer] == nil {
		cc.points[issuer] = map[string]*point{}
	}
	p := &point{url: url}
	cc.points[issuer][url] = p
	cc.n++
	return p
}

// Held is what a Cache holds, for metrics.
type Held struct {
	// CRLs is how many CRLs are held, and Bytes how much memory their
	// indexes take.
	CRLs  int
	Bytes int64
	// NextUpdate is the nextUpdate of each CRL held, by distribution point
	// URL (the earliest, when two issuers' CRLs, or two scopes', share a
	// URL).
	NextUpdate map[string]time.Time
}

// Held returns what cc holds, as it stands.
func (cc *Cache) Held() Held {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	h := Held{CRLs: cc.held, Bytes: cc.bytes, NextUpdate: map[string]time.Time{}}
	for _, urls := range cc.points {
		for url, p := range urls {
			for _, sl := range p.scopes {
				if sl.held == nil {
					continue
				}
				if t, ok := h.NextUpdate[url]; !ok || sl.held.NextUpdate.Before(t) {
					h.NextUpdate[url] = sl.held.NextUpdate
				}
			}
		}
	}
	return h
}

// Refreshing reports whether a background refresh of url (any issuer, any
// kind) is under way.
func (cc *Cache) Refreshing(url string) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, urls := range cc.points {
		if p := urls[url]; p != nil && (p.kinds[User].refreshing || p.kinds[CA].refreshing) {
			return true
		}
	}
	return false
}
