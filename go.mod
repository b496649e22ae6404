module github.com/staplerkit/ocsp

go 1.26.0

require (
	golang.org/x/crypto v0.59.0
	golang.org/x/sync v0.25.0
)
