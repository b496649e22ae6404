package stapler

import (
	"time"

	"github.com/staplerkit/ocsp/config"
)

// Per-certificate settings: the ocsp_stapling object of each certificate
// and its policy, read and changed through the Go API and the admin API.

// settings are a certificate's per-certificate knobs, swapped whole.
type settings struct {
	stapling  config.Stapling
	policy    Policy
	policySet bool
}

// Stapling returns the per-certificate settings of a managed certificate.
func (s *Stapler) Stapling(id string) (config.Stapling, error) {
	m, err := s.lookup(id)
	if err != nil {
		return config.Stapling{}, err
	}
	return m.settings.Load().stapling, nil
}

// UpdateStapling merges a PATCH body into a certificate's ocsp_stapling
// object atomically (see config.StaplingUpdate) and returns the result; a
// rejected update changes nothing. {"ocsp_stapling": null} (u.Remove) puts
// the certificate back to the Stapler's defaults for the certificates it
// finds (WithDefaultStapling: enabled, unless set otherwise), not to the
// documented object's defaults, which would turn stapling off.
func (s *Stapler) UpdateStapling(id string, u config.StaplingUpdate) (config.Stapling, error) {
	m, err := s.lookup(id)
	if err != nil {
		return config.Stapling{}, err
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	if u.Remove { // back to the defaults of certificates the Stapler finds
		return s.opts.defaultStapling, s.setStaplingLocked(m, s.opts.defaultStapling)
	}
	next, err := u.Apply(m.settings.Load().stapling)
	if err != nil {
		return m.settings.Load().stapling, err
	}
	return next, s.setStaplingLocked(m, next)
}

// SetStapling replaces a certificate's ocsp_stapling object. An invalid
// object (cache_ttl below 60) is an invalid_schema *config.Error and changes
// nothing. Enabling stapling, changing skip_verify or shortening cache_ttl
// fetches a fresh response now.
func (s *Stapler) SetStapling(id string, st config.Stapling) error {
	if err := st.Validate(); err != nil {
		return err
	}
	st = st.WithDefaults()
	m, err := s.lookup(id)
	if err != nil {
		return err
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	return s.setStaplingLocked(m, st)
}

func (s *Stapler) setStaplingLocked(m *managed, st config.Stapling) error {
	if err := st.Validate(); err != nil {
		return err
	}
	st = st.WithDefaults()
	old := m.settings.Load()
	next := *old
	next.stapling = st
	m.settings.Store(&next)
	o := old.stapling
	if o.SkipVerify && !st.SkipVerify {
		// Nothing unverified is served with verification on: withdrawn now,
		// after the settings changed (apply reads them under m.mu, so no
		// unverified answer in flight is installed past this point).
		m.mu.Lock()
		m.withdrawUnverifiedLocked(s)
		s.settleLocked(m, time.Time{}, false)
	}
	if st.Enabled != o.Enabled && s.staples != nil {
		s.staples.changed(m) // served, or no longer
	}
	if st.Enabled && (!o.Enabled || st.SkipVerify != o.SkipVerify || st.CacheTTL < o.CacheTTL) && s.cfg.Load().OCSPFunctionality {
		s.reschedule(m, s.cfg.Load(), true, s.clock.Now())
	}
	return nil
}

// SetPolicy overrides the Stapler's policy for one certificate. A
// must-staple leaf stays MustStaple whatever is set.
func (s *Stapler) SetPolicy(id string, p Policy) error {
	m, err := s.lookup(id)
	if err != nil {
		return err
	}
	s.settingsMu.Lock()
	defer s.settingsMu.Unlock()
	next := *m.settings.Load()
	next.policy, next.policySet = p, true
	m.settings.Store(&next)
	return nil
}
