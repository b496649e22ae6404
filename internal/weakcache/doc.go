// Package weakcache maps keys to values without holding either alive, in
// a bounded table whose hit takes no lock and allocates nothing: the
// stapler remembers there the wrapped clone of each config an
// application's GetConfigForClient returns. It knows nothing of TLS or of
// what its keys and values are.
package weakcache
