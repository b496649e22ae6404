// Package cache is where the Stapler keeps OCSP responses across restarts
// and, with a shared backend, across servers: the Store interface (Get, Put,
// Delete, as in autocert), the optional Leaser and Notifier interfaces a
// shared store implements for a fleet, and DirStore, a Store in a local
// directory. Values are opaque to a Store: the Stapler encodes, checksums
// and verifies again everything it reads back.
package cache
