// Package config holds the documented JSON objects that configure OCSP
// stapling, as Go values with strict validation.
//
//   - OCSP is the cluster OCSP object of the Redis Enterprise REST API
//     (GET/PUT /v1/ocsp); OCSPUpdate is a partial PUT body, applied with
//     OCSPUpdate.Apply, which never half-applies.
//   - Stapling is the per-certificate ocsp_stapling object of Apache APISIX's
//     ocsp-stapling plugin; StaplingUpdate is a PUT or PATCH body on a
//     certificate resource, where "ocsp_stapling": null removes the object.
//   - Status is the OCSP status object (GET /v1/ocsp/status, POST /v1/ocsp/test).
//   - Error is the documented error body ({"error_code", "message"}) with
//     its codes; which HTTP status answers each code is decided by the
//     package that speaks HTTP (stapler/admin), not here.
//
// Decoding is strict: unknown fields, wrong JSON types, out-of-range values,
// duplicated members and trailing data are all invalid_schema errors whose
// message names the field and the rule. The zero value of every integer
// field means its documented default.
package config
