// Package certselect chooses a certificate from a list exactly as
// crypto/tls chooses one from a Config's Certificates when the config has
// no GetCertificate: the only one; else the NameToCertificate entry for
// the server name (or its wildcard); else the first the client supports;
// else the first.
//
// An Index is built once from a list (New) and then only read: any number
// of handshakes may call Choose at once, without a lock, and a choice by
// server name allocates nothing once a kind of hello has been seen. With
// a server name, only the certificates valid for it can be supported, so
// a name table finds them at once instead of asking every certificate in
// turn (milliseconds at 100,000 certificates); crypto/tls's answers to
// "does this hello support this certificate" are remembered by kind of
// hello and kind of key. Both are checked against crypto/tls itself, by
// the package's tests and, for the TLS 1.3 shortcut, when the package
// starts.
//
// What is selected is opaque: a position in the list, and a value of the
// caller's (V) kept with each position so that the usual choice hands it
// back without a further lookup. Selection knows nothing of OCSP, of
// staples, of the Stapler or of what the caller keeps per certificate: it
// reads each certificate's leaf, key and signature algorithms, never its
// OCSPStaple, and it never writes a certificate. Serving the choice (a
// staple, a refusal) belongs to the caller, the stapler package.
package certselect
