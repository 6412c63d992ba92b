// Package linuxamd64 carries a static, release-built libflynnrel.a for linux/amd64 inside the Go
// module, for builds that have only the module (a `go mod vendor` copy inside Flynn's tree):
// `go mod vendor` copies every file of a package directory, but no directory that is not a
// package, so the library sits in a package of its own (wasmtime-go's build/<os>-<arch>
// packages do the same). script/flynn-integrate puts `cargo build --release -p flynnrel --lib`'s library
// here in the copy it vendors; in this checkout the directory holds only this file, and package
// flynnrel links ../../target/release/libflynnrel.a, which its linker flags search first.
//
// The package has no code; package flynnrel imports it only so that vendoring keeps it.
package linuxamd64
