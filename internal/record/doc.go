// Package record holds what the Stapler keeps of an OCSP response: an Entry
// per certificate (the raw response with the parsed times that decide how
// long it may be stapled and when to refresh it), and the stored form of a
// response that a cache.Store holds (Encode, Decode). It is internal: a
// Store implementer sees only opaque values, and users of the stapler see
// the exported Response and CertificateStatus types. It knows nothing of
// where a response came from or who verified it.
package record
