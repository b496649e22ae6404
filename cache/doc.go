// Package cache holds what the stapler keeps of OCSP responses: an Entry per
// certificate, the raw response with the parsed times that decide how long
// it may be stapled and when to refresh it.
package cache
