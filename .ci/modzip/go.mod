// The release script's helper (.ci/release): writes the module zips of a
// commit as a GOPROXY directory. A module of its own, outside go.work, so
// that the library's modules never depend on golang.org/x/mod.
module modzip

go 1.26.0

require golang.org/x/mod v0.41.0
