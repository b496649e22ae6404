package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/staplerkit/ocsp/config"
	"github.com/staplerkit/ocsp/stapler"
)

// State is what a -state file keeps of the admin API's changes: the
// cluster OCSP object and each certificate's ocsp_stapling object, by ID.
type State struct {
	OCSP         config.OCSP                `json:"ocsp"`
	Certificates map[string]config.Stapling `json:"certificates,omitempty"`
}

// SaveState writes s's configuration to path whole (a temporary file, then
// a rename), readable by its owner only.
func SaveState(path string, s *stapler.Stapler) error {
	st := State{OCSP: s.Get(), Certificates: map[string]config.Stapling{}}
	st.OCSP.ResponderURL = "" // read-only: never restored
	for _, cs := range s.Status() {
		st.Certificates[cs.ID] = cs.Stapling
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// RestoreState applies the configuration kept in path to s: the cluster
// object, and the ocsp_stapling object of each certificate s manages (the
// others are left out of the next save). A missing file restores nothing;
// one that does not parse, or holds values out of range, is an error and
// changes nothing.
func RestoreState(path string, s *stapler.Stapler, logger *slog.Logger) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := st.OCSP.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for id, stapling := range st.Certificates {
		if err := stapling.Validate(); err != nil {
			return fmt.Errorf("%s: certificate %s: %w", path, id, err)
		}
	}
	o := st.OCSP.WithDefaults()
	if _, err := s.Update(config.OCSPUpdate{OCSPFunctionality: &o.OCSPFunctionality, QueryFrequency: &o.QueryFrequency,
		ResponseTimeout: &o.ResponseTimeout, RecoveryFrequency: &o.RecoveryFrequency, RecoveryMaxTries: &o.RecoveryMaxTries}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for id, stapling := range st.Certificates {
		if err := s.SetStapling(id, stapling); err != nil {
			logger.Info("state file: a certificate no longer served", "id", id)
		}
	}
	return nil
}
