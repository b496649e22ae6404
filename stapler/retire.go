package stapler

import (
	"slices"
	"time"
)

// Retirement: a certificate the Stapler found on its own (not listed in a
// wrapped config's Certificates) that no handshake has served for the idle
// period retires, as if Removed: no more queries, its state and staple
// dropped, logged once; served again, it is managed afresh. With a bound
// on the number of managed certificates, the least recently served of them
// retire first.

// markServed records that a handshake served m, on the handshake path: an
// atomic load, and a store only when the second has changed.
func (s *Stapler) markServed(m *managed) {
	now := s.coarseNow() / int64(time.Second)
	if now == 0 {
		now = s.clock.Now().Unix()
	}
	markServedAt(m, now)
}

// markServedAt is markServed at now (Unix seconds).
func markServedAt(m *managed, now int64) {
	if m.lastServed.Load() != now {
		m.lastServed.Store(now)
	}
}

// sweepInterval is how often idle certificates are looked for: a
// sixteenth of the idle period, at most an hour, at least a second.
func sweepInterval(idle time.Duration) time.Duration {
	return max(min(idle/16, time.Hour), time.Second)
}

// runRetirement retires idle certificates until the Stapler closes.
func (s *Stapler) runRetirement() {
	idle := s.opts.idleRetirement
	if idle <= 0 {
		return
	}
	t := s.clock.NewTimer(sweepInterval(idle))
	defer t.Stop()
	for {
		select {
		case now := <-t.C():
			s.retireIdle(now, idle)
			t.ResetAt(now.Add(sweepInterval(idle)))
		case <-s.ctx.Done():
			return
		}
	}
}

// retireIdle retires the certificates found on their own that no
// handshake has served for idle.
func (s *Stapler) retireIdle(now time.Time, idle time.Duration) {
	cutoff := now.Add(-idle).Unix()
	s.mu.Lock()
	var idleOnes []*managed
	for _, m := range s.order {
		if !m.listed.Load() && m.lastServed.Load() < cutoff {
			idleOnes = append(idleOnes, m)
		}
	}
	for _, m := range idleOnes {
		s.retireLocked(m, "no handshake for the idle period")
	}
	s.mu.Unlock()
}

// boundLocked retires the least recently served certificates found on
// their own while more than the bound are managed: a sixteenth of the
// bound more than needed, so that a flood of new leaves does not scan the
// list at every one. The certificates just registered (fresh) are never
// retired by it: the handshake that brought one is serving it (retiring it
// there would have the handshake register it again, and again). Listed
// and fresh certificates may exceed the bound. Callers hold s.mu.
func (s *Stapler) boundLocked(fresh []*managed) {
	limit := s.opts.maxManaged
	if limit <= 0 || len(s.order) <= limit {
		return
	}
	isFresh := make(map[*managed]bool, len(fresh))
	for _, m := range fresh {
		isFresh[m] = true
	}
	var found []*managed
	for _, m := range s.order {
		if !m.listed.Load() && !isFresh[m] {
			found = append(found, m)
		}
	}
	slices.SortFunc(found, func(a, b *managed) int { return int(a.lastServed.Load() - b.lastServed.Load()) })
	excess := len(s.order) - limit + limit/16
	for _, m := range found[:min(excess, len(found))] {
		s.retireLocked(m, "the bound on managed certificates")
	}
}

// retireLocked retires m. Callers hold s.mu.
func (s *Stapler) retireLocked(m *managed, why string) {
	if !s.removeLocked(m) {
		return
	}
	s.counters.retired.Add(1)
	subject := ""
	if m.leaf != nil {
		subject = m.leaf.Subject.String()
	}
	s.log.Info("ocsp: certificate retired; managed afresh if served again", "id", m.ID(), "subject", subject, "why", why,
		"last_served", time.Unix(m.lastServed.Load(), 0).UTC())
}
