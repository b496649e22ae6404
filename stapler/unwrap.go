//lint:file-ignore SA1019 NameToCertificate is deprecated, but an application may still set it: unwrapping gives back the map the application had.

package stapler

import (
	"crypto/tls"
	"reflect"
)

// Recognising a config this Stapler wrapped (a probe through its
// callbacks), and giving back the config the application would have had.

// Probes: a wrapper's callbacks answer these with a *wrapperProbe naming
// the wrapper, so that Wrap knows a config it made (or a Clone of one)
// without keeping a list of them. Only a function known to be a wrapper
// method (by its code pointer) is ever called with a probe.
var (
	probeHello   = new(tls.ClientHelloInfo)
	probeRequest = new(tls.CertificateRequestInfo)
)

type wrapperProbe struct{ w *wrapper }

func (*wrapperProbe) Error() string { return "stapler: wrapper probe" }

// wrapperCode holds the code pointers of the wrapper's method values: the
// same for every wrapper, and no other function's.
var wrapperCode struct{ server, config, client uintptr }

func init() {
	w := new(wrapper)
	wrapperCode.server = reflect.ValueOf(w.serverCertificate).Pointer()
	wrapperCode.config = reflect.ValueOf(w.configForClient).Pointer()
	wrapperCode.client = reflect.ValueOf(w.clientCertificate).Pointer()
}

func probed(err error) *wrapper {
	if p, ok := err.(*wrapperProbe); ok {
		return p.w
	}
	return nil
}

// wrapperOf returns the wrapper of s whose GetCertificate cfg carries: cfg
// is a config Wrap returned, or a Clone of one; nil otherwise.
func (s *Stapler) wrapperOf(cfg *tls.Config) *wrapper {
	if cfg.GetCertificate == nil || reflect.ValueOf(cfg.GetCertificate).Pointer() != wrapperCode.server {
		return nil
	}
	_, err := cfg.GetCertificate(probeHello)
	if w := probed(err); w != nil && w.s == s {
		return w
	}
	return nil
}

func configWrapper(f func(*tls.ClientHelloInfo) (*tls.Config, error)) *wrapper {
	if f == nil || reflect.ValueOf(f).Pointer() != wrapperCode.config {
		return nil
	}
	_, err := f(probeHello)
	return probed(err)
}

func clientWrapper(f func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *wrapper {
	if f == nil || reflect.ValueOf(f).Pointer() != wrapperCode.client {
		return nil
	}
	_, err := f(probeRequest)
	return probed(err)
}

// unchanged reports whether cfg, carrying w's GetCertificate, selects its
// certificates as w's own config does: nothing to wrap again.
func (w *wrapper) unchanged(cfg *tls.Config) bool {
	if len(cfg.Certificates) > 0 || len(cfg.NameToCertificate) > 0 { // set by the application (an empty map, as BuildNameToCertificate leaves on a wrapped config, selects nothing)
		return false
	}
	if (w.getConfigForClient != nil || cfg.GetConfigForClient != nil) && configWrapper(cfg.GetConfigForClient) != w {
		return false
	}
	if w.clientSide() || cfg.GetClientCertificate != nil {
		return clientWrapper(cfg.GetClientCertificate) == w
	}
	return true
}

// unwrap returns the config the application would have had, had it changed
// its original as it changed cfg, a Clone of w's config: w's callbacks
// give way to the application's, and w's certificates to cfg's when it set
// some.
func (w *wrapper) unwrap(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.GetCertificate = w.getCertificate
	c.UnwrapSession, c.WrapSession = w.appUnwrapSession, w.appWrapSession
	if configWrapper(c.GetConfigForClient) == w {
		c.GetConfigForClient = w.getConfigForClient
	}
	if clientWrapper(c.GetClientCertificate) == w {
		c.GetClientCertificate = w.getClientCertificate
	}
	if len(c.Certificates) == 0 && len(c.NameToCertificate) == 0 { // set by the application
		c.Certificates = w.captured()
		if w.byName != nil {
			c.NameToCertificate = make(map[string]*tls.Certificate, len(w.byName))
			for name, t := range w.byName {
				if t.Pos >= 0 {
					c.NameToCertificate[name] = &c.Certificates[t.Pos]
				} else {
					c.NameToCertificate[name] = t.Cert
				}
			}
		}
	}
	return c
}
