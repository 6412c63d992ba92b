// Package prebuilt carries include/flynnrel.h inside the Go module, for builds that have only the
// module (a `go mod vendor` copy inside Flynn's tree): `go mod vendor` copies every file of a
// package directory, so a header placed here travels with the vendored code, the way wasmtime-go
// ships its headers and libraries. script/flynn-integrate puts the header here in the copy it
// vendors; in this checkout the directory holds only this file (the header is taken from
// ../../include, which the cgo flags of package flynnrel search first).
//
// The package has no code; package flynnrel imports it only so that vendoring keeps it.
package prebuilt
