// Package ratelimit paces requests to a responder: evenly at a set rate,
// a burst at once, and a follow-up request (the POST after a refused GET)
// ahead of the requests still waiting. It runs on the real clock, since it
// protects a real server, and knows nothing of what the requests are.
package ratelimit
