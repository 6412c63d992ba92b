//go:build !flynnrel_dynamic && !flynnrel_custom && !flynnrel_debug

package flynnrel

// The default: link the static, release-built library, so the resulting binary needs nothing at
// run time. The linker takes the first libflynnrel.a it finds: the checkout's
// ../../target/release (`cargo build --release -p flynnrel --lib`), else the copy a vendored module carries
// in prebuilt/linux-amd64 (script/flynn-integrate puts it there). Neither directory is needed by
// the other kind of build, and a missing -L directory is not an error.

// #cgo LDFLAGS: -L${SRCDIR}/../../target/release
// #cgo linux,amd64 LDFLAGS: -L${SRCDIR}/prebuilt/linux-amd64
// #cgo LDFLAGS: -l:libflynnrel.a -lpthread -ldl -lm
import "C"
